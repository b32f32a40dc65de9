"""Host id blocks, claimed in a state directory of the test's own."""

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

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
def _claims_on_disk(monkeypatch, tmp_path_factory):
    # The claims as such: here straight in the test's directory, not on the runtime's
    # tmpfs (tests/runtime/test_runstate.py), which only root could mount; and the host's
    # claims in a directory of the test's own, not in the one the host's sandboxd uses.
    monkeypatch.setattr(ids, "run_dir", lambda state_dir: state_dir)
    monkeypatch.setattr(ids, "run_path", lambda state_dir: state_dir)
    monkeypatch.setenv(ids.HOST_CLAIMS_ENV, str(tmp_path_factory.mktemp("host-ids")))


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
        if Path(path).parent == tmp_path:  # the state directory's claims, not the host's
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


# --- two state directories on one host --------------------------------------------------


def crowded(monkeypatch, blocks: int) -> list[int]:
    monkeypatch.setattr(ids, "LAST_BLOCK", FIRST_BLOCK + blocks - 1)
    return [block * ID_BLOCK for block in range(FIRST_BLOCK, FIRST_BLOCK + blocks)]


def test_two_state_directories_never_hand_out_the_same_block(tmp_path, monkeypatch):
    every = crowded(monkeypatch, 10)
    site, other = tmp_path / "site", tmp_path / "other"
    site.mkdir(), other.mkdir()

    mine = [ids_borrow(site, borrower(f"site-{i}")) for i in range(5)]
    theirs = [ids_borrow(other, borrower(f"other-{i}")) for i in range(5)]

    assert sorted(mine + theirs) == every
    with pytest.raises(IdsExhausted):
        ids_borrow(other, borrower("one-too-many"))
    # The refused block left no claim behind in the state directory that tried.
    assert sorted(borrowed_blocks(other).values()) == sorted(theirs)

    release_ids(site, mine[0], borrower("site-0"))
    assert ids_borrow(other, borrower("next")) == mine[0]


def test_concurrent_borrows_from_two_state_directories_never_share_a_block(tmp_path, monkeypatch):
    crowded(monkeypatch, 200)
    dirs = [tmp_path / "a", tmp_path / "b"]
    for d in dirs:
        d.mkdir()

    def claim(i: int) -> list[int]:
        return [ids_borrow(dirs[i % 2], borrower(f"box-{i}-{n}")) for n in range(10)]

    bases = [base for batch in race(16, claim) for base in batch]

    assert len(bases) == len(set(bases)) == 160


def host_claim(block: int) -> Path:
    return ids.host_dir() / f"block-{block}"


@pytest.mark.parametrize("left_by", ["removed since", "its sandbox died"])
def test_a_host_claim_its_state_directory_no_longer_holds_is_taken_over(
    tmp_path, monkeypatch, left_by
):
    (base,) = crowded(monkeypatch, 1)
    gone, site = tmp_path / "gone", tmp_path / "site"
    site.mkdir()
    if left_by == "its sandbox died":
        (gone / "ids").mkdir(parents=True)  # the directory is there, its claim is not
    os.symlink(str(gone), host_claim(FIRST_BLOCK))

    assert ids_borrow(site, borrower("box")) == base
    assert os.readlink(host_claim(FIRST_BLOCK)) == os.path.realpath(site)


def test_a_host_claim_left_in_its_own_name_is_its_own_again(tmp_path, monkeypatch):
    (base,) = crowded(monkeypatch, 1)
    # A crash between the two claims' removal, or a reboot with this on a disk.
    os.symlink(os.path.realpath(tmp_path), host_claim(FIRST_BLOCK))

    assert ids_borrow(tmp_path, borrower("box")) == base


def test_a_block_given_back_is_given_back_on_the_host_too(tmp_path, monkeypatch):
    crowded(monkeypatch, 1)
    ids_borrow(tmp_path, borrower("box"))
    assert os.path.lexists(host_claim(FIRST_BLOCK))

    release_ids(tmp_path, FIRST_BLOCK * ID_BLOCK, borrower("box"))

    assert not os.path.lexists(host_claim(FIRST_BLOCK))


def test_a_claim_given_back_while_another_is_taken_over_is_not_handed_out_twice(
    tmp_path, monkeypatch
):
    """B finds the block's host claim held by A and looks whether A still holds it; just
    then A gives it back and C borrows it. B must not then take C's claim over."""
    (base,) = crowded(monkeypatch, 1)
    a, b, c = (tmp_path / name for name in "abc")
    for d in (a, b, c):
        d.mkdir()
    ids_borrow(a, borrower("a"))
    got: dict[str, object] = {}

    def a_gives_back_and_c_borrows() -> None:
        release_ids(a, base, borrower("a"))
        try:
            got["c"] = ids_borrow(c, borrower("c"))
        except IdsExhausted as exc:
            got["c"] = exc

    real_holds = ids._holds
    meanwhile = threading.Thread(target=a_gives_back_and_c_borrows)

    def holds_while_a_gives_back(state_dir, block):
        meanwhile.start()
        meanwhile.join(0.5)  # held up by the host's lock, unless releases skip it
        return real_holds(state_dir, block)

    monkeypatch.setattr(ids, "_holds", holds_while_a_gives_back)
    try:
        got["b"] = ids_borrow(b, borrower("b"))
    except IdsExhausted as exc:
        got["b"] = exc
    meanwhile.join()

    assert [got["b"], got["c"]].count(base) == 1, got
    # And the host's claim names the one that has it.
    holder = "b" if got["b"] == base else "c"
    assert os.readlink(host_claim(FIRST_BLOCK)) == os.path.realpath(tmp_path / holder)


def test_releasing_a_block_leaves_another_state_directorys_host_claim(tmp_path, monkeypatch):
    (base,) = crowded(monkeypatch, 1)
    site, other = tmp_path / "site", tmp_path / "other"
    site.mkdir(), other.mkdir()
    ids_borrow(other, borrower("theirs"))

    release_ids(site, base)  # not the site's to give back: a cleanup run twice, say

    with pytest.raises(IdsExhausted):
        ids_borrow(site, borrower("mine"))


def test_a_state_directory_removed_gives_back_its_host_claims_only(tmp_path, monkeypatch):
    crowded(monkeypatch, 4)
    bench, site = tmp_path / "bench", tmp_path / "site"
    bench.mkdir(), site.mkdir()
    for i in range(2):
        ids_borrow(bench, borrower(f"bench-{i}"))
    kept = ids_borrow(site, borrower("site"))

    ids.host_claims_release(bench)  # its sandboxes are gone, and it is about to be

    assert [p.name for p in ids.host_dir().glob("block-*")] == [f"block-{kept // ID_BLOCK}"]


def test_a_claim_made_while_its_name_is_looked_at_is_not_overwritten(tmp_path, monkeypatch):
    """B finds the block claimed on the host, then, under the lock, finds the claim gone
    (given back): C, which needs no lock to make a claim where none is, makes it just then.
    B must not then put its own over C's."""
    crowded(monkeypatch, 1)
    a, b, c = (tmp_path / name for name in "abc")
    for d in (a, b, c):
        d.mkdir()
    ids_borrow(a, borrower("a"))
    claim = host_claim(FIRST_BLOCK)
    real_readlink = os.readlink
    looked = []

    def given_back_then_taken_by_c(path, *args, **kwargs):
        if Path(path) == claim and not looked:
            looked.append(path)
            # A gave it back before B looked (a release under the lock B now holds).
            os.unlink(claim)
            os.unlink(a / "ids" / f"block-{FIRST_BLOCK}")
            (c / "ids").mkdir()
            os.symlink(borrower("c"), c / "ids" / f"block-{FIRST_BLOCK}")
            os.symlink(os.path.realpath(c), claim)  # C's claim, made after B's look
            raise FileNotFoundError(path)
        return real_readlink(path, *args, **kwargs)

    monkeypatch.setattr(os, "readlink", given_back_then_taken_by_c)
    with pytest.raises(IdsExhausted):
        ids_borrow(b, borrower("b"))

    assert looked
    assert real_readlink(claim) == os.path.realpath(c)
    assert borrowed_blocks(b) == {}
