"""`manage.py sandbox bench` measures us and both peers in one run and reports figures."""

from __future__ import annotations

import json

from sandboxapp.runtime.sandbox import rundir_of


def test_bench_reports_every_runtime_side_by_side(config, manage):
    # Enough idle sandboxes that their memory stands out from the host's own noise.
    result = manage("sandbox", "bench", "--runs", "3", "--idle", "20", "--pause-ms", "10", "--json")
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    for runtime in ("contained", "bwrap", "unshare"):
        assert figures[runtime]["runs"] == 3, figures
        assert 0 < figures[runtime]["p50_ms"] <= figures[runtime]["p90_ms"]
    ours = figures["contained"]
    assert 0 < ours["first_exec_p50_ms"] <= ours["first_exec_p90_ms"]
    assert ours["first_exec_p50_ms"] < ours["p50_ms"], "the first exec comes before teardown"
    paired = figures["first_exec_per_bwrap_cycle"]
    assert 0 < paired["p25"] <= paired["p50"] <= paired["p75"]
    assert figures["host_steal_ms"] >= 0
    assert figures["idle_memory_kib_per_sandbox"] > 0 and figures["pause_ms"] == 10
    # Every sandbox the bench made is gone again.
    assert not any(rundir_of(config, "").glob("bench-*"))
    assert not any(rundir_of(config, "").glob("idle-*"))


def test_sandboxd_bench_reports_ours_beside_a_local_pty(manage):
    result = manage(
        "sandbox", "bench-sandboxd", "--runs", "2", "--terminals", "3", "--seconds", "0.5", "--json"
    )
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    for figure in ("attach_to_prompt", "echo"):
        for who in ("contained", "local_pty"):
            assert figures[figure][who]["samples"] > 0
            assert 0 < figures[figure][who]["p50_ms"] <= figures[figure][who]["p99_ms"]
    assert figures["echo"]["terminals"] == 3
    assert figures["check"]["samples"] == 20 and figures["check"]["p95_ms"] > 0
    assert figures["memory_per_idle_terminal_kib"] is not None
