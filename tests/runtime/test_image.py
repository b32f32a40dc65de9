"""The sandbox image and the /usr it sees, built once however many learners arrive at once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from sandboxapp.runtime import image
from sandboxapp.runtime.sandbox import SandboxError, sandbox_usr, state_dir_check


def test_a_class_arriving_at_once_builds_the_image_once(tmp_path, monkeypatch):
    # The first sandboxes of a fresh install start together; each asks for the image.
    builds = []
    build = image._build_default
    monkeypatch.setattr(image, "_build_default", lambda root: builds.append(root) or build(root))
    with ThreadPoolExecutor(8) as pool:
        built = list(pool.map(lambda _: image.image_ensure(tmp_path), range(8)))
    assert built == [image.image_dir(tmp_path)] * 8
    assert len(builds) == 1
    root = built[0]
    assert (root / "etc" / "bash.bashrc").read_text().startswith("# Interactive shells")
    assert (root / "home" / "learner").stat().st_uid == 1000
    # Nothing half-built is left beside it.
    assert sorted(p.name for p in root.parent.iterdir() if not p.name.endswith(".lock")) == [
        "default"
    ]


def test_a_state_directory_sandboxes_cannot_walk_to_is_refused_plainly(config):
    # Under a 0700 directory (as /root is), every sandbox would fail with a bare EACCES from
    # the kernel as it mounts its layers: refused once, with what to do.
    closed = config.state_dir / "closed"
    closed.mkdir(mode=0o700)
    # Through a symlink too: what counts is where the path leads.
    link = config.state_dir / "looks-open"
    link.symlink_to(closed)
    for state in (closed / "state", link / "state"):
        with pytest.raises(SandboxError, match=rf"`chmod o\+x {closed}`"):
            sandbox_usr(state)
    closed.chmod(0o711)
    state_dir_check(closed / "state")
