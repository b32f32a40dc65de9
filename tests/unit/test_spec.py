"""SandboxSpec and Limits validation, and parse_size: plain data, nothing is created."""

from dataclasses import replace

import pytest

from sandboxapp.runtime.spec import Limits, SandboxSpec, SpecError, parse_size

MiB = 1024**2
GiB = 1024**3


def spec(**fields) -> SandboxSpec:
    return SandboxSpec(**{"name": "box-1", **fields})


# --- SandboxSpec -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "good",
    [
        spec(),
        spec(name="a"),
        spec(name="0"),
        spec(name="a" * 63),
        spec(name="run-3f9a1c", hostname="web-1"),
        spec(learner="ada"),
        spec(learner="ada", node="db"),
        spec(image="python-3"),
        spec(limits=Limits(memory_bytes=16 * MiB, pids=16, cpus=0.01, disk_bytes=MiB)),
        spec(limits=Limits(memory_bytes=64 * GiB, pids=65536, cpus=64, disk_bytes=1024**4)),
    ],
)
def test_validate_accepts_good_specs(good):
    good.validate()


@pytest.mark.parametrize(
    "name",
    [
        "",
        "a/b",
        "../etc",
        "..",
        "a..b",
        "Box",
        "BOX",
        "a" * 64,
        "-box",
        "box_1",
        "box.1",
        "box 1",
    ],
)
def test_validate_rejects_bad_sandbox_names(name):
    with pytest.raises(SpecError, match="sandbox name"):
        spec(name=name).validate()


@pytest.mark.parametrize("field", ["name", "hostname", "learner", "image"])
def test_validate_rejects_a_trailing_newline(field):
    with pytest.raises(SpecError):
        spec(**{field: "box\n"}).validate()


@pytest.mark.parametrize("learner", ["Ada", "ada/..", "..", "ada.web", "a" * 64, ""])
def test_validate_rejects_bad_learner_ids(learner):
    with pytest.raises(SpecError, match="learner id"):
        spec(learner=learner).validate()


@pytest.mark.parametrize(
    ("learner", "node"), [(None, "web"), ("ada", "Web"), ("ada", "../x"), ("ada", "a" * 64)]
)
def test_validate_rejects_bad_nodes(learner, node):
    with pytest.raises(SpecError, match="node"):
        spec(learner=learner, node=node).validate()


@pytest.mark.parametrize("image", ["", "../default", "Default", "img/x"])
def test_validate_rejects_bad_image_names(image):
    with pytest.raises(SpecError, match="image name"):
        spec(image=image).validate()


@pytest.mark.parametrize("hostname", ["Web", "web.local", "web/1", "a" * 64])
def test_validate_rejects_bad_hostnames(hostname):
    with pytest.raises(SpecError, match="hostname"):
        spec(hostname=hostname).validate()


def test_validate_checks_the_limits_too():
    with pytest.raises(SpecError, match="pids"):
        spec(limits=Limits(pids=1)).validate()


def test_volume_and_hostname_follow_the_learner_and_name():
    assert spec().volume is None
    assert spec(learner="ada").volume == "ada"
    assert spec(learner="ada", node="db").volume == "ada.db"
    assert spec().effective_hostname == "box-1"
    assert spec(hostname="web").effective_hostname == "web"


# --- Limits ------------------------------------------------------------------------------


def test_default_limits_are_valid():
    Limits().validate()


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("memory_bytes", 16 * MiB - 1, "memory"),
        ("memory_bytes", 0, "memory"),
        ("memory_bytes", 64 * GiB + 1, "memory"),
        ("pids", 15, "pids"),
        ("pids", 0, "pids"),
        ("pids", 65537, "pids"),
        ("cpus", 0.0, "cpus"),
        ("cpus", 0.009, "cpus"),
        ("cpus", -1.0, "cpus"),
        ("cpus", 64.5, "cpus"),
        ("cpus", float("nan"), "cpus"),
        ("disk_bytes", MiB - 1, "disk"),
        ("disk_bytes", 0, "disk"),
        ("disk_bytes", 1024**4 + 1, "disk"),
    ],
)
def test_limits_reject_out_of_range_values(field, value, named):
    with pytest.raises(SpecError, match=named):
        replace(Limits(), **{field: value}).validate()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("memory_bytes", 16 * MiB),
        ("memory_bytes", 64 * GiB),
        ("pids", 16),
        ("pids", 65536),
        ("cpus", 0.01),
        ("cpus", 64),
        ("disk_bytes", MiB),
        ("disk_bytes", 1024**4),
    ],
)
def test_limits_accept_their_bounds(field, value):
    replace(Limits(), **{field: value}).validate()


# --- parse_size --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("512M", 512 * MiB),
        ("2G", 2 * GiB),
        ("1024", 1024),
        ("64KiB", 64 * 1024),
        ("64k", 64 * 1024),
        ("256MB", 256 * MiB),
        ("1T", 1024**4),
        (" 2g ", 2 * GiB),
        ("0", 0),
    ],
)
def test_parse_size_reads_sizes(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["lots", "-1M", "", "1.5G", "2X", "M", "1 M B x"])
def test_parse_size_rejects_what_it_cannot_read(text):
    with pytest.raises(SpecError, match="cannot read size"):
        parse_size(text)
