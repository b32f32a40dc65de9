"""The sandbox image and the /usr it sees, built once however many learners arrive at once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from sandboxapp.runtime import image


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
