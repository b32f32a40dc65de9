"""Host id blocks, claimed as files in a state directory of the test's own."""

import multiprocessing
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from sandboxapp.runtime import ids
from sandboxapp.runtime.ids import (
    FIRST_BLOCK,
    borrowed_blocks,
    ids_borrow,
    ids_for_learner,
    release_ids,
)
from sandboxapp.runtime.spec import ID_BLOCK, SandboxSpec


def is_block(base: int) -> bool:
    return base >= FIRST_BLOCK * ID_BLOCK and base % ID_BLOCK == 0


def test_a_learner_keeps_one_block(tmp_path):
    first = ids_for_learner(tmp_path, "ada")

    assert is_block(first)
    assert ids_for_learner(tmp_path, "ada") == first
    assert ids_for_learner(tmp_path, "ada") == first


def test_learners_get_distinct_blocks(tmp_path):
    bases = [ids_for_learner(tmp_path, learner) for learner in ("ada", "bob", "cy", "dee")]

    assert all(is_block(base) for base in bases)
    assert len(set(bases)) == 4
    assert ids_for_learner(tmp_path, "bob") == bases[1]


def test_learners_fill_blocks_from_the_bottom_and_borrowers_from_the_top(tmp_path):
    assert ids_for_learner(tmp_path, "ada") == FIRST_BLOCK * ID_BLOCK
    assert ids_borrow(tmp_path, "box-1") == ids.LAST_BLOCK * ID_BLOCK
    assert ids_borrow(tmp_path, "box-2") == (ids.LAST_BLOCK - 1) * ID_BLOCK


def test_borrowed_blocks_are_distinct_and_valid_uid_bases(tmp_path):
    bases = [ids_borrow(tmp_path, f"box-{i}") for i in range(20)]

    assert len(set(bases)) == 20
    for i, base in enumerate(bases):
        assert is_block(base), base
        SandboxSpec(name=f"box-{i}", uid_base=base).validate()


def test_borrowing_never_reuses_a_learner_block(tmp_path, monkeypatch):
    monkeypatch.setattr(ids, "LAST_BLOCK", FIRST_BLOCK + 5)  # borrowers reach the learners
    learner = ids_for_learner(tmp_path, "ada")

    borrowed = [ids_borrow(tmp_path, f"box-{i}") for i in range(5)]

    assert learner not in borrowed
    with pytest.raises(ids.IdsExhausted):
        ids_borrow(tmp_path, "box-5")


def test_release_frees_a_block_for_reuse(tmp_path):
    a = ids_borrow(tmp_path, "box-a")
    b = ids_borrow(tmp_path, "box-b")

    release_ids(tmp_path, a)

    c = ids_borrow(tmp_path, "box-c")
    assert c == a
    assert ids_borrow(tmp_path, "box-d") not in (a, b)


def test_releasing_twice_or_an_unclaimed_block_is_harmless(tmp_path):
    a = ids_borrow(tmp_path, "box-a")
    release_ids(tmp_path, a)
    release_ids(tmp_path, a)
    release_ids(tmp_path, 100 * ID_BLOCK)

    assert borrowed_blocks(tmp_path) == {}


def test_borrowed_blocks_lists_borrowed_ones_only(tmp_path):
    assert borrowed_blocks(tmp_path) == {}
    ids_for_learner(tmp_path, "ada")
    a = ids_borrow(tmp_path, "box-a")
    ids_for_learner(tmp_path, "bob")
    b = ids_borrow(tmp_path, "box-b")

    assert borrowed_blocks(tmp_path) == {"box-a": a, "box-b": b}

    release_ids(tmp_path, a)

    assert borrowed_blocks(tmp_path) == {"box-b": b}


def test_borrowed_blocks_can_skip_blocks_borrowed_just_now(tmp_path):
    old = ids_borrow(tmp_path, "box-old")
    new = ids_borrow(tmp_path, "box-new")
    an_hour_ago = time.time() - 3600
    os.utime(tmp_path / "ids" / f"block-{old // ID_BLOCK}", (an_hour_ago, an_hour_ago))

    assert borrowed_blocks(tmp_path, min_age=60) == {"box-old": old}
    assert borrowed_blocks(tmp_path) == {"box-old": old, "box-new": new}


def test_ids_run_out_cleanly(tmp_path, monkeypatch):
    monkeypatch.setattr(ids, "LAST_BLOCK", FIRST_BLOCK + 2)
    bases = [ids_borrow(tmp_path, f"box-{i}") for i in range(3)]

    with pytest.raises(ids.IdsExhausted):
        ids_borrow(tmp_path, "box-3")
    with pytest.raises(ids.IdsExhausted):
        ids_for_learner(tmp_path, "ada")

    release_ids(tmp_path, bases[1])
    assert ids_for_learner(tmp_path, "ada") == bases[1]


def race(count: int, claim) -> list:
    """Run `claim(i)` for i in range(count), all threads released at once."""
    start = threading.Barrier(count)

    def one(i: int):
        start.wait()
        return claim(i)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(one, range(count)))


def test_concurrent_borrows_never_share_a_block(tmp_path):
    def claim(i: int) -> list[int]:
        return [ids_borrow(tmp_path, f"box-{i}-{n}") for n in range(10)]

    bases = [base for claimed in race(16, claim) for base in claimed]

    assert len(bases) == 160
    assert len(set(bases)) == 160
    assert all(is_block(base) for base in bases)
    assert set(borrowed_blocks(tmp_path).values()) == set(bases)


def test_concurrent_learners_never_share_a_block(tmp_path):
    def claim(i: int) -> tuple[int, int]:
        return ids_for_learner(tmp_path, f"learner-{i}"), ids_borrow(tmp_path, f"box-{i}")

    pairs = race(16, claim)
    bases = [base for pair in pairs for base in pair]

    assert len(set(bases)) == 32
    for i, (learner, _) in enumerate(pairs):
        assert ids_for_learner(tmp_path, f"learner-{i}") == learner


def test_a_claim_that_loses_the_race_keeps_the_winners_block(tmp_path, monkeypatch):
    # Another process records its block for the learner between our claim and our link.
    real_link, us = os.link, os.getpid()

    def link(src, dst):
        if os.getpid() == us:
            rival = multiprocessing.get_context("fork").Process(
                target=ids_for_learner, args=(tmp_path, "ada")
            )
            rival.start()
            rival.join()
            assert rival.exitcode == 0
        real_link(src, dst)

    monkeypatch.setattr(os, "link", link)
    base = ids_for_learner(tmp_path, "ada")
    monkeypatch.undo()

    winner = int((tmp_path / "ids" / "learner-ada").read_text())
    assert base == winner
    assert ids_for_learner(tmp_path, "ada") == winner
    # Ours was given back: only the winner's block is claimed, and no temporary file is left.
    assert sorted(p.name for p in (tmp_path / "ids").iterdir()) == [
        f"block-{winner // ID_BLOCK}",
        "learner-ada",
    ]


def test_concurrent_processes_claiming_one_learner_agree(tmp_path):
    ctx = multiprocessing.get_context("fork")
    start, results = ctx.Barrier(8), ctx.SimpleQueue()

    def claim():
        start.wait()
        results.put(ids_for_learner(tmp_path, "ada"))

    workers = [ctx.Process(target=claim) for _ in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
        assert worker.exitcode == 0

    recorded = ids_for_learner(tmp_path, "ada")
    assert [results.get() for _ in workers] == [recorded] * 8
    # The losers gave their blocks back: only the learner's is still claimed.
    assert sorted(p.name for p in (tmp_path / "ids").iterdir()) == [
        f"block-{recorded // ID_BLOCK}",
        "learner-ada",
    ]


def test_concurrent_claims_for_one_learner_agree_and_keep_the_block(tmp_path):
    # Each round goes wrong in most runs (unlinked, half-written or released records):
    # twenty rounds never all pass.
    for round_ in range(20):
        state = tmp_path / str(round_)
        results = race(8, lambda _, state=state: ids_for_learner(state, "ada"))

        recorded = ids_for_learner(state, "ada")
        assert results == [recorded] * 8
        # The learner's block stays claimed: no borrower may get the learner's uids.
        assert recorded not in [ids_borrow(state, f"box-{i}") for i in range(8)]


def test_forgetting_a_learner_frees_their_block(tmp_path):
    base = ids.ids_for_learner(tmp_path, "ada")
    ids.ids_forget(tmp_path, "ada")
    assert ids.ids_for_learner(tmp_path, "bob") == base
    ids.ids_forget(tmp_path, "nobody")  # nothing to do


def test_claims_cost_little_however_many_blocks_learners_hold(tmp_path, monkeypatch):
    (tmp_path / "ids").mkdir()
    for i in range(2000):
        (tmp_path / "ids" / f"block-{FIRST_BLOCK + i}").write_text(f"learner:old{i}")
    opened, listed = [], []
    real_open, real_listdir = os.open, os.listdir
    monkeypatch.setattr(ids.os, "open", lambda path, *a: opened.append(path) or real_open(path, *a))
    monkeypatch.setattr(ids.os, "listdir", lambda path: listed.append(path) or real_listdir(path))
    # A learner's first claim: no listing, and only the free block is opened.
    assert ids_for_learner(tmp_path, "newcomer") == (FIRST_BLOCK + 2000) * ID_BLOCK
    assert (len(listed), len(opened)) == (0, 1)
    # A borrow: likewise.
    opened.clear(), listed.clear()
    assert ids_borrow(tmp_path, "box") == ids.LAST_BLOCK * ID_BLOCK
    assert (len(listed), len(opened)) == (0, 1)


def test_a_learner_takes_a_hole_once_the_blocks_above_are_gone(tmp_path, monkeypatch):
    monkeypatch.setattr(ids, "LAST_BLOCK", FIRST_BLOCK + 3)
    bases = [ids_for_learner(tmp_path, name) for name in ("ada", "bob", "cy")]
    ids.ids_forget(tmp_path, "bob")
    assert ids_borrow(tmp_path, "box") == (FIRST_BLOCK + 3) * ID_BLOCK
    # Past the last block: the listing finds the hole bob left.
    assert ids_for_learner(tmp_path, "dee") == bases[1]
    with pytest.raises(ids.IdsExhausted):
        ids_for_learner(tmp_path, "eve")
