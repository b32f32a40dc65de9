"""Host id blocks, claimed in a state directory of the test's own."""

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from sandboxapp.runtime import ids
from sandboxapp.runtime.ids import (
    FIRST_BLOCK,
    IdsExhausted,
    borrowed_blocks,
    borrower,
    ids_borrow,
    ids_reown,
    release_ids,
    spare_owner,
)
from sandboxapp.runtime.spec import ID_BLOCK


@pytest.fixture(autouse=True)
def _claims_on_disk(monkeypatch):
    # The claims as such: here straight in the test's directory, not on the runtime's
    # tmpfs (tests/runtime/test_runstate.py), which only root could mount.
    monkeypatch.setattr(ids, "run_dir", lambda state_dir: state_dir)


def is_block(base: int) -> bool:
    return FIRST_BLOCK * ID_BLOCK <= base < 2**31 and base % ID_BLOCK == 0


def test_borrowed_blocks_are_distinct_and_valid_uid_bases(tmp_path):
    bases = [ids_borrow(tmp_path, borrower(f"box-{i}")) for i in range(50)]

    assert len(set(bases)) == 50
    assert all(is_block(base) for base in bases), bases


def test_borrowing_never_takes_a_block_someone_holds(tmp_path, monkeypatch):
    monkeypatch.setattr(ids, "LAST_BLOCK", FIRST_BLOCK + 5)
    # A block a learner kept for good before every sandbox borrowed one.
    (tmp_path / "ids").mkdir()
    (tmp_path / "ids" / f"block-{FIRST_BLOCK + 2}").write_text("learner:ada")

    borrowed = [ids_borrow(tmp_path, borrower(f"box-{i}")) for i in range(5)]

    assert (FIRST_BLOCK + 2) * ID_BLOCK not in borrowed
    assert len(set(borrowed)) == 5
    with pytest.raises(ids.IdsExhausted):
        ids_borrow(tmp_path, borrower("box-5"))


def test_release_frees_a_block_for_reuse(tmp_path, monkeypatch):
    monkeypatch.setattr(ids, "LAST_BLOCK", FIRST_BLOCK + 1)
    a = ids_borrow(tmp_path, borrower("box-a"))
    b = ids_borrow(tmp_path, borrower("box-b"))

    release_ids(tmp_path, a)

    assert ids_borrow(tmp_path, borrower("box-c")) == a
    assert {a, b} == {FIRST_BLOCK * ID_BLOCK, (FIRST_BLOCK + 1) * ID_BLOCK}


def test_a_release_by_a_former_holder_leaves_the_next_ones_claim(tmp_path, monkeypatch):
    monkeypatch.setattr(ids, "LAST_BLOCK", FIRST_BLOCK)
    a = ids_borrow(tmp_path, borrower("box-a"))
    release_ids(tmp_path, a, ids.borrower("box-a"))
    assert ids_borrow(tmp_path, borrower("box-b")) == a

    release_ids(tmp_path, a, ids.borrower("box-a"))  # box-a's cleanup, run twice

    assert borrowed_blocks(tmp_path) == {"box-b": a}


def test_releasing_twice_or_an_unclaimed_block_is_harmless(tmp_path):
    a = ids_borrow(tmp_path, borrower("box-a"))
    release_ids(tmp_path, a)
    release_ids(tmp_path, a)
    release_ids(tmp_path, 100 * ID_BLOCK)

    assert borrowed_blocks(tmp_path) == {}


def test_borrowed_blocks_lists_borrowed_ones_only(tmp_path):
    assert borrowed_blocks(tmp_path) == {}
    a = ids_borrow(tmp_path, borrower("box-a"))
    (tmp_path / "ids" / f"block-{FIRST_BLOCK}").write_text("learner:ada")
    b = ids_borrow(tmp_path, borrower("box-b"))

    assert borrowed_blocks(tmp_path) == {"box-a": a, "box-b": b}

    release_ids(tmp_path, a)

    assert borrowed_blocks(tmp_path) == {"box-b": b}


def test_a_claim_changes_hands_in_place_and_stays_a_symlink(tmp_path):
    base = ids_borrow(tmp_path, spare_owner("s1"))
    claim = tmp_path / "ids" / f"block-{base // ID_BLOCK}"

    ids_reown(tmp_path, base, spare_owner("s1"), borrower("box"))

    assert claim.is_symlink() and os.readlink(claim) == borrower("box")
    assert borrowed_blocks(tmp_path) == {"box": base}
    assert [p.name for p in (tmp_path / "ids").iterdir()] == [claim.name]  # no temporary left
    with pytest.raises(IdsExhausted):  # the spare holds it no more
        ids_reown(tmp_path, base, spare_owner("s1"), borrower("other"))


def test_a_claim_made_as_a_file_by_an_earlier_version_is_still_honoured(tmp_path):
    (tmp_path / "ids").mkdir()
    claim = tmp_path / "ids" / f"block-{FIRST_BLOCK + 5}"
    claim.write_text(borrower("old-box"))
    base = (FIRST_BLOCK + 5) * ID_BLOCK

    assert borrowed_blocks(tmp_path) == {"old-box": base}
    release_ids(tmp_path, base, borrower("someone-else"))
    assert claim.exists()
    ids_reown(tmp_path, base, borrower("old-box"), borrower("new-box"))
    assert borrowed_blocks(tmp_path) == {"new-box": base}
    release_ids(tmp_path, base, borrower("new-box"))
    assert not claim.exists() and not claim.is_symlink()


def test_borrowed_blocks_can_skip_blocks_borrowed_just_now(tmp_path):
    old = ids_borrow(tmp_path, borrower("box-old"))
    new = ids_borrow(tmp_path, borrower("box-new"))
    an_hour_ago = time.time() - 3600
    claim = tmp_path / "ids" / f"block-{old // ID_BLOCK}"
    os.utime(claim, (an_hour_ago, an_hour_ago), follow_symlinks=False)

    assert borrowed_blocks(tmp_path, min_age=60) == {"box-old": old}
    assert borrowed_blocks(tmp_path) == {"box-old": old, "box-new": new}


def test_borrowing_costs_a_probe_or_two_however_many_are_held(tmp_path, monkeypatch):
    held = [ids_borrow(tmp_path, borrower(f"box-{i}")) for i in range(300)]
    opened = []
    real_symlink = os.symlink

    def counting_symlink(target, path, *args, **kwargs):
        opened.append(path)
        return real_symlink(target, path, *args, **kwargs)

    monkeypatch.setattr(os, "symlink", counting_symlink)
    probes = []
    for i in range(50):
        opened.clear()
        held.append(ids_borrow(tmp_path, borrower(f"late-{i}")))
        probes.append(len(opened))

    assert len(set(held)) == 350
    assert sum(probes) <= 60, probes  # from the top down, it would be 300 and more each


def race(count: int, claim) -> list:
    """Run `claim(i)` for i in range(count), all threads released at once."""
    start = threading.Barrier(count)

    def one(i: int):
        start.wait()
        return claim(i)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(one, range(count)))


def test_concurrent_borrows_never_share_a_block(tmp_path, monkeypatch):
    monkeypatch.setattr(ids, "LAST_BLOCK", FIRST_BLOCK + 199)  # crowded: they collide

    def claim(i: int) -> list[int]:
        return [ids_borrow(tmp_path, borrower(f"box-{i}-{n}")) for n in range(10)]

    bases = [base for batch in race(16, claim) for base in batch]

    assert len(bases) == len(set(bases)) == 160


def test_the_blocks_learners_once_kept_are_freed_and_nothing_else(tmp_path):
    # As an earlier version left them: a learner's block and its record.
    directory = tmp_path / "ids"
    directory.mkdir()
    (directory / f"block-{FIRST_BLOCK}").write_text("learner:ada")
    (directory / "learner-ada").write_text(str(FIRST_BLOCK * ID_BLOCK))
    sandbox = ids_borrow(tmp_path, borrower("box-a"))
    spare = ids_borrow(tmp_path, ids.spare_owner("_spare-1-1"))

    assert ids.learner_blocks_release(tmp_path) == [FIRST_BLOCK * ID_BLOCK]

    assert sorted(p.name for p in directory.iterdir()) == sorted(
        f"block-{base // ID_BLOCK}" for base in (sandbox, spare)
    )
    assert ids.learner_blocks_release(tmp_path) == []
