"""The cgroup backends against plain directories laid out like a cgroup mount.

In a real cgroupfs, mkdir makes a cgroup and the kernel fills it with its interface files.
`CgroupfsPath` does the same in a plain directory, so SandboxCgroup runs unchanged: its
mkdir calls go through the path objects it derives from the hierarchy's mount point.
"""

from pathlib import Path, PosixPath

import pytest

from sandboxapp.runtime import cgroups
from sandboxapp.runtime.cgroups import (
    CgroupError,
    Hierarchy,
    SandboxCgroup,
    V1Backend,
    V2Backend,
    detect,
)
from sandboxapp.runtime.spec import ID_BLOCK, Limits

OWNER = 16 * ID_BLOCK
ENABLE = "+memory +pids +cpu"

# What the kernel puts in a new (non-root) cgroup2 directory, as it reads when fresh.
CGROUP_FILES = {
    "cgroup.controllers": "cpu memory pids\n",
    "cgroup.subtree_control": "",
    "cgroup.procs": "",
    "cgroup.threads": "",
    "cgroup.events": "populated 0\nfrozen 0\n",
    "cgroup.type": "domain\n",
    "cgroup.kill": "",
    "memory.max": "max\n",
    "memory.swap.max": "max\n",
    "memory.events": "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n",
    "pids.max": "max\n",
    "pids.events": "max 0\n",
    "cpu.max": "max 100000\n",
    "cpu.stat": "usage_usec 0\nuser_usec 0\nsystem_usec 0\n"
    "nr_periods 0\nnr_throttled 0\nthrottled_usec 0\n",
}
# The root cgroup has no limits of its own.
ROOT_FILES = {
    "cgroup.controllers": "cpuset cpu io memory hugetlb pids rdma misc\n",
    "cgroup.subtree_control": "",
    "cgroup.procs": "",
    "cgroup.threads": "",
}
LIMIT_FILES = ("memory.max", "memory.swap.max", "pids.max", "cpu.max")
DELEGATED = ("cgroup.procs", "cgroup.threads", "cgroup.subtree_control")


class CgroupfsPath(PosixPath):
    """A path in a fake cgroup2 mount: making a directory makes a cgroup, files and all."""

    def mkdir(self, mode=0o777, parents=False, exist_ok=False):
        existed = self.is_dir()
        super().mkdir(mode, parents, exist_ok)
        if not existed:
            for name, text in CGROUP_FILES.items():
                (self / name).write_text(text)


@pytest.fixture
def mount(tmp_path) -> CgroupfsPath:
    root = CgroupfsPath(tmp_path / "cgroup2")
    PosixPath.mkdir(root)
    for name, text in ROOT_FILES.items():
        (root / name).write_text(text)
    return root


@pytest.fixture
def backend(mount) -> V2Backend:
    return V2Backend((Hierarchy(mount, ("memory", "pids", "cpu")),))


@pytest.fixture
def sandbox(backend) -> SandboxCgroup:
    backend.prepare_parent("contained")
    return SandboxCgroup(backend, "contained", "box-1")


def owner(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_uid, st.st_gid


def mountinfo_line(mount_id: int, mountpoint: str, fstype: str, options: str) -> str:
    return (
        f"{mount_id} 23 0:{mount_id} / {mountpoint} rw,nosuid,nodev,noexec,relatime "
        f"shared:{mount_id} - {fstype} {fstype} {options}"
    )


# --- detect ------------------------------------------------------------------------------

OTHER_MOUNTS = [
    "22 1 259:2 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p2 rw,errors=remount-ro",
    "23 22 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:2 - sysfs sysfs rw",
    "24 22 0:22 / /proc rw,nosuid,nodev,noexec,relatime shared:3 - proc proc rw",
]


def v2_mountinfo(mountpoint: Path) -> str:
    line = mountinfo_line(30, str(mountpoint), "cgroup2", "rw,nsdelegate,memory_recursiveprot")
    return "\n".join([*OTHER_MOUNTS, line]) + "\n"


def test_detect_picks_v2_when_cgroup2_carries_memory_pids_and_cpu(mount):
    backend = detect(v2_mountinfo(mount))

    assert isinstance(backend, V2Backend)
    assert backend.version == 2
    assert backend.hierarchies == (Hierarchy(mount, ("memory", "pids", "cpu")),)


# This machine's layout (`grep cgroup /proc/self/mountinfo`): a hybrid host, with every v1
# controller on a mount of its own and an empty cgroup2 at /sys/fs/cgroup/unified.
HYBRID_SEPARATE = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / {unified} rw,relatime - cgroup2 cgroup2 rw
"""

# Debian and Ubuntu's systemd hybrid layout: cpu and cpuacct share one hierarchy.
HYBRID_COMBINED = """\
25 22 0:23 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
26 25 0:24 / {unified} rw,nosuid,nodev,noexec shared:10 - cgroup2 cgroup2 rw,nsdelegate
27 25 0:25 / /sys/fs/cgroup/systemd rw,nosuid shared:11 - cgroup cgroup rw,xattr,name=systemd
30 25 0:28 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:14 - cgroup cgroup rw,cpu,cpuacct
31 25 0:29 / /sys/fs/cgroup/cpuset rw,nosuid shared:15 - cgroup cgroup rw,cpuset
32 25 0:30 / /sys/fs/cgroup/net_cls,net_prio rw shared:16 - cgroup cgroup rw,net_cls,net_prio
33 25 0:31 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec shared:17 - cgroup cgroup rw,memory
34 25 0:32 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec shared:18 - cgroup cgroup rw,pids
"""


@pytest.fixture
def unified(tmp_path) -> Path:
    """The hybrid layout's cgroup2 mount, which carries no controllers."""
    path = tmp_path / "unified"
    path.mkdir()
    (path / "cgroup.controllers").write_text("\n")
    return path


def test_detect_reads_a_hybrid_host_with_cpu_and_cpuacct_apart(unified):
    backend = detect(HYBRID_SEPARATE.format(unified=unified))

    assert isinstance(backend, V1Backend)
    assert backend.version == 1
    assert backend.hierarchies == (
        Hierarchy(Path("/sys/fs/cgroup/memory"), ("memory",)),
        Hierarchy(Path("/sys/fs/cgroup/pids"), ("pids",)),
        Hierarchy(Path("/sys/fs/cgroup/cpu"), ("cpu",)),
    )


def test_detect_reads_a_hybrid_host_with_cpu_and_cpuacct_combined(unified):
    backend = detect(HYBRID_COMBINED.format(unified=unified))

    assert isinstance(backend, V1Backend)
    assert backend.hierarchies == (
        Hierarchy(Path("/sys/fs/cgroup/memory"), ("memory",)),
        Hierarchy(Path("/sys/fs/cgroup/pids"), ("pids",)),
        Hierarchy(Path("/sys/fs/cgroup/cpu,cpuacct"), ("cpu", "cpuacct")),
    )


# cgroup2 mounts that lack one of our controllers: the one given to v1, or not delegated.
LACKING = pytest.mark.parametrize(
    "controllers", ["hugetlb", "", "memory pids hugetlb", "cpu pids", "cpuset cpu memory"]
)


@LACKING
def test_detect_falls_back_to_v1_when_cgroup2_lacks_a_controller(tmp_path, controllers):
    (tmp_path / "cgroup.controllers").write_text(f"{controllers}\n")
    v1 = [
        mountinfo_line(31, "/sys/fs/cgroup/memory", "cgroup", "rw,memory"),
        mountinfo_line(32, "/sys/fs/cgroup/pids", "cgroup", "rw,pids"),
        mountinfo_line(33, "/sys/fs/cgroup/cpu,cpuacct", "cgroup", "rw,cpu,cpuacct"),
    ]
    backend = detect(v2_mountinfo(tmp_path) + "\n".join(v1) + "\n")

    assert isinstance(backend, V1Backend)
    assert {c for h in backend.hierarchies for c in h.controllers} >= {"memory", "pids", "cpu"}


@LACKING
def test_detect_raises_when_neither_v2_nor_v1_works(tmp_path, controllers):
    (tmp_path / "cgroup.controllers").write_text(f"{controllers}\n")

    with pytest.raises(CgroupError, match="memory, pids, cpu"):
        detect(v2_mountinfo(tmp_path))


def test_detect_raises_naming_a_missing_v1_controller(unified):
    without_pids = "\n".join(
        line for line in HYBRID_SEPARATE.splitlines() if "/sys/fs/cgroup/pids" not in line
    )

    with pytest.raises(CgroupError, match="lacks pids"):
        detect(without_pids.format(unified=unified))


def test_detect_does_not_take_cpuset_for_cpu(unified):
    without_cpu = "\n".join(
        line for line in HYBRID_SEPARATE.splitlines() if "/sys/fs/cgroup/cpu " not in line
    )

    with pytest.raises(CgroupError, match="lacks cpu"):
        detect(without_cpu.format(unified=unified))


# --- V2Backend.prepare_parent ------------------------------------------------------------


def test_prepare_parent_enables_the_controllers_at_every_level(backend, mount):
    backend.prepare_parent("/contained/sandboxes/")

    for level in (mount, mount / "contained", mount / "contained" / "sandboxes"):
        assert (level / "cgroup.subtree_control").read_text() == ENABLE, level


def test_prepare_parent_runs_again_on_an_existing_parent(backend, mount):
    backend.prepare_parent("contained")
    (mount / "contained" / "cgroup.procs").write_text("42\n")

    backend.prepare_parent("contained")

    assert (mount / "contained" / "cgroup.subtree_control").read_text() == ENABLE
    assert (mount / "contained" / "cgroup.procs").read_text() == "42\n"


# --- SandboxCgroup on v2 -----------------------------------------------------------------

LIMITS = Limits(memory_bytes=128 * 1024**2, pids=64, cpus=0.5)


def test_sandbox_cgroup_paths_are_outer_and_inner(sandbox, mount):
    assert sandbox.outer == [mount / "contained" / "box-1"]
    assert sandbox.inner == [mount / "contained" / "box-1" / "learner"]
    assert not sandbox.exists()


def test_create_applies_the_limits_on_the_outer_cgroup(sandbox):
    sandbox.create(LIMITS, OWNER)

    (outer,) = sandbox.outer
    assert sandbox.exists()
    assert (outer / "memory.max").read_text() == str(128 * 1024**2)
    assert (outer / "memory.swap.max").read_text() == "0"
    assert (outer / "pids.max").read_text() == "64"
    assert (outer / "cpu.max").read_text() == "50000 100000"
    assert (outer / "cgroup.subtree_control").read_text() == ENABLE


def test_create_writes_no_file_the_kernel_would_not_have(sandbox):
    sandbox.create(LIMITS, OWNER)

    for d in (*sandbox.outer, *sandbox.inner):
        files = {p.name for p in d.iterdir() if p.is_file()}
        assert files == set(CGROUP_FILES), d


def test_create_without_swap_support_writes_no_swap_limit(sandbox, monkeypatch):
    # A kernel without swap accounting has no memory.swap.max, and none may be created.
    monkeypatch.delitem(CGROUP_FILES, "memory.swap.max")

    sandbox.create(LIMITS, OWNER)

    (outer,) = sandbox.outer
    assert not (outer / "memory.swap.max").exists()
    assert (outer / "memory.max").read_text() == str(128 * 1024**2)


def test_create_leaves_the_inner_cgroup_unlimited(sandbox):
    # The learner's cgroup is bounded by its parent; its own files stay the kernel's.
    sandbox.create(LIMITS, OWNER)

    (inner,) = sandbox.inner
    for name in LIMIT_FILES:
        assert (inner / name).read_text() == CGROUP_FILES[name], name


def test_create_delegates_the_inner_cgroup_to_the_sandbox_root(sandbox):
    sandbox.create(LIMITS, OWNER)

    (inner,) = sandbox.inner
    assert owner(inner) == (OWNER, OWNER)
    for name in DELEGATED:
        assert owner(inner / name) == (OWNER, OWNER), name


def test_create_never_hands_out_the_limits(sandbox):
    sandbox.create(LIMITS, OWNER)

    (outer,) = sandbox.outer
    (inner,) = sandbox.inner
    assert owner(outer) == (0, 0)
    for path in outer.iterdir():
        if path.is_file():
            assert owner(path) == (0, 0), path
    for name in (*LIMIT_FILES, "cgroup.kill", "cgroup.type"):
        assert owner(inner / name) == (0, 0), name


def test_create_refuses_an_existing_sandbox(sandbox):
    sandbox.create(LIMITS, OWNER)

    with pytest.raises(FileExistsError):
        sandbox.create(LIMITS, OWNER)


@pytest.mark.parametrize(
    ("cpus", "cpu_max"),
    [(1.0, "100000 100000"), (0.01, "1000 100000"), (2.5, "250000 100000"), (0.5, "50000 100000")],
)
def test_cpu_max_is_quota_and_period(sandbox, cpus, cpu_max):
    sandbox.create(Limits(cpus=cpus), OWNER)

    assert (sandbox.outer[0] / "cpu.max").read_text() == cpu_max


def test_cpu_quota_rounds_to_the_nearest_microsecond(sandbox):
    sandbox.create(Limits(cpus=0.29), OWNER)

    assert (sandbox.outer[0] / "cpu.max").read_text() == "29000 100000"


def test_limits_reads_back_what_create_wrote(sandbox):
    sandbox.create(LIMITS, OWNER)

    assert sandbox.limits() == {
        "memory_bytes": 128 * 1024**2,
        "pids": 64,
        "cpu_quota_us": 50000,
    }


def test_limits_reads_max_as_none(sandbox):
    sandbox.create(LIMITS, OWNER)
    (outer,) = sandbox.outer
    (outer / "memory.max").write_text("max\n")
    (outer / "pids.max").write_text("max\n")
    (outer / "cpu.max").write_text("max 100000\n")

    assert sandbox.limits() == {"memory_bytes": None, "pids": None, "cpu_quota_us": None}


def test_counters_parse_the_event_files(sandbox):
    sandbox.create(LIMITS, OWNER)
    (outer,) = sandbox.outer
    (outer / "memory.events").write_text(
        "low 0\nhigh 7\nmax 5\noom 3\noom_kill 2\noom_group_kill 1\n"
    )
    (outer / "pids.events").write_text("max 9\n")
    (outer / "cpu.stat").write_text(
        "usage_usec 81234\nuser_usec 60000\nsystem_usec 21234\n"
        "nr_periods 40\nnr_throttled 11\nthrottled_usec 123456\n"
    )

    assert sandbox.counters() == {
        "oom_kill": 2,
        "memory_max_hit": 5,
        "pids_max_hit": 9,
        "nr_throttled": 11,
    }


def test_counters_of_a_fresh_cgroup_are_zero(sandbox):
    sandbox.create(LIMITS, OWNER)

    assert sandbox.counters() == {
        "oom_kill": 0,
        "memory_max_hit": 0,
        "pids_max_hit": 0,
        "nr_throttled": 0,
    }


def test_counters_are_zero_when_the_files_are_missing(backend, tmp_path):
    assert backend.counters([tmp_path]) == {
        "oom_kill": 0,
        "memory_max_hit": 0,
        "pids_max_hit": 0,
        "nr_throttled": 0,
    }


def test_add_moves_a_pid_into_the_inner_cgroup(sandbox):
    sandbox.create(LIMITS, OWNER)

    sandbox.add(4242)

    assert (sandbox.inner[0] / "cgroup.procs").read_text() == "4242"
    assert (sandbox.outer[0] / "cgroup.procs").read_text() == ""


def test_procs_covers_cgroups_the_learner_made(sandbox):
    sandbox.create(LIMITS, OWNER)
    (inner,) = sandbox.inner
    (inner / "cgroup.procs").write_text("12\n30\n")
    nested = inner / "web"
    nested.mkdir()
    (nested / "cgroup.procs").write_text("7\n12\n")

    assert sandbox.procs() == [7, 12, 30]


def test_kill_writes_cgroup_kill_and_waits_for_an_empty_cgroup(sandbox):
    sandbox.create(LIMITS, OWNER)

    sandbox.backend.kill(sandbox.outer)

    assert (sandbox.outer[0] / "cgroup.kill").read_text() == "1"


def test_kill_raises_when_processes_survive(sandbox, monkeypatch):
    monkeypatch.setattr(cgroups.time, "sleep", lambda _: None)
    sandbox.create(LIMITS, OWNER)
    # A pid no process can have: v2's kill only writes cgroup.kill, but never risk ours.
    (sandbox.inner[0] / "cgroup.procs").write_text("4194305\n")

    with pytest.raises(CgroupError, match="survived"):
        sandbox.backend.kill(sandbox.outer)


def test_child_cgroups_report_the_learners_limits_and_the_kernels_counters(sandbox, mount):
    sandbox.create(Limits(), OWNER)
    inner = mount / "contained" / "box-1" / cgroups.INNER
    (inner / "demo").mkdir()
    (inner / "demo" / "memory.max").write_text("33554432\n")
    (inner / "demo" / "memory.events").write_text("low 0\nhigh 0\nmax 7\noom 1\noom_kill 2\n")
    (inner / "slow").mkdir()
    (inner / "slow" / "cpu.max").write_text("10000 100000\n")
    (inner / "slow" / "cpu.stat").write_text("nr_periods 9\nnr_throttled 4\n")
    # A child without the controllers enabled has no such files: no limits, no counters.
    bare = inner / "bare"
    PosixPath.mkdir(bare)

    children = {c.path: c for c in sandbox.child_cgroups()}

    assert children["demo"].memory_limit == 32 * 2**20 and children["demo"].oom_kills == 2
    assert children["demo"].cpu_quota_us is None
    assert children["slow"].cpu_quota_us == 10000 and children["slow"].nr_throttled == 4
    assert children["bare"] == cgroups.ChildCgroup("bare")


def test_settling_moves_the_sandbox_to_a_leaf_so_the_learner_can_limit_children(sandbox, mount):
    sandbox.create(Limits(), OWNER)
    inner = mount / "contained" / "box-1" / cgroups.INNER

    sandbox.settle(4242, OWNER)

    leaf = inner / cgroups.SETTLED
    assert (leaf / "cgroup.procs").read_text() == "4242"
    assert owner(leaf) == (OWNER, OWNER) and owner(leaf / "cgroup.procs") == (OWNER, OWNER)
    # No process is left in the learner's own cgroup: its controllers can reach children.
    assert (inner / "cgroup.subtree_control").read_text() == "+memory +pids +cpu"
    # The leaf is the sandbox's own, never reported as a cgroup the learner made.
    assert sandbox.child_cgroups() == []
