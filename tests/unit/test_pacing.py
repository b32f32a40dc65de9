"""The Pacer on its own, with explicit times: who counts as typing, and what a flood owes."""

import pytest

from sandboxapp.runtime.pacing import BURST, REPLY, REPLY_BYTES, WINDOW, Pacer

RATE = 100_000
FLOOD, TYPIST = object(), object()


def paced_pair(now: float = 0.0):
    pacer = Pacer(RATE)
    flood = pacer.allowance(now)
    pacer.typed(TYPIST, pacer.allowance(now), now)
    return pacer, flood


def test_a_flood_alone_is_never_paced():
    pacer = Pacer(RATE)
    flood = pacer.allowance(0.0)
    assert all(pacer.delay(FLOOD, flood, BURST, t / 10) == 0 for t in range(50))


def test_while_another_types_a_flood_reads_its_burst_then_at_the_rate():
    pacer, flood = paced_pair()
    assert pacer.delay(FLOOD, flood, BURST, 0.0) == 0
    assert pacer.delay(FLOOD, flood, 50_000, 0.0) == pytest.approx(0.5)
    # Half a second later it has earned back exactly what it overdrew.
    assert pacer.delay(FLOOD, flood, 10_000, 0.5) == pytest.approx(0.1)


def test_the_burst_does_not_grow_while_a_flood_is_quiet():
    pacer, flood = paced_pair()
    pacer.typed(TYPIST, pacer.allowance(1.0), 1.0)
    assert pacer.delay(FLOOD, flood, BURST + RATE, 1.0) == pytest.approx(1.0)


def test_a_keystroke_counts_as_typing_for_a_window_only():
    pacer, flood = paced_pair()
    assert pacer.delay(FLOOD, flood, 2 * BURST, WINDOW) > 0
    assert pacer.delay(FLOOD, flood, 2 * BURST, WINDOW + 0.01) == 0


def test_a_floods_own_typing_lets_a_reply_through_once_per_window():
    pacer = Pacer(RATE)
    flood = pacer.allowance(0.0)
    assert pacer.typed(FLOOD, flood, 0.0)
    assert pacer.delay(FLOOD, flood, 2 * BURST, 0.0) == 0  # its own typing never paces it
    pacer.typed(TYPIST, pacer.allowance(0.0), 0.0)
    # Within REPLY of its own input, a reply is read at once, and charged...
    assert pacer.delay(FLOOD, flood, BURST + REPLY_BYTES // 2, 0.0) == 0
    # ...but not a flood: past REPLY_BYTES over its allowance, it waits as usual.
    over = REPLY_BYTES // 2 + int(0.1 * RATE) + 1
    assert pacer.delay(FLOOD, flood, over, 0.1) == pytest.approx((REPLY_BYTES + 1) / RATE)
    # More typing within WINDOW lets no other reply through.
    assert not pacer.typed(FLOOD, flood, 1.0)
    assert pacer.delay(FLOOD, flood, 60_000, 1.0) > 0
    # Ctrl-C later on, the other still typing: its debt is forgiven, the prompt read at once.
    pacer.typed(TYPIST, pacer.allowance(1.5), 1.5)
    assert pacer.delay(FLOOD, flood, BURST, 1.9) > 0
    assert pacer.typed(FLOOD, flood, WINDOW)
    assert pacer.delay(FLOOD, flood, 4096, WINDOW) == 0
    assert pacer.delay(FLOOD, flood, 64 * 1024, WINDOW + REPLY) > 0


def test_a_flood_never_owes_more_than_a_burst():
    pacer, flood = paced_pair()
    assert pacer.delay(FLOOD, flood, 100 * BURST, 0.0) == pytest.approx(BURST / RATE)


def test_the_latest_other_typist_counts_whoever_typed_last():
    pacer, flood = paced_pair()
    for t in range(1, 10):
        pacer.typed(FLOOD, flood, t)
        # The flood's own keystrokes never push the other typist out of the record.
        assert pacer.others_typing(FLOOD, t) == (t <= WINDOW)


def test_a_typist_that_left_no_longer_paces_anyone():
    pacer, flood = paced_pair()
    pacer.gone(TYPIST)
    assert pacer.delay(FLOOD, flood, 2 * BURST, 0.0) == 0


def test_rate_zero_turns_pacing_off():
    pacer = Pacer(0)
    flood = pacer.allowance(0.0)
    pacer.typed(TYPIST, pacer.allowance(0.0), 0.0)
    assert pacer.delay(FLOOD, flood, 10 * BURST, 0.0) == 0
