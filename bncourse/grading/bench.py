"""The grading budgets, measured: ``python -m bncourse.bench grading``.

For each problem set, autograde its reference solution as the only student of a fresh course
and report the whole command's time, the grading kernel's time and peak resident memory, and
the verification process's time and peak memory. Then autograde a class of ``class_size``
copies of ps1-forward's reference solution in one command. The budgets the course promises:
under 60 s per reference solution, under 3 minutes for a class of 40 on ps1, on 2 CPU cores.

Nothing here asserts a time: the numbers are for reading, from one run on one machine.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from .course import Course, solved
from .registry import PROBLEM_SETS


def _reference_course(root: Path, assignment: str, students: list[str]) -> Course:
    course = Course(root / assignment)
    course.generate(assignment)
    answer = solved(course.release(assignment), course.source(assignment))
    for student in students:
        course.submit(student, assignment, answer)
    return course


def _autograde(course: Course, assignment: str) -> float:
    started = time.perf_counter()
    course.nbgrader("autograde", assignment, "--create")
    return time.perf_counter() - started


def run(problem_sets=None, class_size: int = 40) -> dict:
    """Measure; returns ``{"rows": [...], "class": {...}}`` (see :func:`format_report`)."""
    names = list(problem_sets or PROBLEM_SETS)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bncourse-grading-bench-") as tmp:
        root = Path(tmp)
        for name in names:
            course = _reference_course(root, name, ["reference"])
            seconds = _autograde(course, name)
            report = json.loads((course.path / "verification" / "reference" / name /
                                 f"{name}.json").read_text())
            score = sum(course.scores(name)["reference"][g] for g in course.max_points(name))
            rows.append({
                "problem_set": name,
                "autograde_seconds": seconds,
                "kernel_seconds": report.get("kernel_seconds"),
                "kernel_peak_mb": report.get("kernel_peak_mb"),
                "verify_seconds": report["verification"]["seconds"],
                "verify_peak_mb": report["verification"]["max_rss_mb"],
                "score": score,
                "max_score": sum(course.max_points(name).values()),
            })
        klass = None
        if class_size > 0:
            students = [f"student{i:03d}" for i in range(1, class_size + 1)]
            course = _reference_course(root / "class", "ps1-forward", students)
            seconds = _autograde(course, "ps1-forward")
            klass = {"problem_set": "ps1-forward", "students": class_size,
                     "seconds": seconds, "per_student": seconds / class_size}
    return {"rows": rows, "class": klass}


def save(result: dict, path, *, started_load=None) -> Path:
    """Write ``result`` with its provenance as JSON to ``path``; return the path.

    ``started_load`` is the load average when the run began; the provenance's machine holds
    the one when it ended."""
    from bncourse.results import provenance_now

    provenance = provenance_now()
    provenance["load_average_at_start"] = started_load
    path = Path(path)
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(json.dumps({"benchmark": "grading", **result, "provenance": provenance},
                              indent=1) + "\n")
    tmp.replace(path)
    return path


def load(path) -> dict:
    """A result written by :func:`save`; ``ValueError`` names what is wrong with it."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: not a readable grading benchmark ({e})") from e
    if data.get("benchmark") != "grading" or not data.get("rows"):
        raise ValueError(f"{path}: not a grading benchmark result (no 'benchmark': 'grading' "
                         "with rows)")
    return data


def format_report(result: dict) -> str:
    """The measurements as a table, with the budgets beside them."""
    lines = [
        "Autograding each problem set's reference solution (one student, fresh course):",
        f"{'problem set':<18}{'score':>9}{'autograde s':>13}{'kernel s':>10}"
        f"{'kernel MB':>11}{'verify s':>10}{'verify MB':>11}  budget 60 s",
    ]
    for r in result["rows"]:
        lines.append(
            f"{r['problem_set']:<18}{r['score']:>5g}/{r['max_score']:<3g}"
            f"{r['autograde_seconds']:>13.1f}{r['kernel_seconds']:>10.1f}"
            f"{r['kernel_peak_mb']:>11.0f}{r['verify_seconds']:>10.1f}"
            f"{r['verify_peak_mb']:>11.0f}  {r['autograde_seconds'] / 60:.2f}x of budget"
        )
    k = result.get("class")
    if k:
        lines.append(
            f"A class of {k['students']} {k['problem_set']} submissions: {k['seconds']:.0f} s in "
            f"all, {k['per_student']:.1f} s per student ({k['seconds'] / 180:.2f}x of the "
            "3-minute budget)"
        )
    lines.append("kernel: the notebook's own run; verify: the same checks re-run in a sealed "
                 "process. MB: peak resident memory.")
    return "\n".join(lines)
