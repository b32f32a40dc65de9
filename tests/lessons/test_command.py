"""``manage.py lessons validate|load`` against lesson folders made in tmp dirs."""

from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from lessons.models import Lesson

pytestmark = pytest.mark.django_db

LESSON = """---
title: {title}
summary: A summary.
minutes: 10
---
Body of {title}.
"""
BROKEN = "---\ntitle: Broken\nsummary: [\nminutes: 5\n---\nBody\n"


def write(content_dir: Path, folder: str, text: str) -> None:
    (content_dir / folder).mkdir(parents=True, exist_ok=True)
    (content_dir / folder / "lesson.md").write_text(text)


def lessons(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("lessons", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_load_saves_good_lessons_and_refuses_a_broken_one(tmp_path):
    write(tmp_path, "01-first", LESSON.format(title="First"))
    write(tmp_path, "02-broken", BROKEN)
    write(tmp_path, "03-third", LESSON.format(title="Third"))

    out, err = lessons("load", "--content-dir", str(tmp_path))

    assert list(Lesson.objects.values_list("slug", flat=True)) == ["first", "third"]
    assert "Loaded 2 lesson(s): 2 new, 0 updated, 0 unchanged" in out
    assert (
        f"{tmp_path / '02-broken' / 'lesson.md'}:5: the front matter is not valid YAML: did not "
        "find expected ',' or ']' (while parsing a flow sequence on line 3)"
    ) in err
    assert "Refused 1 lesson(s): 02-broken" in err


def test_load_updates_changed_lessons_and_keeps_the_old_version_of_a_broken_edit(tmp_path):
    write(tmp_path, "01-first", LESSON.format(title="First"))
    write(tmp_path, "02-second", LESSON.format(title="Second"))
    lessons("load", "--content-dir", str(tmp_path))
    before = Lesson.objects.get(slug="second").updated_at

    write(tmp_path, "01-first", LESSON.format(title="First, revised"))
    write(tmp_path, "02-second", BROKEN)
    out, _ = lessons("load", "--content-dir", str(tmp_path))

    assert "1 updated" in out
    assert Lesson.objects.get(slug="first").title == "First, revised"
    second = Lesson.objects.get(slug="second")
    assert (second.title, second.updated_at) == ("Second", before)


def test_load_twice_changes_nothing(tmp_path):
    write(tmp_path, "01-first", LESSON.format(title="First"))
    lessons("load", "--content-dir", str(tmp_path))
    stamp = Lesson.objects.get().updated_at

    out, _ = lessons("load", "--content-dir", str(tmp_path))

    assert "0 new, 0 updated, 1 unchanged" in out
    assert Lesson.objects.get().updated_at == stamp


def test_validate_fails_on_a_broken_lesson_and_saves_nothing(tmp_path):
    write(tmp_path, "01-first", LESSON.format(title="First"))
    write(tmp_path, "02-broken", BROKEN)

    with pytest.raises(CommandError, match="1 problem"):
        lessons("validate", "--content-dir", str(tmp_path))
    assert not Lesson.objects.exists()


def test_validate_passes_on_good_lessons(tmp_path):
    write(tmp_path, "01-first", LESSON.format(title="First"))

    out, err = lessons("validate", "--content-dir", str(tmp_path))

    assert "1 lesson(s) valid" in out
    assert err == ""


def test_the_lessons_in_the_repository_are_valid():
    # The real content: a broken lesson file fails CI here.
    lessons("validate")
