"""The instructor's guide, followed to the letter: the workflow of assignments/README.md, run.

The commands are read from the guide's fenced ``bash`` blocks and run as written, through bash,
but for two: ``make setup``, which this suite's environment has done, and ``jupyter lab`` (see
below). The course folder is made by the guide's own ``mkdir`` and ``cp`` lines (so it holds
``nbgrader_config.py`` and ``source/`` and nothing else of the repository), with a home folder
in a temporary directory and the ``PATH`` the guide exports. The exchange is a temporary folder
named in a configuration file that every user reads, as the guide says to do with
``/etc/jupyter/nbgrader_config.py``. Three students take ps1-forward, each with a home folder
of their own whose configuration gives the student id nbgrader would take from the user name:
``honest`` submits the solution, ``buggy`` the solution with one function wrong, ``blank`` the
released notebook untouched. Where the guide sends the instructor to the formgrader, the test
grades the written answers through nbgrader's Gradebook, as the formgrader's handlers do.

Every score is read from the gradebook, then found again in the feedback HTML (the course's
copy and the one each student fetched) and in the exported CSV.
"""

from __future__ import annotations

import csv
import os
import re
import shlex
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
from nbgrader_course import feedback_leaks, index_of, replace_cell, solved

from bncourse.grading.course import graded_points

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "assignments" / "README.md"
# The guide's workflow lies between these two comments (the book includes the same text).
START = "<!-- book/instructors.md includes the text from here -->"
END = "<!-- book/instructors.md includes the text up to here -->"
PS = "ps1-forward"
# The order the guide's commands must come in: nbgrader's subcommand, or the program's name.
WORKFLOW = [
    "generate_assignment",
    "release_assignment",
    "fetch_assignment",
    "submit",
    "collect",
    "autograde",
    "python -m bncourse.grading.report",
    "jupyter lab",
    "generate_feedback",
    "release_feedback",
    "fetch_feedback",
    "export",
]
STUDENT_COMMANDS = {"fetch_assignment", "submit", "fetch_feedback"}


def guide_steps(text: str) -> dict[str, list[str]]:
    """``{step title: its commands}`` for each ``###`` step of the guide's workflow, in
    order: the lines of its ``bash`` blocks, continuation lines joined."""
    assert text.count(START) == 1 and text.count(END) == 1, "the workflow's markers moved"
    section = text.split(START)[1].split(END)[0]
    steps = {}
    for part in re.split(r"^### ", section, flags=re.MULTILINE)[1:]:
        title, _, body = part.partition("\n")
        blocks = re.findall(r"^```bash\n(.*?)^```", body, flags=re.MULTILINE | re.DOTALL)
        script = "\n".join(blocks).replace("\\\n", " ")
        steps[title.strip()] = [
            line.strip()
            for line in script.splitlines()
            if line.strip() and not line.strip().startswith("#")
        ]
    return steps


def role(command: str) -> str:
    """What a command is, in the terms of :data:`WORKFLOW`."""
    words = shlex.split(command)
    if words[0] == "nbgrader":
        return words[1]
    if words[:3] == ["python", "-m", "bncourse.grading.report"]:
        return " ".join(words[:3])
    return " ".join(words[:2])


def bash(command: str, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "-c", command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


def follow(command: str, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    """Run one of the guide's commands as written; it must succeed."""
    proc = bash(command, cwd, env)
    assert proc.returncode == 0, f"{command} exited {proc.returncode}:\n{proc.stderr[-4000:]}"
    return proc


# --------------------------------------------------------------------------- the students


def _wrong_moving_var(nb, source):
    """The solution, but BatchNorm1d starts its moving variance at 0 instead of 1."""
    nb = solved(nb, source)
    code = nb.cells[index_of(nb, "BatchNorm1d")].source
    wrong = code.replace(
        "self.moving_var = np.ones(num_features)", "self.moving_var = np.zeros(num_features)"
    )
    assert wrong != code
    return replace_cell(nb, "BatchNorm1d", wrong)


@dataclass
class Student:
    name: str
    work: Callable | None  # (fetched notebook, source) -> notebook; None: submit it as fetched
    answer: str | None  # the written answer
    manual: float | None  # the points a grader gives it in the formgrader
    comment: str | None  # and the grader's comment
    failing: tuple | str  # the automatically graded cells it fails, or "all"


STUDENTS = [
    Student("honest", solved, "With epsilon = 0 a constant feature divides 0 by 0.", 2.0, None, ()),
    Student(
        "buggy",
        _wrong_moving_var,
        "Epsilon keeps the division finite.",
        1.5,
        "Right about the division; which batch makes it happen?",
        ("test_BatchNorm1d",),
    ),
    Student("blank", None, None, None, None, "all"),
]


def do_the_work(student: Student, path: Path, source, manual_id: str) -> None:
    """What the student does between fetching and submitting."""
    if student.work is None:
        return
    nb = replace_cell(student.work(nbformat.read(path, 4), source), manual_id, student.answer)
    nbformat.write(nb, path)


def grade_by_hand(gradebook: str, grades: dict, comments: dict) -> None:
    """What the formgrader's grade and comment handlers do when a grader saves them."""
    from nbgrader.api import Gradebook

    with Gradebook(gradebook) as gb:
        for (cell, student), points in grades.items():
            grade = gb.find_grade(cell, PS, PS, student)
            grade.manual_score = points
            grade.extra_credit = None
            grade.needs_manual_grade = grade.manual_score is None and grade.auto_score is None
        for (cell, student), text in comments.items():
            gb.find_comment(cell, PS, PS, student).manual_comment = text
        gb.db.commit()


def gradebook_state(gradebook: str) -> dict:
    """``{student: {cell: (score, needs manual grade)}}`` for ps1-forward."""
    from nbgrader.api import Gradebook

    with Gradebook(gradebook) as gb:
        return {
            s.student_id: {
                g.name: (g.score, g.needs_manual_grade) for nb in s.notebooks for g in nb.grades
            }
            for s in gb.assignment_submissions(PS)
        }


def feedback_scores(html: str, cell: str) -> tuple[tuple, tuple]:
    """``((total, max), (cell's score, max))`` as the feedback page shows them."""
    score = r"Score:\s*([\d.]+)\s*/\s*([\d.]+)"
    total = re.search(score, html)
    part = re.search(rf'name="{re.escape(cell)}".*?{score}', html, flags=re.DOTALL)
    assert total and part, "the feedback page shows no score"
    return (tuple(map(float, total.groups())), tuple(map(float, part.groups())))


# --------------------------------------------------------------------------- the test


def test_the_instructor_guide_works_as_written(tmp_path):
    steps = guide_steps(GUIDE.read_text())
    setup = next(commands for title, commands in steps.items() if title.startswith("Once"))
    workflow = [
        command
        for title, commands in steps.items()
        if re.match(r"\d+\. ", title)
        for command in commands
    ]
    assert [role(c) for c in workflow] == WORKFLOW, workflow

    # The guide's set-up, as root in a clone: `make setup` has been done (this suite runs in
    # its virtual environment); the rest runs as written, from the repository's root.
    assert setup[0] == "make setup", setup
    home = tmp_path / "instructor"
    home.mkdir()
    shared = tmp_path / "etc-jupyter"  # stands for /etc/jupyter: every user reads it
    shared.mkdir()
    exchange = tmp_path / "exchange"
    exchange.mkdir()
    exchange.chmod(0o777)
    (shared / "nbgrader_config.py").write_text(f"c.Exchange.root = {str(exchange)!r}\n")
    base = {
        k: v
        for k, v in os.environ.items()
        if k not in ("JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR")
    }
    base["JUPYTER_CONFIG_PATH"] = str(shared)
    env = dict(base, HOME=str(home))
    done = bash("set -e\n" + "\n".join(setup[1:]) + '\npwd\nprintf "%s\\n" "$PATH"', ROOT, env)
    assert done.returncode == 0, done.stderr
    where, path = done.stdout.splitlines()[-2:]
    course = Path(where)
    env["PATH"] = path
    assert course.parent == home, course
    assert sorted(p.name for p in course.iterdir()) == ["nbgrader_config.py", "source"]
    assert (Path(path.split(os.pathsep)[0]) / "nbgrader").exists(), path

    source = nbformat.read(course / "source" / PS / f"{PS}.ipynb", 4)
    automatic, by_hand = graded_points(source)
    ((manual_id, manual_max),) = by_hand.items()
    homes = {}
    for s in STUDENTS:
        homes[s.name] = tmp_path / "students" / s.name
        (homes[s.name] / ".jupyter").mkdir(parents=True)
        (homes[s.name] / ".jupyter" / "nbgrader_config.py").write_text(
            f"c.CourseDirectory.student_id = {s.name!r}\n"
        )
    gradebook = f"sqlite:///{course / 'gradebook.db'}"

    for command in workflow:
        what = role(command)
        if what in STUDENT_COMMANDS:
            for s in STUDENTS:
                follow(command, homes[s.name], dict(base, HOME=str(homes[s.name]), PATH=path))
                if what == "fetch_assignment":
                    do_the_work(s, homes[s.name] / PS / f"{PS}.ipynb", source, manual_id)
        elif what == "jupyter lab":
            before = gradebook_state(gradebook)
            # what `classrun` and `make autograde` leave: feedback made before the manual
            # grades, which the guide's `generate_feedback --force` must replace
            follow(f"nbgrader generate_feedback {PS}", course, env)
            stale = (course / "feedback" / "buggy" / PS / f"{PS}.html").read_text()
            assert feedback_scores(stale, manual_id)[1] == (0.0, manual_max)
            grade_by_hand(
                gradebook,
                {(manual_id, s.name): s.manual for s in STUDENTS if s.manual},
                {(manual_id, s.name): s.comment for s in STUDENTS if s.comment},
            )
        else:
            follow(command, course, env)
            if what == "collect":
                assert sorted(p.name for p in (course / "submitted").iterdir()) == sorted(
                    s.name for s in STUDENTS
                )

    # the report of step 4: who failed what, and whose written answer waits for a grader
    with open(course / "report.csv") as f:
        report = {r["student"]: r for r in csv.DictReader(f) if r["assignment"] == PS}
    assert {n: r["status"] for n, r in report.items()} == {
        "honest": "graded",
        "buggy": "graded",
        "blank": "zero",
    }
    assert report["buggy"]["failed_parts"] == "test_BatchNorm1d"
    waiting = {n for n, r in report.items() if r["needs_manual_grade"] == "True"}
    assert waiting == {"honest", "buggy"}, report
    assert {n for n, cells in before.items() if cells[manual_id][1]} == waiting
    assert before["blank"][manual_id] == (0.0, False)  # left as released: 0, nothing to do

    after = gradebook_state(gradebook)
    grades = {}
    for s in STUDENTS:
        failing = set(automatic) if s.failing == "all" else set(s.failing)
        expected = {g: 0.0 if g in failing else p for g, p in automatic.items()}
        expected[manual_id] = s.manual or 0.0
        assert {g: score for g, (score, _) in after[s.name].items()} == expected, s.name
        assert not any(waits for _, waits in after[s.name].values()), s.name
        grades[s.name] = sum(expected.values())
    total = sum(automatic.values()) + manual_max
    assert grades == {
        "honest": total,
        "buggy": sum(automatic.values()) - automatic["test_BatchNorm1d"] + 1.5,
        "blank": 0.0,
    }

    for s in STUDENTS:
        html = (course / "feedback" / s.name / PS / f"{PS}.html").read_text()
        assert feedback_scores(html, manual_id) == (
            (grades[s.name], total),
            (s.manual or 0.0, manual_max),
        ), s.name
        if s.comment:
            assert s.comment in html
        assert not feedback_leaks(html, PS), (s.name, feedback_leaks(html, PS))
        fetched = list((homes[s.name] / PS / "feedback").glob(f"*/{PS}.html"))
        assert len(fetched) == 1, fetched
        assert fetched[0].read_text() == html

    with open(course / "grades.csv") as f:
        rows = {r["student_id"]: r for r in csv.DictReader(f) if r["assignment"] == PS}
    assert {
        n: (float(r["raw_score"]), float(r["score"]), float(r["max_score"]))
        for n, r in rows.items()
    } == {n: (g, g, total) for n, g in grades.items()}
