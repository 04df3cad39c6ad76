"""The shared-server flow, once, through a temporary exchange directory.

Instructor: release_assignment; student: fetch_assignment, work, submit; instructor: collect,
autograde, generate_feedback, release_feedback, export; student: fetch_feedback.
"""

from __future__ import annotations

import csv
import getpass

import nbformat
import pytest

from bncourse.grading.forward import REVERSED
from nbgrader_course import Course, replace_cell, solved

pytestmark = pytest.mark.slow

PS = "ps1-forward"


def test_exchange_round_trip(tmp_path):
    exchange = tmp_path / "exchange"
    exchange.mkdir()
    exchange.chmod(0o777)
    ex = f"--Exchange.root={exchange}"
    course = Course(tmp_path / "course", cell_timeout=10)
    course.generate(PS)
    course.nbgrader("release_assignment", PS, ex)

    home = tmp_path / "student"
    home.mkdir()
    course.nbgrader("fetch_assignment", PS, "--course", "bncourse", ex, cwd=home)
    fetched = home / PS / f"{PS}.ipynb"
    assert fetched.exists()
    # the student solves everything but gets the moving averages the wrong way round
    work = replace_cell(
        solved(nbformat.read(fetched, 4), course.source(PS)),
        "update_moving_stats",
        "def update_moving_stats(moving_mean, moving_var, mean, var, momentum=0.99):\n"
        "    return (moving_mean * (1 - momentum) + mean * momentum,\n"
        "            moving_var * (1 - momentum) + var * momentum)\n",
    )
    nbformat.write(work, fetched)
    course.nbgrader("submit", PS, "--course", "bncourse", ex, cwd=home)

    course.nbgrader("collect", PS, ex)
    student = getpass.getuser()
    assert (course.path / "submitted" / student / PS / f"{PS}.ipynb").exists()
    course.nbgrader("autograde", PS)
    course.nbgrader("generate_feedback", PS)
    course.nbgrader("release_feedback", PS, ex)
    course.nbgrader("export")

    course.nbgrader("fetch_feedback", PS, "--course", "bncourse", ex, cwd=home)
    feedback = sorted((home / PS / "feedback").rglob(f"{PS}.html"))
    assert len(feedback) == 1, list((home / PS).rglob("*"))
    html = feedback[0].read_text()
    assert REVERSED in html

    points = course.max_points(PS)
    failing = {"test_update_moving_stats"}  # BatchNorm1d is right given this function
    scores = course.scores(PS)[student]
    assert {g: scores[g] for g in points} == {
        g: 0.0 if g in failing else p for g, p in points.items()
    }
    with open(course.path / "grades.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["student_id"] == student]
    assert len(rows) == 1
    assert float(rows[0]["raw_score"]) == sum(p for g, p in points.items() if g not in failing)
