"""The grading budgets, measured: ``python -m bncourse.bench grading``.

Four measurements, from one run on one machine, printed side by side with their budgets:

1. each problem set's reference solution autograded alone in a fresh course: the whole
   command's time, the grading kernel's and the verification re-run's time and peak memory
   (both measured from outside their sandboxes);
2. the sandbox's overhead: one ps1 submission graded with and without the sandbox,
   alternately, ``repeats`` times each; the ratio of the medians (budget: 1.2x);
3. a class of ``class_size`` ps1 submissions (honest, buggy and blank in turn) graded by
   :mod:`~bncourse.grading.classrun` with its default workers (budget: 300 in 6 minutes);
4. the speed-up of two workers over one, on a class of ``speedup_size``.

Nothing here asserts a time: the numbers are for reading.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .course import Course, solved
from .registry import PROBLEM_SETS

BUGGY = "def batch_mean_var(x):\n    return x.mean(axis=0), x.var(axis=0, ddof=1)\n"


def _reference_course(root: Path, assignment: str, students: list[str]) -> Course:
    course = Course(root / assignment)
    course.generate(assignment)
    answer = solved(course.release(assignment), course.source(assignment))
    for student in students:
        course.submit(student, assignment, answer)
    return course


def _autograde(course: Course, assignment: str, *extra, env=None) -> float:
    started = time.perf_counter()
    proc = subprocess.run(
        [
            str(Path(sys.executable).parent / "nbgrader"),
            "autograde",
            assignment,
            "--create",
            *extra,
        ],
        cwd=course.path,
        env=env or course.env,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"nbgrader autograde failed:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - started


def mixed_class(root: Path, size: int) -> Course:
    """A ps1 course with ``size`` submissions: honest, buggy and blank in turn."""
    from .course import index_of

    course = Course(root)
    course.generate("ps1-forward")
    release = course.release("ps1-forward")
    honest = solved(release, course.source("ps1-forward"))
    buggy = solved(release, course.source("ps1-forward"))
    buggy.cells[index_of(buggy, "batch_mean_var")].source = BUGGY
    kinds = (honest, buggy, release)
    for i in range(size):
        course.submit(f"student{i:03d}", "ps1-forward", kinds[i % 3])
    return course


def grade_class(course: Course, *args) -> float:
    """Seconds ``python -m bncourse.grading.classrun ARGS`` takes on ``course``."""
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "bncourse.grading.classrun", *args],
        cwd=course.path,
        env=course.env,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"classrun failed:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - started


def run(problem_sets=None, class_size: int = 300, speedup_size: int = 24, repeats: int = 3) -> dict:
    """Measure; returns ``{"rows", "overhead", "class", "speedup"}`` (see format_report)."""
    names = list(problem_sets or PROBLEM_SETS)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bncourse-grading-bench-") as tmp:
        root = Path(tmp)
        for name in names:
            course = _reference_course(root, name, ["reference"])
            seconds = _autograde(course, name)
            report = json.loads(
                (course.path / "verification" / "reference" / name / f"{name}.json").read_text()
            )
            score = sum(course.scores(name)["reference"][g] for g in course.max_points(name))
            verification = report["verification"]
            rows.append(
                {
                    "problem_set": name,
                    "autograde_seconds": seconds,
                    "kernel_seconds": report.get("kernel_seconds"),
                    "kernel_peak_mb": report.get("kernel_peak_mb"),
                    "verify_seconds": verification["seconds"],
                    "verify_peak_mb": verification["max_rss_mb"],
                    "cpu_seconds": (report.get("kernel_cpu_seconds") or 0)
                    + (verification.get("cpu_seconds") or 0),
                    "score": score,
                    "max_score": sum(course.max_points(name).values()),
                }
            )
        overhead = None
        if repeats > 0:
            course = _reference_course(root / "overhead", "ps1-forward", ["reference"])
            plain = dict(course.env, BNCOURSE_NO_SANDBOX="1")
            _autograde(course, "ps1-forward")  # warm the caches once, untimed
            times = {"sandbox": [], "no_sandbox": []}
            for _ in range(repeats):
                times["sandbox"].append(_autograde(course, "ps1-forward", "--force"))
                times["no_sandbox"].append(_autograde(course, "ps1-forward", "--force", env=plain))
            medians = {k: statistics.median(v) for k, v in times.items()}
            overhead = {
                "repeats": repeats,
                "seconds": times,
                "median": medians,
                "ratio": medians["sandbox"] / medians["no_sandbox"],
            }
        klass = None
        if class_size > 0:
            course = mixed_class(root / "class", class_size)
            seconds = grade_class(course)
            klass = {
                "problem_set": "ps1-forward",
                "students": class_size,
                "workers": os.cpu_count(),
                "seconds": seconds,
                "per_student": seconds / class_size,
            }
        speedup = None
        if speedup_size > 0:
            course = mixed_class(root / "speedup", speedup_size)
            one = grade_class(course, "--workers", "1")
            two = grade_class(course, "--workers", "2", "--force")
            speedup = {
                "students": speedup_size,
                "one_worker": one,
                "two_workers": two,
                "ratio": one / two,
            }
    return {"rows": rows, "overhead": overhead, "class": klass, "speedup": speedup}


def save(result: dict, path, *, started_load=None, benchmark: str = "grading") -> Path:
    """Write ``result`` with its provenance as JSON to ``path``; return the path.

    ``started_load`` is the load average when the run began; the provenance's machine holds
    the one when it ended. ``benchmark`` names what was measured."""
    from bncourse.results import provenance_now

    provenance = provenance_now()
    provenance["load_average_at_start"] = started_load
    path = Path(path)
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(
        json.dumps({"benchmark": benchmark, **result, "provenance": provenance}, indent=1) + "\n"
    )
    tmp.replace(path)
    return path


def load_any(path, benchmark: str) -> dict:
    """A result of ``benchmark`` written by :func:`save`, with its rows; ``ValueError``
    names what is wrong with it."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: not a readable {benchmark} benchmark ({e})") from e
    if data.get("benchmark") != benchmark or not data.get("rows"):
        raise ValueError(
            f"{path}: not a {benchmark} benchmark result (no 'benchmark': {benchmark!r} with rows)"
        )
    return data


def load(path) -> dict:
    """A grading result written by :func:`save`; ``ValueError`` names what is wrong."""
    return load_any(path, "grading")


def format_report(result: dict) -> str:
    """The measurements as a table, with the budgets beside them."""
    lines = [
        "Autograding each problem set's reference solution (one student, fresh course):",
        f"{'problem set':<18}{'score':>9}{'autograde s':>13}{'kernel s':>10}"
        f"{'kernel MB':>11}{'verify s':>10}{'verify MB':>11}{'CPU s':>8}",
    ]
    for r in result["rows"]:
        lines.append(
            f"{r['problem_set']:<18}{r['score']:>5g}/{r['max_score']:<3g}"
            f"{r['autograde_seconds']:>13.1f}{r['kernel_seconds']:>10.1f}"
            f"{r['kernel_peak_mb']:>11.0f}{r['verify_seconds']:>10.1f}"
            f"{r['verify_peak_mb']:>11.0f}{r.get('cpu_seconds', 0):>8.1f}"
        )
    o = result.get("overhead")
    if o:
        lines.append(
            f"One ps1 submission, median of {o['repeats']}: {o['median']['sandbox']:.2f} s in "
            f"the sandbox, {o['median']['no_sandbox']:.2f} s without: {o['ratio']:.2f}x "
            "(budget 1.2x)"
        )
    k = result.get("class")
    if k:
        lines.append(
            f"A class of {k['students']} {k['problem_set']} submissions (honest, buggy, blank) "
            f"with {k['workers']} workers: {k['seconds']:.0f} s in all, "
            f"{k['per_student']:.2f} s per student ({k['seconds'] / 360:.2f}x of the 6-minute "
            "budget)"
        )
    sp = result.get("speedup")
    if sp:
        lines.append(
            f"{sp['students']} submissions: {sp['one_worker']:.0f} s with 1 worker, "
            f"{sp['two_workers']:.0f} s with 2: a speed-up of {sp['ratio']:.2f}x"
        )
    lines.append(
        "kernel: the notebook's own run; verify: the checks re-run in a fresh "
        "sandbox. MB: peak resident memory, measured from outside the sandbox."
    )
    return "\n".join(lines)
