"""Step files: what a good one gives, and every mistake named with its file and line."""

from pathlib import Path

import pytest

from lessons.loader import LessonError, missing_tools, read_lesson, save
from lessons.models import Step

LESSON = "---\ntitle: T\nsummary: S\nminutes: 5\n---\nIntro.\n"
GOOD_STEP = """---
title: Become PID 1
checks:
  - check: nested_pid_namespace
hints:
  - Try unshare.
solution: |
  unshare -pf sleep 1000 &
---
Run `unshare -pf sh`.
"""


def lesson_with(tmp_path: Path, steps: dict[str, str]) -> Path:
    folder = tmp_path / "02-pid"
    (folder / "steps").mkdir(parents=True)
    (folder / "lesson.md").write_text(LESSON)
    for name, text in steps.items():
        (folder / "steps" / name).write_text(text)
    return folder


def problems(folder: Path) -> list[str]:
    with pytest.raises(LessonError) as caught:
        read_lesson(folder)
    return [str(p) for p in caught.value.problems]


def test_a_good_step_is_read(tmp_path):
    lesson = read_lesson(lesson_with(tmp_path, {"01-pid-one.md": GOOD_STEP}))
    (step,) = lesson.steps
    assert (step.number, step.slug, step.title) == (1, "pid-one", "Become PID 1")
    assert step.checks == [{"check": "nested_pid_namespace", "params": {}, "node": None}]
    assert step.hints == ["Try unshare."] and step.solution.startswith("unshare")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (GOOD_STEP.replace("nested_pid_namespace", "nested_pid_namespaec"), "unknown check"),
        (
            GOOD_STEP.replace("  - check: nested_pid_namespace", "  - check: hostname_in_own_uts"),
            "missing parameter 'hostname'",
        ),
        (GOOD_STEP.replace("solution: |\n  unshare -pf sleep 1000 &\n", ""), "needs a solution"),
        (GOOD_STEP.replace("title: Become PID 1", "titel: x"), "unknown field 'titel'"),
        (GOOD_STEP.replace("Run `unshare -pf sh`.\n", ""), "has no text"),
        (GOOD_STEP.replace("  - Try unshare.", "  - {a: 1}"), "hints must be a list of text"),
    ],
)
def test_each_mistake_is_named_with_file_and_line(tmp_path, text, message):
    folder = lesson_with(tmp_path, {"01-pid-one.md": text})
    found = problems(folder)
    assert any(message in p for p in found), found
    assert all(p.startswith(str(folder / "steps" / "01-pid-one.md")) for p in found)


def test_a_badly_named_step_file_is_refused(tmp_path):
    folder = lesson_with(tmp_path, {"first.md": GOOD_STEP})
    assert any("NN-slug.md" in p for p in problems(folder))


@pytest.mark.django_db
def test_saving_keeps_steps_by_slug_and_drops_removed_ones(tmp_path):
    folder = lesson_with(tmp_path, {"01-a.md": GOOD_STEP, "02-b.md": GOOD_STEP})
    save([read_lesson(folder)])
    first = Step.objects.get(slug="a")
    (folder / "steps" / "02-b.md").unlink()
    (folder / "steps" / "01-a.md").write_text(GOOD_STEP.replace("Become PID 1", "Renamed"))
    result = save([read_lesson(folder)])
    assert result.updated == 1
    assert list(Step.objects.values_list("slug", "title")) == [("a", "Renamed")]
    assert Step.objects.get(slug="a").pk == first.pk


QUIZ_STEP = """---
title: Your inode
quiz:
  question: What is the inode of your pid namespace?
checks:
  - check: namespace_inode_answer
    params:
      namespace: pid
solution: readlink /proc/self/ns/pid | tr -dc 0-9
---
Find it.
"""


def test_a_quiz_step_is_read(tmp_path):
    (step,) = read_lesson(lesson_with(tmp_path, {"01-inode.md": QUIZ_STEP})).steps
    assert step.quiz == {"question": "What is the inode of your pid namespace?"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            QUIZ_STEP.replace("quiz:\n  question: What is the inode of your pid namespace?\n", ""),
            "needs a quiz: to answer",
        ),
        (
            QUIZ_STEP.replace(
                "  - check: namespace_inode_answer\n    params:\n      namespace: pid\n",
                "  - check: nested_pid_namespace\n",
            ),
            "must all be quiz checks",
        ),
        (QUIZ_STEP.replace("  question:", "  questoin:"), "quiz: a mapping of question"),
    ],
)
def test_quiz_mistakes_are_named(tmp_path, text, message):
    found = problems(lesson_with(tmp_path, {"01-inode.md": text}))
    assert any(message in p for p in found), found


def test_images_must_be_svg_files_beside_the_lesson(tmp_path):
    step = GOOD_STEP.replace("Run `unshare -pf sh`.", "![a](missing.svg)\n\n![b](../../etc/x.png)")
    found = problems(lesson_with(tmp_path, {"01-pid-one.md": step}))
    assert any("image 'missing.svg' does not exist" in p for p in found), found
    assert any("use an SVG file beside the lesson" in p for p in found), found


def test_tools_are_command_names_and_missing_ones_are_named(tmp_path):
    folder = lesson_with(tmp_path, {})
    text = LESSON.replace("minutes: 5", "minutes: 5\ntools: [unshare, no-such-tool-xyz]")
    (folder / "lesson.md").write_text(text)
    lesson = read_lesson(folder)
    assert lesson.tools == ("unshare", "no-such-tool-xyz")
    assert missing_tools(lesson.tools) == ["no-such-tool-xyz"]
    (folder / "lesson.md").write_text(LESSON.replace("minutes: 5", "minutes: 5\ntools: [rm -rf]"))
    assert any("tools must be a list of command names" in p for p in problems(folder))
