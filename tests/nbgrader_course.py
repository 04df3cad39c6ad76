"""A throw-away nbgrader course for tests: copy the sources, run nbgrader, build submissions.

A problem set's test module lists :class:`Case` submissions (its own plus
:func:`common_cases`), grades them as one class with :func:`grade_class`: generate the
student version, validate the source and the blank release, autograde every submission in
one run, generate feedback, export grades and write the class report; then asserts each
case with :func:`check_case`: every cell's score from the gradebook, the report's status and
flags, and the feedback. Scores are read through ``nbgrader.api.Gradebook``, never from exit
codes or logs (``autograde`` exits 1 as soon as one student breaks).
"""

from __future__ import annotations

import copy
import csv
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from html import escape as html_escape

import nbformat

from bncourse.grading.course import Course, grade_id, index_of, solved  # noqa: F401 (re-exported)
from bncourse.grading.student.messages import WIDTH


def replace_cell(nb, gid: str, source: str):
    """A copy of ``nb`` with cell ``gid``'s source replaced."""
    nb = copy.deepcopy(nb)
    nb.cells[index_of(nb, gid)].source = source
    return nb


def insert_after(nb, gid: str, source: str):
    """A copy of ``nb`` with a new (student) code cell after cell ``gid``."""
    nb = copy.deepcopy(nb)
    cell = nbformat.v4.new_code_cell(source)
    cell.pop("id", None)
    nb.cells.insert(index_of(nb, gid) + 1, cell)
    return nb


def delete_cell(nb, gid: str):
    nb = copy.deepcopy(nb)
    del nb.cells[index_of(nb, gid)]
    return nb


def with_kernel(nb, name: str):
    nb = copy.deepcopy(nb)
    nb.metadata["kernelspec"] = {"name": name, "display_name": name, "language": "python"}
    return nb


def truncated(nb) -> bytes:
    text = nbformat.writes(nb).encode()
    return text[: len(text) // 2]


def dug_out(module: str, function: str, name: str) -> str:
    """Student code that binds ``name`` to ``module.function`` found among the live objects
    (``gc``): the reference taken from the grader's own captured copy. Attribute lookups are
    guarded, as a determined cheat's would be: some live objects (Keras's lazy optional
    modules) raise ImportError from ``getattr``, and which of them ``gc`` lists first varies."""
    return (
        "import gc\n"
        "def _attr(obj, attr):\n"
        "    try:\n"
        "        return getattr(obj, attr, '')\n"
        "    except Exception:\n"
        "        return ''\n"
        f"{name} = next(\n"
        "    f for f in gc.get_objects()\n"
        f"    if _attr(f, '__name__') == {function!r}\n"
        f"    and _attr(f, '__module__') == {module!r})\n"
    )


def validate(path: Path) -> dict:
    """nbgrader's validation of a notebook (the tests it contains): ``{"passed": bool,
    "failed": [grade ids]}``; read from the Validator, not from an exit code."""
    from nbgrader.validator import Validator

    nb = nbformat.read(path, 4)
    ids = {c.source.strip(): grade_id(c) for c in nb.cells if grade_id(c)}
    # as from the course folder, whose nbgrader_config.py lets hidden checks run (the source
    # notebooks have them); the release and the submissions are validated as students do
    hidden = "BEGIN HIDDEN TESTS" in nbformat.writes(nb)
    saved = os.environ.get("BNCOURSE_HIDDEN_CHECKS")
    os.environ["BNCOURSE_HIDDEN_CHECKS"] = "1" if hidden else ""
    try:
        result = Validator().validate(str(path))
    finally:
        if saved is None:
            del os.environ["BNCOURSE_HIDDEN_CHECKS"]
        else:
            os.environ["BNCOURSE_HIDDEN_CHECKS"] = saved
    failed = sorted(ids.get(c["source"], c["source"][:60]) for c in result.get("failed", []))
    problems = {k: v for k, v in result.items() if k != "failed"}
    return {"passed": not result, "failed": failed, "other": problems}


# --------------------------------------------------------------------------- a graded class

ALL = "all"


@dataclass
class Ctx:
    source: object
    release: object
    solution: object


@dataclass
class Case:
    """A submission, the automatically graded cells it must fail, and its report status."""

    name: str
    build: Callable[[Ctx], object]
    failing: object = ()
    status: str = "graded"
    flags: tuple = ()
    feedback_contains: tuple = ()
    visible_pass: tuple = ()


def common_cases(first_test: str, setup: str = "setup") -> list[Case]:
    """Cases that every problem set gets, whatever it asks for."""
    return [
        Case("reference", lambda c: c.solution),
        Case("untouched", lambda c: c.release, failing=ALL, status="zero"),
        Case("deleted_test", lambda c: delete_cell(c.solution, first_test)),
        Case("kernel_name", lambda c: with_kernel(c.solution, "no-such-kernel")),
        Case(
            "os_exit",
            lambda c: insert_after(c.solution, setup, "import os\nos._exit(1)"),
            failing=ALL,
            status="crashed",
            flags=("could not be graded",),
        ),
        Case(
            "truncated_json",
            lambda c: truncated(c.solution),
            failing=ALL,
            status="crashed",
            flags=("not valid JSON",),
        ),
        Case(
            "rebind_check",
            lambda c: insert_after(c.release, setup, 'check = lambda *args, **kwargs: print("ok")'),
            failing=ALL,
            status="tampered",
            flags=("tampered",),
        ),
        Case(
            "hide_traceback",
            lambda c: insert_after(
                c.release,
                setup,
                "ip = get_ipython()\n"
                "ip.set_custom_exc((BaseException,), lambda *args, **kwargs: None)\n"
                "ip.showtraceback = lambda *args, **kwargs: None",
            ),
            failing=ALL,
            status="zero",
        ),
        Case(
            "print_5000_lines",
            lambda c: insert_after(
                c.solution,
                first_test.replace("test_", "", 1),
                "for i in range(5000):\n    print('line', i)",
            ),
        ),
    ]


@dataclass
class Graded:
    course: Course
    scores: dict
    points: dict
    report: dict
    validation: dict = field(default_factory=dict)
    autograde_seconds: float = 0.0
    autograde_log: str = ""


def grade_class(
    tmp_path_factory, assignment: str, cases, cell_timeout: float, after_submit=None
) -> Graded:
    """Submit every case as a student, autograde the class once, report and export.

    ``after_submit(course)``, if given, runs once every case is submitted (to misplace
    files as students do)."""
    course = Course(tmp_path_factory.mktemp(assignment), cell_timeout=cell_timeout)
    course.generate(assignment)
    source, release = course.source(assignment), course.release(assignment)
    ctx = Ctx(source, release, solved(release, source))
    validation = {
        "source": validate(course.path / "source" / assignment / f"{assignment}.ipynb"),
        "release": validate(course.path / "release" / assignment / f"{assignment}.ipynb"),
    }
    for case in cases:
        path = course.submit(case.name, assignment, case.build(ctx))
        if case.visible_pass:
            validation[case.name] = validate(path)
    if after_submit is not None:
        after_submit(course)
    started = time.perf_counter()
    log = course.nbgrader("autograde", assignment, "--create", check=False).stderr
    seconds = time.perf_counter() - started
    course.nbgrader("generate_feedback", assignment, check=False)
    course.nbgrader("export", check=True)
    proc = subprocess.run(
        [sys.executable, "-m", "bncourse.grading.report", assignment, "--csv", "report.csv"],
        cwd=course.path,
        capture_output=True,
        text=True,
        env=course.env,
    )
    assert proc.returncode == 0, proc.stderr
    with open(course.path / "report.csv") as f:
        report = {
            row["student"]: row for row in csv.DictReader(f) if row["assignment"] == assignment
        }
    return Graded(
        course,
        course.scores(assignment),
        course.max_points(assignment),
        report,
        validation,
        seconds,
        log,
    )


def check_case(graded: Graded, assignment: str, case: Case):
    """Assert a case's status, flags, per-cell scores (from the gradebook) and feedback."""
    row = graded.report[case.name]
    assert row["status"] == case.status, (row, graded.course.path)
    for flag in case.flags:
        assert flag in row["flags"], row
    if case.status == "crashed":
        assert row["score"] == ""
        return
    failing = set(graded.points) if case.failing == ALL else set(case.failing)
    assert failing <= set(graded.points), failing - set(graded.points)
    expected = {g: 0.0 if g in failing else p for g, p in graded.points.items()}
    got = {g: s for g, s in graded.scores[case.name].items() if g in graded.points}
    assert got == expected, f"{case.name}: {graded.course.path}"
    for gid in case.visible_pass:
        assert gid not in graded.validation[case.name]["failed"], graded.validation[case.name]
    feedback = graded.course.path / "feedback" / case.name / assignment / f"{assignment}.html"
    assert feedback.exists(), feedback
    html = feedback.read_text()
    for text in case.feedback_contains:
        assert text in html, f"{case.name}: {text!r} not in the feedback"
    submitted = graded.course.path / "submitted" / case.name / assignment / f"{assignment}.ipynb"
    leaks = feedback_leaks(html, assignment, own_code(submitted))
    assert not leaks, (case.name, leaks)
    autograded = graded.course.path / "autograded" / case.name / assignment / f"{assignment}.ipynb"
    for ename, lines in test_cell_errors(nbformat.read(autograded, 4)):
        assert "bncourse/" not in "\n".join(lines), (case.name, lines)  # no grader frames
        if ename in ("AssertionError", "CheckFailed", "VerificationError"):
            assert len(lines) <= 2 and all(len(line) <= WIDTH for line in lines), (case.name, lines)


def own_code(path: Path) -> str:
    """The source of a submitted notebook's own cells (not its test cells), or "" when the
    file is not a readable notebook."""
    try:
        nb = nbformat.read(path, 4)
    except Exception:  # a broken submission: nothing of its own to show
        return ""
    return "\n".join(
        c.source
        for c in nb.cells
        if not (c.metadata.get("nbgrader", {}).get("grade") and c.cell_type == "code")
    )


def feedback_leaks(html: str, assignment: str, own: str = "") -> list[str]:
    """What a feedback page shows that it must not: the hidden tests' code, their ids and
    descriptions (which describe their inputs), the grader's files; a hidden id that the
    student's own code (``own``) names is the student's, not a leak."""
    from bncourse.grading.registry import problem_set, producers_of

    leaks = [
        s for s in ("BEGIN HIDDEN TESTS", "bncourse/grading", "site-packages/bncourse") if s in html
    ]
    for producer in producers_of(problem_set(assignment)).values():
        if not producer.hidden:
            continue
        if producer.id in own:
            continue
        for quote in ('"', "&quot;", "&#34;", "'", "&#39;"):
            if producer.id + quote in html:
                leaks.append(producer.id)
        if html_escape(producer.description) in html:
            leaks.append(producer.description)
    return leaks


def test_cell_errors(nb) -> list[tuple[str, list[str]]]:
    """``(exception name, traceback lines)`` of every error under a test cell of an
    autograded notebook."""
    return [
        (o.get("ename"), o.get("traceback", []))
        for c in nb.cells
        if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("grade")
        for o in c.get("outputs", [])
        if o.get("output_type") == "error"
    ]


def check_class_outputs(graded: Graded, assignment: str) -> None:
    """The source validates and the blank release does not; the export and the reference's
    verification report agree that the reference solution has every automatic point."""
    assert graded.validation["source"]["passed"], graded.validation["source"]
    assert not graded.validation["release"]["passed"]
    with open(graded.course.path / "grades.csv") as f:
        rows = {(r["assignment"], r["student_id"]): r for r in csv.DictReader(f)}
    total = sum(graded.points.values())
    assert total > 0
    assert float(rows[(assignment, "reference")]["raw_score"]) == total
    assert float(rows[(assignment, "untouched")]["raw_score"]) == 0.0
    report = graded.course.path / "verification" / "reference" / assignment / f"{assignment}.json"
    data = json.loads(report.read_text())
    assert data["verification"]["checks"]
    assert all(v["passed"] for v in data["verification"]["checks"].values())
    assert data["kernel_peak_mb"] > 0 and data["kernel_seconds"] > 0
