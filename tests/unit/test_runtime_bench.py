"""`sandbox bench` times the runtimes side by side: a cycle each per round."""

from __future__ import annotations

from bench import runtime_bench


def test_runtimes_take_turns_in_an_order_rotated_every_round():
    calls: list[tuple[str, int]] = []
    cycles = {name: (lambda i, name=name: calls.append((name, i))) for name in ("a", "b", "c")}

    timings = runtime_bench._time_side_by_side(3, cycles, pause_ms=0)

    assert calls[:3] == [("a", -1), ("b", -1), ("c", -1)]  # each warmed up once, untimed
    assert calls[3:] == [
        ("a", 0), ("b", 0), ("c", 0),
        ("b", 1), ("c", 1), ("a", 1),
        ("c", 2), ("a", 2), ("b", 2),
    ]  # fmt: skip
    assert {name: len(timing.samples) for name, timing in timings.items()} == {
        "a": 3,
        "b": 3,
        "c": 3,
    }


def test_quartiles_of_paired_ratios():
    assert runtime_bench._quartiles([0.8, 0.9, 1.0, 1.1, 1.2]) == {
        "p25": 0.85,
        "p50": 1.0,
        "p75": 1.15,
    }
    assert runtime_bench._quartiles([0.9]) == {"p25": 0.9, "p50": 0.9, "p75": 0.9}
