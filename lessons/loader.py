"""Read lessons from their folders and check them before anything reaches the database.

Each lesson is ``<content dir>/NN-slug/lesson.md``: YAML front matter between two ``---`` lines
(title, summary, minutes), then the Markdown body. Its steps are ``steps/NN-slug.md`` beside
it, each with front matter (title, checks, hints, solution) and the step's text. Every
problem is reported as ``path:line: message`` so an editor can jump to it, and a lesson with
any problem is refused as a whole while the others load.
"""

import re
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import frontmatter
import yaml
from django.db import transaction

from lessons.models import Lesson, Step
from sandboxapp.runtime.checks import CHECKS, check_problems

LESSON_FILE = "lesson.md"
FOLDER_PATTERN = re.compile(r"^(?P<number>\d{2})-(?P<slug>[a-z0-9]+(?:-[a-z0-9]+)*)$")
FIELDS = ("title", "summary", "minutes")
# Commands the lesson's exercises run, looked for on the host at load (the sandbox sees
# the host's /usr): a missing one is named on the lesson page and in `lessons load`.
OPTIONAL_FIELDS = ("tools", "nodes", "links")
# A lesson's own machines (`web`, `db`): sandboxes of the learner linked by veth pairs.
NODE_NAME = re.compile(r"[a-z][a-z0-9]{0,11}")
TOOL_NAME = re.compile(r"[a-z0-9][a-z0-9._+-]*")
STEP_FIELDS = ("title", "checks", "hints", "solution", "quiz", "setup")
STEPS_DIR = "steps"
MAX_MINUTES = 600


@dataclass(frozen=True)
class Problem:
    path: Path
    line: int | None
    message: str

    def __str__(self) -> str:
        where = _display(self.path) if self.line is None else f"{_display(self.path)}:{self.line}"
        return f"{where}: {self.message}"


@dataclass(frozen=True)
class StepSource:
    number: int
    slug: str
    title: str
    body_markdown: str
    checks: list[dict]
    hints: list[str]
    solution: str
    path: Path
    # {"question": str, "choices": [str, ...] or absent for a typed answer}
    quiz: dict | None = None
    # Shell commands run as root in the learner's sandbox when the step opens (idempotent).
    setup: str = ""


@dataclass(frozen=True)
class LessonSource:
    number: int
    slug: str
    title: str
    summary: str
    minutes: int
    body_markdown: str
    path: Path
    steps: tuple[StepSource, ...] = ()
    tools: tuple[str, ...] = ()
    nodes: tuple[str, ...] = ()
    links: tuple[tuple[str, str], ...] = ()


@dataclass
class ScanResult:
    lessons: list[LessonSource] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    refused: list[Path] = field(default_factory=list)


@dataclass(frozen=True)
class SaveResult:
    created: int
    updated: int
    unchanged: int


class LessonError(Exception):
    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(problem) for problem in problems))
        self.problems = problems


def _display(path: Path) -> str:
    """Paths relative to the working directory are shorter, and editors still open them."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def read_lesson(folder: Path) -> LessonSource:
    """Parse and check one lesson folder; raise LessonError listing every problem found."""
    match = FOLDER_PATTERN.match(folder.name)
    if not match:
        raise LessonError(
            [
                Problem(
                    folder,
                    None,
                    "a lesson folder is named NN-slug: two digits, a dash, then lowercase words "
                    "joined by dashes (e.g. 01-no-such-thing)",
                )
            ]
        )
    path = folder / LESSON_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LessonError(
            [Problem(path, None, f"missing: each lesson folder holds a {LESSON_FILE}")]
        ) from None
    except UnicodeDecodeError as error:
        raise LessonError([Problem(path, None, f"not UTF-8 text ({error.reason})")]) from None

    metadata, key_lines, body, body_line = _split_front_matter(path, text)
    problems = _check_fields(path, metadata, key_lines)
    if not body.strip():
        problems.append(Problem(path, body_line, "the lesson has no body after its front matter"))
    steps = []
    for step_path in sorted((folder / STEPS_DIR).glob("*.md")):
        try:
            steps.append(read_step(step_path))
        except LessonError as error:
            problems.extend(error.problems)
    lesson_nodes = [n for n in metadata.get("nodes") or [] if isinstance(n, str)]
    for step in steps:
        for check in step.checks:
            # In a lesson with machines of its own, a check reads the first unless told.
            if check["node"] is None and lesson_nodes:
                check["node"] = lesson_nodes[0]
            if check["node"] is not None and check["node"] not in lesson_nodes:
                problems.append(
                    Problem(step.path, None, f"check on node {check['node']!r}: not in nodes")
                )
    problems += _image_problems(folder, path, body, body_line)
    for step in steps:
        problems += _image_problems(folder, step.path, step.body_markdown, None)
    slugs = [step.slug for step in steps]
    for step in steps:
        if slugs.count(step.slug) > 1 or [s.number for s in steps].count(step.number) > 1:
            problems.append(Problem(step.path, None, "another step has the same number or slug"))
    if problems:
        raise LessonError(problems)
    return LessonSource(
        number=int(match["number"]),
        slug=match["slug"],
        title=metadata["title"].strip(),
        summary=metadata["summary"].strip(),
        minutes=metadata["minutes"],
        body_markdown=body.strip() + "\n",
        path=path,
        steps=tuple(steps),
        tools=tuple(metadata.get("tools", [])),
        nodes=tuple(metadata.get("nodes", [])),
        links=tuple(tuple(pair) for pair in metadata.get("links", [])),
    )


IMAGE_LINK = re.compile(r"!\[[^\]]*\]\(([^)\s]+)")
DIAGRAM_NAME = re.compile(r"[a-z0-9][a-z0-9-]*\.svg")


def _image_problems(folder: Path, path: Path, text: str, first_line: int | None) -> list[Problem]:
    """Every image is an SVG file beside the lesson, by its plain name."""
    problems = []
    for number, line in enumerate(text.splitlines()):
        for target in IMAGE_LINK.findall(line):
            where = None if first_line is None else first_line + number
            if not DIAGRAM_NAME.fullmatch(target):
                problems.append(
                    Problem(path, where, f"image {target!r}: use an SVG file beside the lesson")
                )
            elif not (folder / target).is_file():
                problems.append(Problem(path, where, f"image {target!r} does not exist"))
    return problems


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise LessonError([Problem(path, None, f"not UTF-8 text ({error.reason})")]) from None


def read_step(path: Path) -> StepSource:
    """Parse and check one step file; raise LessonError listing every problem found."""
    match = FOLDER_PATTERN.match(path.stem)
    if not match:
        raise LessonError(
            [Problem(path, None, "a step file is named NN-slug.md (e.g. 01-find-your-shell.md)")]
        )
    metadata, key_lines, body, body_line = _split_front_matter(path, _read_text(path))
    problems = [
        Problem(
            path,
            key_lines.get(str(key)),
            f"unknown field {key!r}; the fields are {', '.join(STEP_FIELDS)}",
        )
        for key in metadata
        if key not in STEP_FIELDS
    ]
    title = metadata.get("title")
    if not isinstance(title, str) or not title.strip():
        problems.append(Problem(path, key_lines.get("title", 2), "title must be non-empty text"))
    checks = metadata.get("checks") or []
    if not isinstance(checks, list):
        problems.append(Problem(path, key_lines.get("checks"), "checks must be a list"))
        checks = []
    for index, check in enumerate(checks, 1):
        line = key_lines.get("checks")
        if not isinstance(check, dict) or set(check) - {"check", "params", "node"}:
            problems.append(
                Problem(path, line, f"check {index}: a mapping of 'check', 'params' and 'node'")
            )
            continue
        for message in check_problems(check.get("check"), check.get("params", {})):
            problems.append(Problem(path, line, f"check {index}: {message}"))
    hints = metadata.get("hints") or []
    if not isinstance(hints, list) or not all(isinstance(h, str) and h.strip() for h in hints):
        problems.append(Problem(path, key_lines.get("hints"), "hints must be a list of text"))
        hints = []
    solution = metadata.get("solution") or ""
    if not isinstance(solution, str):
        problems.append(Problem(path, key_lines.get("solution"), "solution must be text"))
        solution = ""
    if checks and not solution.strip():
        problems.append(
            Problem(path, key_lines.get("checks"), "a step with checks needs a solution")
        )
    quiz = metadata.get("quiz")
    problems += _quiz_problems(path, key_lines.get("quiz"), quiz, checks)
    setup = metadata.get("setup") or ""
    if not isinstance(setup, str):
        problems.append(Problem(path, key_lines.get("setup"), "setup must be shell commands"))
        setup = ""
    if not body.strip():
        problems.append(Problem(path, body_line, "the step has no text after its front matter"))
    if problems:
        raise LessonError(problems)
    return StepSource(
        number=int(match["number"]),
        slug=match["slug"],
        title=title.strip(),
        body_markdown=body.strip() + "\n",
        checks=[
            {"check": c["check"], "params": c.get("params") or {}, "node": c.get("node")}
            for c in checks
        ],
        hints=[h.strip() for h in hints],
        solution=solution.strip() + "\n" if solution.strip() else "",
        path=path,
        quiz=quiz,
        setup=setup.strip() + "\n" if setup.strip() else "",
    )


def _quiz_problems(path: Path, line: int | None, quiz: object, checks: list) -> list[Problem]:
    """A quiz asks a question; its checks (quiz kinds) judge the answer on the server."""
    answered = [c for c in checks if isinstance(c, dict) and CHECKS.get(c.get("check"))]
    quiz_checks = [c for c in answered if CHECKS[c["check"]].answered]
    if quiz is None:
        if quiz_checks:
            return [Problem(path, line, f"{quiz_checks[0]['check']} needs a quiz: to answer")]
        return []
    problems = []
    if not isinstance(quiz, dict) or set(quiz) - {"question", "choices"}:
        return [Problem(path, line, "quiz: a mapping of question and (optional) choices")]
    if not isinstance(quiz.get("question"), str) or not quiz["question"].strip():
        problems.append(Problem(path, line, "quiz: question must be non-empty text"))
    choices = quiz.get("choices")
    if choices is not None and (
        not isinstance(choices, list) or not all(isinstance(c, str) for c in choices)
    ):
        problems.append(Problem(path, line, "quiz: choices must be a list of text"))
    if not quiz_checks or len(quiz_checks) != len(checks):
        problems.append(Problem(path, line, "a quiz step's checks must all be quiz checks"))
    return problems


def _split_front_matter(path: Path, text: str) -> tuple[dict, dict[str, int], str, int]:
    """Return the front matter, the line of each key, the body and the body's first line."""
    handler = frontmatter.YAMLHandler()
    start = handler.FM_BOUNDARY.match(text)
    if not start:
        raise LessonError(
            [
                Problem(
                    path,
                    1,
                    "no front matter: start the file with a '---' line, then title, summary "
                    "and minutes, then another '---' line",
                )
            ]
        )
    try:
        raw, body = handler.split(text)
    except ValueError:
        raise LessonError(
            [Problem(path, 1, "the front matter has no closing '---' line")]
        ) from None

    # YAML counts lines from where the front matter starts: the end of the opening '---' line.
    offset = text[: start.end()].count("\n") + 1
    try:
        metadata = handler.load(raw)
        node = yaml.compose(raw, Loader=yaml.SafeLoader)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
        line = offset + mark.line if mark else offset
        reason = getattr(error, "problem", None) or str(error)
        # Where the broken construct began is often the line to fix, e.g. an unclosed "[".
        context, context_mark = (
            getattr(error, "context", None),
            getattr(error, "context_mark", None),
        )
        if context and context_mark and context_mark.line != getattr(mark, "line", None):
            reason += f" ({context} on line {offset + context_mark.line})"
        raise LessonError(
            [Problem(path, line, f"the front matter is not valid YAML: {reason}")]
        ) from None
    if not isinstance(metadata, dict) or not isinstance(node, yaml.MappingNode):
        raise LessonError([Problem(path, offset, "the front matter must be 'key: value' lines")])

    key_lines = {str(key.value): offset + key.start_mark.line for key, _ in node.value}
    body_line = offset + raw.count("\n") + 1
    return metadata, key_lines, body, body_line


def _check_fields(path: Path, metadata: dict, key_lines: dict[str, int]) -> list[Problem]:
    problems = []
    first_line = min(key_lines.values(), default=2)
    for key in metadata:
        if key not in FIELDS + OPTIONAL_FIELDS:
            problems.append(
                Problem(
                    path,
                    key_lines.get(str(key)),
                    f"unknown field {key!r}; the fields are {', '.join(FIELDS + OPTIONAL_FIELDS)}",
                )
            )
    nodes = metadata.get("nodes", [])
    if (
        not isinstance(nodes, list)
        or not 1 <= len(nodes) <= 4
        or len(set(map(str, nodes))) != len(nodes)
        or not all(isinstance(n, str) and NODE_NAME.fullmatch(n) for n in nodes)
    ):
        if "nodes" in metadata:
            problems.append(
                Problem(path, key_lines.get("nodes"), "nodes: 1 to 4 distinct names like web, db")
            )
        nodes = []
    links = metadata.get("links", [])
    if not isinstance(links, list) or not all(
        isinstance(pair, list) and len(pair) == 2 and pair[0] != pair[1] and set(pair) <= set(nodes)
        for pair in links
    ):
        problems.append(
            Problem(path, key_lines.get("links"), "links: pairs of two different nodes of nodes")
        )
    tools = metadata.get("tools", [])
    if not isinstance(tools, list) or not all(
        isinstance(t, str) and TOOL_NAME.fullmatch(t) for t in tools
    ):
        problems.append(
            Problem(path, key_lines.get("tools"), "tools must be a list of command names")
        )
    for name in FIELDS:
        if name not in metadata:
            problems.append(Problem(path, first_line, f"missing field {name!r}"))
    for name in ("title", "summary"):
        value = metadata.get(name)
        if name in metadata and (not isinstance(value, str) or not value.strip()):
            problems.append(Problem(path, key_lines.get(name), f"{name} must be non-empty text"))
    title = metadata.get("title")
    if isinstance(title, str) and len(title.strip()) > Lesson._meta.get_field("title").max_length:
        problems.append(
            Problem(path, key_lines.get("title"), "title is longer than 200 characters")
        )
    minutes = metadata.get("minutes")
    if "minutes" in metadata and (
        not isinstance(minutes, int) or isinstance(minutes, bool) or not 1 <= minutes <= MAX_MINUTES
    ):
        problems.append(
            Problem(
                path,
                key_lines.get("minutes"),
                f"minutes must be a whole number from 1 to {MAX_MINUTES}, not {minutes!r}",
            )
        )
    return problems


def scan(content_dir: Path) -> ScanResult:
    """Read every lesson folder under content_dir, skipping files and "." or "_" folders."""
    result = ScanResult()
    if not content_dir.is_dir():
        result.problems.append(Problem(content_dir, None, "the lesson folder does not exist"))
        return result
    seen_numbers: dict[int, Path] = {}
    seen_slugs: dict[str, Path] = {}
    for folder in sorted(content_dir.iterdir()):
        if not folder.is_dir() or folder.name.startswith((".", "_")):
            continue
        try:
            lesson = read_lesson(folder)
        except LessonError as error:
            result.problems.extend(error.problems)
            result.refused.append(folder)
            continue
        clash = seen_numbers.get(lesson.number) or seen_slugs.get(lesson.slug)
        if clash:
            result.problems.append(
                Problem(folder, None, f"its number or slug is already used by {clash.name}")
            )
            result.refused.append(folder)
            continue
        seen_numbers[lesson.number] = seen_slugs[lesson.slug] = folder
        result.lessons.append(lesson)
    return result


def missing_tools(tools: Iterable[str]) -> list[str]:
    """The commands of `tools` that this host's /usr lacks (what sandboxes see)."""
    path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin"
    return [tool for tool in tools if shutil.which(tool, path=path) is None]


def save(lessons: Iterable[LessonSource]) -> SaveResult:
    """Create or update lessons by slug; unchanged ones keep their updated_at."""
    created = updated = unchanged = 0
    with transaction.atomic():
        for source in lessons:
            values = {
                "number": source.number,
                "title": source.title,
                "summary": source.summary,
                "minutes": source.minutes,
                "body_markdown": source.body_markdown,
                "tools": list(source.tools),
                "nodes": list(source.nodes),
                "links": [list(pair) for pair in source.links],
            }
            lesson = Lesson.objects.filter(slug=source.slug).first()
            if lesson is None:
                lesson = Lesson.objects.create(slug=source.slug, **values)
                _save_steps(lesson, source.steps)
                created += 1
                continue
            changed = any(getattr(lesson, name) != value for name, value in values.items())
            if changed:
                for name, value in values.items():
                    setattr(lesson, name, value)
                lesson.save()
            if _save_steps(lesson, source.steps) or changed:
                updated += 1
            else:
                unchanged += 1
    return SaveResult(created, updated, unchanged)


def _save_steps(lesson: Lesson, steps: Iterable[StepSource]) -> bool:
    """Make the lesson's steps those of its files, by slug (progress follows a step's slug);
    return whether anything changed."""
    changed = False
    kept = []
    for source in steps:
        values = {
            "number": source.number,
            "title": source.title,
            "body_markdown": source.body_markdown,
            "checks": source.checks,
            "hints": source.hints,
            "solution": source.solution,
            "quiz": source.quiz,
            "setup": source.setup,
        }
        step, created = Step.objects.get_or_create(lesson=lesson, slug=source.slug, defaults=values)
        if not created and any(getattr(step, k) != v for k, v in values.items()):
            Step.objects.filter(pk=step.pk).update(**values)
            changed = True
        changed = changed or created
        kept.append(step.pk)
    removed, _ = lesson.steps.exclude(pk__in=kept).delete()
    return changed or bool(removed)
