"""The lesson loader reads NN-slug/lesson.md files and names the file and line of each problem."""

from pathlib import Path

import pytest

from lessons.loader import LessonError, read_lesson, scan

GOOD = """---
title: PID namespaces
summary: Become PID 1 of a world of your own.
minutes: 20
---
# PID namespaces

Run `unshare -pf --mount-proc sh`.
"""


def write_lesson(content_dir: Path, folder: str, text: str) -> Path:
    path = content_dir / folder / "lesson.md"
    path.parent.mkdir(parents=True)
    path.write_text(text)
    return path


def problems_of(folder: Path) -> list[str]:
    with pytest.raises(LessonError) as caught:
        read_lesson(folder)
    return [str(problem) for problem in caught.value.problems]


def test_a_good_lesson_is_read(tmp_path):
    path = write_lesson(tmp_path, "02-pid-namespaces", GOOD)

    lesson = read_lesson(path.parent)

    assert (lesson.number, lesson.slug) == (2, "pid-namespaces")
    assert lesson.title == "PID namespaces"
    assert lesson.summary == "Become PID 1 of a world of your own."
    assert lesson.minutes == 20
    assert lesson.body_markdown.startswith("# PID namespaces\n")
    assert lesson.path == path


def test_broken_yaml_is_reported_with_the_file_and_line(tmp_path):
    path = write_lesson(
        tmp_path,
        "01-broken",
        "---\ntitle: Broken\nsummary: [unclosed\nminutes: 5\n---\nBody\n",
    )

    (problem,) = problems_of(path.parent)

    # PyYAML notices the unclosed list where the next key starts, and says where it opened.
    assert problem == (
        f"{path}:4: the front matter is not valid YAML: did not find expected ',' or ']' "
        "(while parsing a flow sequence on line 3)"
    )


def test_line_numbers_count_blank_lines_after_the_opening_dashes(tmp_path):
    path = write_lesson(
        tmp_path, "01-spaced", "---\n\ntitle: T\nsummary: S\nminutes: : 3\n---\nB\n"
    )

    (problem,) = problems_of(path.parent)

    assert problem.startswith(f"{path}:5: ")


def test_each_bad_field_is_reported_at_its_own_line(tmp_path):
    path = write_lesson(
        tmp_path, "03-fields", "---\ntitle: ''\nminutes: ten\nsumary: typo\n---\nBody\n"
    )

    problems = problems_of(path.parent)

    assert f"{path}:2: title must be non-empty text" in problems
    assert f"{path}:3: minutes must be a whole number from 1 to 600, not 'ten'" in problems
    assert (
        f"{path}:4: unknown field 'sumary'; the fields are title, summary, minutes, tools, "
        "nodes, links" in problems
    )
    assert f"{path}:2: missing field 'summary'" in problems


def test_a_file_without_front_matter_is_refused(tmp_path):
    path = write_lesson(tmp_path, "04-plain", "# Just Markdown\n")

    (problem,) = problems_of(path.parent)

    assert problem.startswith(f"{path}:1: no front matter")


def test_unclosed_front_matter_is_refused(tmp_path):
    path = write_lesson(tmp_path, "05-open", "---\ntitle: T\nsummary: S\nminutes: 3\n")

    assert problems_of(path.parent) == [f"{path}:1: the front matter has no closing '---' line"]


def test_front_matter_that_is_not_a_mapping_is_refused(tmp_path):
    path = write_lesson(tmp_path, "06-list", "---\n- title\n- summary\n---\nBody\n")

    (problem,) = problems_of(path.parent)

    assert "the front matter must be 'key: value' lines" in problem


def test_an_empty_body_is_refused_at_its_line(tmp_path):
    path = write_lesson(tmp_path, "07-empty", "---\ntitle: T\nsummary: S\nminutes: 3\n---\n\n")

    assert problems_of(path.parent) == [f"{path}:6: the lesson has no body after its front matter"]


def test_a_badly_named_folder_is_refused(tmp_path):
    path = write_lesson(tmp_path, "Intro_Lesson", GOOD)

    (problem,) = problems_of(path.parent)

    assert problem.startswith(f"{path.parent}: a lesson folder is named NN-slug")


def test_a_folder_without_lesson_md_is_refused(tmp_path):
    (tmp_path / "08-missing").mkdir()

    (problem,) = problems_of(tmp_path / "08-missing")

    assert problem.endswith("lesson.md: missing: each lesson folder holds a lesson.md")


def test_scan_keeps_good_lessons_and_refuses_broken_ones(tmp_path):
    write_lesson(tmp_path, "01-good", GOOD)
    write_lesson(tmp_path, "02-broken", "---\ntitle: [\n---\nBody\n")
    write_lesson(tmp_path, "02-same-number", GOOD)
    (tmp_path / ".gitkeep").touch()
    (tmp_path / ".drafts").mkdir()

    result = scan(tmp_path)

    assert [lesson.slug for lesson in result.lessons] == ["good", "same-number"]
    assert [path.name for path in result.refused] == ["02-broken"]
    assert len(result.problems) == 1


def test_scan_refuses_a_second_lesson_with_the_same_number(tmp_path):
    write_lesson(tmp_path, "01-first", GOOD)
    write_lesson(tmp_path, "01-second", GOOD)

    result = scan(tmp_path)

    assert [lesson.slug for lesson in result.lessons] == ["first"]
    assert [str(problem) for problem in result.problems] == [
        f"{tmp_path / '01-second'}: its number or slug is already used by 01-first"
    ]


def test_scan_of_an_empty_folder_finds_nothing_wrong(tmp_path):
    result = scan(tmp_path)

    assert (result.lessons, result.problems) == ([], [])
