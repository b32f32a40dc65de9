"""Each check passes on the real thing and fails on nothing and on the obvious fakes."""

from __future__ import annotations

import time

import pytest

from sandboxapp.runtime.checks import CheckError, check_problems, check_run

FAKES = [
    "echo PASS",
    "echo 'PID 1'; echo 'hostname inner'",
    "exec -a unshare sleep 0.5",  # a short-lived process named like the answer
    "mkdir -p /proc-fake; echo 1 > /tmp/answer; hostname",
]


def start(sandbox, script: str) -> None:
    """Run a learner's command line from a shell that stays, as their terminal would."""
    sandbox.spawn(["/bin/bash", "-c", f"{script}\nwait"])


def eventually(sandbox, name: str, params: dict, timeout: float = 8.0):
    deadline = time.monotonic() + timeout
    while True:
        outcome = check_run(sandbox, name, params)
        if outcome.passed or time.monotonic() > deadline:
            return outcome
        time.sleep(0.1)


def never(sandbox, name: str, params: dict, seconds: float = 1.5):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        outcome = check_run(sandbox, name, params)
        assert not outcome.passed, outcome
        time.sleep(0.1)
    return outcome


VETH_SOLUTION = """
unshare -n sleep 600 &
other=$!
sleep 0.2
ip link add v0 type veth peer name v1 netns $other
ip addr add 10.9.0.1/24 dev v0
ip link set v0 up
nsenter -t $other -n sh -c 'ip addr add 10.9.0.2/24 dev v1; ip link set v1 up'
"""

OOM_SOLUTION = """
if [ -e /sys/fs/cgroup/cgroup.controllers ]; then
  mkdir /sys/fs/cgroup/demo; echo 32M > /sys/fs/cgroup/demo/memory.max
  echo $$ > /sys/fs/cgroup/demo/cgroup.procs
else
  mkdir /sys/fs/cgroup/memory/demo; echo 32M > /sys/fs/cgroup/memory/demo/memory.limit_in_bytes
  echo $$ > /sys/fs/cgroup/memory/demo/cgroup.procs
fi
python3 -c 'b = bytearray(200 * 2**20)'
"""

CPU_SOLUTION = """
if [ -e /sys/fs/cgroup/cgroup.controllers ]; then
  echo +cpu > /sys/fs/cgroup/cgroup.subtree_control
  mkdir /sys/fs/cgroup/slow; echo '10000 100000' > /sys/fs/cgroup/slow/cpu.max
  echo $$ > /sys/fs/cgroup/slow/cgroup.procs
else
  mkdir /sys/fs/cgroup/cpu/slow; echo 10000 > /sys/fs/cgroup/cpu/slow/cpu.cfs_quota_us
  echo $$ > /sys/fs/cgroup/cpu/slow/cgroup.procs
fi
timeout 3 sh -c 'while :; do :; done'
"""

OVERLAY_SOLUTION = """
mkdir -p /tmp/img/upper /tmp/img/work /tmp/img/root
layers=lowerdir=/usr,upperdir=/tmp/img/upper,workdir=/tmp/img/work
unshare -m sh -c "mount -t overlay image -o $layers /tmp/img/root && \\
  exec chroot /tmp/img/root /bin/sleep 600"
"""

SIDECAR_SOLUTION = """
unshare -n sleep 600 &
app=$!
sleep 0.2
nsenter -t $app -n unshare -pf sleep 600
"""

CONTAINER_SOLUTION = """
mkdir -p /tmp/c/upper /tmp/c/work /tmp/c/root
layers=lowerdir=/usr,upperdir=/tmp/c/upper,workdir=/tmp/c/work
unshare -Urpfnmiu sh -c "mount -t overlay image -o $layers /tmp/c/root && \\
  exec chroot /tmp/c/root /sbin/capsh --drop=cap_net_raw -- -c 'exec sleep 600'"
"""

FORK_SOLUTION = """
if [ -e /sys/fs/cgroup/cgroup.controllers ]; then
  mkdir /sys/fs/cgroup/tiny; echo 5 > /sys/fs/cgroup/tiny/pids.max
  echo $$ > /sys/fs/cgroup/tiny/cgroup.procs
else
  mkdir /sys/fs/cgroup/pids/tiny; echo 5 > /sys/fs/cgroup/pids/tiny/pids.max
  echo $$ > /sys/fs/cgroup/pids/tiny/cgroup.procs
fi
for i in $(seq 10); do sleep 5 & done 2>/dev/null
"""

SECCOMP_SOLUTION = """
python3 - <<'EOF'
import ctypes, os, struct
libc = ctypes.CDLL(None, use_errno=True)
# One BPF instruction: allow every system call. A filter of the learner's own, on top.
program = ctypes.create_string_buffer(struct.pack("HBBI", 0x06, 0, 0, 0x7FFF0000))
class Fprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
assert libc.prctl(22, 2, ctypes.byref(Fprog(1, ctypes.addressof(program)))) == 0
os.execvp("sleep", ["sleep", "600"])
EOF
"""

PROPAGATION_SOLUTION = """
mkdir -p /mnt/shared
mount --bind /mnt/shared /mnt/shared
mount --make-shared /mnt/shared
unshare -m --propagation unchanged sleep 600 &
sleep 0.3
mkdir -p /mnt/shared/x
mount -t tmpfs later /mnt/shared/x
"""

CASES = {
    "long_running_process": ({"min_seconds": 1}, "sleep 600"),
    "nested_pid_namespace": ({}, "unshare -pf sleep 600"),
    "nested_pid_namespace_with_own_proc": ({}, "unshare -pf --mount-proc sleep 600"),
    "hostname_in_own_uts": ({"hostname": "inner"}, "unshare -u sh -c 'hostname inner; sleep 600'"),
    "tmpfs_in_own_mount_namespace": (
        {"path": "/mnt"},
        "unshare -m sh -c 'mount -t tmpfs scratch /mnt; exec sleep 600'",
    ),
    "root_in_own_user_namespace": ({}, "unshare -Ur sleep 600"),
    "loopback_only_namespace": ({}, "unshare -n sh -c 'ip link set lo up; exec sleep 600'"),
    "veth_between_namespaces": ({}, VETH_SOLUTION),
    "oom_kill_in_child_cgroup": ({}, OOM_SOLUTION),
    "cpu_throttled_in_child_cgroup": ({}, CPU_SOLUTION),
    "root_is_new_overlay": ({}, OVERLAY_SOLUTION),
    "sidecar_shares_network": ({}, SIDECAR_SOLUTION),
    "own_container": ({}, CONTAINER_SOLUTION),
    "fork_bomb_stopped_in_child_cgroup": ({}, FORK_SOLUTION),
    "sandbox_limit_fired": ({"counter": "pids_max_hit"}, "for i in $(seq 300); do sleep 5 & done"),
    "shm_in_own_ipc_namespace": ({}, "unshare -i sh -c 'ipcmk -M 4096; exec sleep 600'"),
    "server_reached_across_namespaces": (
        {"port": 8080},
        VETH_SOLUTION + "nsenter -t $other -n python3 -m http.server 8080 --bind 10.9.0.2\n",
    ),
    "user_ns_maps_root_to": (
        {"outside": 1000},
        "unshare -U sleep 600 &\np=$!\nsleep 0.2\necho '0 1000 1' > /proc/$p/uid_map",
    ),
    "new_namespace": ({"namespace": "cgroup"}, "unshare -C sleep 600"),
    "extra_seccomp_filter": ({}, SECCOMP_SOLUTION),
    "mount_propagated_into_child": ({"path": "/mnt/shared/x"}, PROPAGATION_SOLUTION),
    "whiteout_in_overlay": (
        {},
        OVERLAY_SOLUTION.replace("/bin/sleep 600", "/bin/sh -c 'rm /bin/ls; exec sleep 600'"),
    ),
    "capability_dropped": ({"capability": "net_raw"}, "capsh --drop=cap_net_raw -- -c 'sleep 600'"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_reference_solution_passes(make_sandbox, name):
    params, solution = CASES[name]
    sandbox = make_sandbox()
    start(sandbox, solution)
    outcome = eventually(sandbox, name, params)
    assert outcome.passed, outcome
    assert outcome.observed and outcome.expected


@pytest.mark.parametrize("name", sorted(CASES))
def test_nothing_and_the_fakes_fail(make_sandbox, name):
    params, _ = CASES[name]
    sandbox = make_sandbox()
    outcome = never(sandbox, name, params, seconds=0.3)
    assert outcome.observed
    for fake in FAKES:
        start(sandbox, fake)
    never(sandbox, name, params)


def test_a_pid_namespace_without_its_own_proc_is_told_apart(make_sandbox):
    sandbox = make_sandbox()
    start(sandbox, "unshare -pf sleep 600")
    assert eventually(sandbox, "nested_pid_namespace", {}).passed
    outcome = never(sandbox, "nested_pid_namespace_with_own_proc", {}, seconds=0.5)
    assert "still sees the /proc of your sandbox" in outcome.observed


def test_changing_the_sandboxs_own_hostname_does_not_count(make_sandbox):
    sandbox = make_sandbox()
    sandbox.run(["hostname", "inner"])
    outcome = never(sandbox, "hostname_in_own_uts", {"hostname": "inner"}, seconds=0.3)
    assert "own hostname was changed" in outcome.observed


def test_a_young_process_is_not_yet_long_running(make_sandbox):
    sandbox = make_sandbox()
    start(sandbox, "sleep 600")
    time.sleep(0.3)
    outcome = check_run(sandbox, "long_running_process", {"min_seconds": 30})
    assert not outcome.passed and "sleep" in outcome.observed and "on the host" in outcome.observed


def test_check_requests_are_validated():
    assert check_problems("nope", {}) and "unknown check" in check_problems("nope", {})[0]
    assert check_problems("hostname_in_own_uts", {}) == ["missing parameter 'hostname' (str)"]
    assert check_problems("hostname_in_own_uts", {"hostname": 3}) == [
        "parameter 'hostname' must be a str"
    ]
    assert check_problems("long_running_process", {"min_seconds": 2}) == []
    assert check_problems("nested_pid_namespace", {"x": 1}) == ["unknown parameter 'x'"]
    assert "one of" in check_problems("capability_dropped", {"capability": "cap_fly"})[0]
    with pytest.raises(CheckError):
        check_run(None, "nope", {})  # type: ignore[arg-type]


def test_a_tmpfs_in_the_sandboxs_own_namespace_is_not_private(make_sandbox):
    sandbox = make_sandbox()
    sandbox.run(["mount", "-t", "tmpfs", "shared", "/mnt"])
    outcome = never(sandbox, "tmpfs_in_own_mount_namespace", {"path": "/mnt"}, seconds=0.3)
    assert "all see it" in outcome.observed


def test_a_user_namespace_without_a_map_is_not_root(make_sandbox):
    sandbox = make_sandbox()
    start(sandbox, "unshare -U sleep 600")
    outcome = never(sandbox, "root_in_own_user_namespace", {}, seconds=1.0)
    assert "uid_map is" in outcome.observed


def test_a_veth_pair_inside_one_namespace_does_not_count(make_sandbox):
    sandbox = make_sandbox()
    script = (
        "ip link add v0 type veth peer name v1; ip addr add 10.9.0.1/24 dev v0; "
        "ip addr add 10.9.0.2/24 dev v1; ip link set v0 up; ip link set v1 up"
    )
    code, out = sandbox.run(["sh", "-c", script])
    assert code == 0, out
    outcome = never(sandbox, "veth_between_namespaces", {}, seconds=0.3)
    assert "no two in different namespaces" in outcome.observed


def test_a_limit_without_a_kill_is_not_enough(make_sandbox):
    sandbox = make_sandbox()
    script = OOM_SOLUTION.replace("python3 -c 'b = bytearray(200 * 2**20)'", "true")
    code, out = sandbox.run(["sh", "-c", script])
    assert code == 0, out
    outcome = never(sandbox, "oom_kill_in_child_cgroup", {}, seconds=0.3)
    assert "nothing in it was OOM-killed yet" in outcome.observed


def test_an_overlay_mounted_but_not_entered_does_not_count(make_sandbox):
    sandbox = make_sandbox()
    script = OVERLAY_SOLUTION.replace("exec chroot /tmp/img/root /bin/sleep 600", "exec sleep 600")
    start(sandbox, script)
    outcome = never(sandbox, "root_is_new_overlay", {}, seconds=1.0)
    assert "your sandbox's own /" in outcome.observed


def _container_settled(sandbox, tail: str):
    """The own_container check once the script has gone as far as it goes (its outcome
    ends with `tail`), or after 8 s: on its way, its shell lacks more than that."""
    deadline = time.monotonic() + 8
    while True:
        outcome = check_run(sandbox, "own_container", {})
        if outcome.observed.endswith(tail) or time.monotonic() > deadline:
            return outcome
        time.sleep(0.2)


def test_a_container_missing_one_part_says_which(make_sandbox):
    sandbox = make_sandbox()
    start(sandbox, CONTAINER_SOLUTION.replace("unshare -Urpfnmiu", "unshare -Urpfmiu"))
    outcome = _container_settled(sandbox, "still missing net")
    assert not outcome.passed and outcome.observed.endswith("still missing net"), outcome


def test_a_memory_bomb_at_the_sandbox_limit_counts_as_the_host_defending_itself(make_sandbox):
    sandbox = make_sandbox(memory_bytes=64 * 2**20)
    assert not check_run(sandbox, "sandbox_limit_fired", {"counter": "oom_kill"}).passed
    start(sandbox, "python3 -c 'b = bytearray(300 * 2**20)'")
    outcome = eventually(sandbox, "sandbox_limit_fired", {"counter": "oom_kill"})
    assert outcome.passed and "still here" in outcome.observed
    assert sandbox.alive()


def test_a_segment_in_the_sandboxs_own_ipc_namespace_is_not_isolated(make_sandbox):
    sandbox = make_sandbox()
    sandbox.run(["ipcmk", "-M", "4096"])
    outcome = never(sandbox, "shm_in_own_ipc_namespace", {}, seconds=0.3)
    assert "in your sandbox's own IPC namespace" in outcome.observed


def test_a_server_reached_only_from_its_own_namespace_does_not_count(make_sandbox):
    sandbox = make_sandbox()
    start(sandbox, "python3 -m http.server 8080 --bind 127.0.0.1")
    outcome = never(sandbox, "server_reached_across_namespaces", {"port": 8080}, seconds=1.5)
    assert "no other namespace reaches it" in outcome.observed


def test_unshare_r_maps_root_to_root_not_to_the_learner_user(make_sandbox):
    sandbox = make_sandbox()
    start(sandbox, "unshare -Ur sleep 600")
    outcome = never(sandbox, "user_ns_maps_root_to", {"outside": 1000}, seconds=1.0)
    assert "uid_map (from the host) is 0" in outcome.observed


def test_quiz_checks_compute_their_answers_from_this_sandbox(make_sandbox):
    sandbox = make_sandbox()
    # Nothing listens on the sandbox's own loopback: the checker sees "refused".
    refused = check_run(sandbox, "loopback_probe_answer", {"port": 8000, "answer": "refused"})
    assert refused.passed, refused
    connected = {"port": 8000, "answer": "connected"}
    assert not check_run(sandbox, "loopback_probe_answer", connected).passed
    assert check_run(sandbox, "clone_flags_answer", {"answer": "8"}).passed
    assert not check_run(sandbox, "clone_flags_answer", {"answer": "7"}).passed
    among = {"among": "sys_module,net_raw,sys_time,chown"}
    right = {**among, "answer": "sys_module,sys_time"}
    assert check_run(sandbox, "missing_capabilities_answer", right).passed
    wrong = check_run(sandbox, "missing_capabilities_answer", {**among, "answer": "net_raw"})
    assert not wrong.passed and "does have net_raw" in wrong.observed


def test_a_nested_pid_namespace_two_levels_down(make_sandbox):
    sandbox = make_sandbox()
    start(sandbox, "unshare -pf sleep 600")
    assert eventually(sandbox, "nested_pid_namespace", {}).passed
    shallow = never(sandbox, "nested_pid_namespace", {"depth": 2}, seconds=0.5)
    assert "not PID 1 2 down" in shallow.observed
    start(sandbox, "unshare -pf unshare -pf sleep 600")
    assert eventually(sandbox, "nested_pid_namespace", {"depth": 2}).passed


def test_a_container_that_keeps_every_capability_of_the_learners_root_says_so(make_sandbox):
    sandbox = make_sandbox()
    keeps_all = CONTAINER_SOLUTION.replace(
        "/sbin/capsh --drop=cap_net_raw -- -c 'exec sleep 600'", "/bin/sleep 600"
    )
    start(sandbox, keeps_all)
    outcome = _container_settled(sandbox, "still missing dropped capability")
    assert not outcome.passed and outcome.observed.endswith("still missing dropped capability"), (
        outcome
    )
