"""Grading a class with bncourse.grading.classrun: parallel, resumable, refusing to run
student code without its sandbox."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from bncourse.grading import classrun, isolation
from bncourse.grading.course import Course, solved
from nbgrader_course import replace_cell

pytestmark = pytest.mark.slow

UNBIASED = "def batch_mean_var(x):\n    return x.mean(axis=0), x.var(axis=0, ddof=1)\n"


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    course = Course(tmp_path_factory.mktemp("classrun"), cell_timeout=10)
    course.generate("ps1-forward")
    release = course.release("ps1-forward")
    answer = solved(release, course.source("ps1-forward"))
    students = {}
    for i in range(4):
        students[f"honest{i}"] = answer
    students["blank0"] = release
    students["blank1"] = release
    students["buggy0"] = replace_cell(answer, "batch_mean_var", UNBIASED)
    students["buggy1"] = replace_cell(answer, "batch_mean_var", UNBIASED)
    for name, nb in students.items():
        course.submit(name, "ps1-forward", nb)
    return course


def _run(course, *args, **kwargs):
    return subprocess.Popen(
        [sys.executable, "-m", "bncourse.grading.classrun", *args],
        cwd=course.path,
        env=course.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def _markers(course) -> dict:
    return {
        p.parent.parent.name: p.stat().st_mtime_ns
        for p in (course.path / "verification").glob(f"*/ps1-forward/{classrun.MARKER}")
    }


def test_a_killed_run_goes_on_where_it_stopped(course):
    first = _run(course, "--workers", "2", start_new_session=True)
    deadline = time.monotonic() + 300
    while len(_markers(course)) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    os.killpg(first.pid, signal.SIGKILL)  # the runner and its workers, as kill -9 would
    first.wait()
    done_before = _markers(course)
    assert 2 <= len(done_before) < 8, done_before
    second = _run(course, "--workers", "2")
    _, err = second.communicate(timeout=600)
    assert second.returncode == 0, err
    assert f"{len(done_before)} already graded, {8 - len(done_before)} to grade" in err
    assert "[8/8]" not in err and f"[{8 - len(done_before)}/{8 - len(done_before)}]" in err
    assert "ETA" in err
    after = _markers(course)
    assert set(after) == {
        "honest0",
        "honest1",
        "honest2",
        "honest3",
        "blank0",
        "blank1",
        "buggy0",
        "buggy1",
    }
    # nothing finished in the first run was graded again
    assert all(after[s] == t for s, t in done_before.items())
    scores = course.scores("ps1-forward")
    points = course.max_points("ps1-forward")
    full = sum(points.values())
    for student, cells in scores.items():
        total = sum(cells[g] for g in points)
        lost = points["test_batch_mean_var"]  # the later parts are judged on what it returns
        expected = {"honest": full, "blank": 0.0, "buggy": full - lost}[student[:-1]]
        assert total == expected, (student, cells)
    assert (course.path / "grades.csv").is_file()
    assert (course.path / "feedback" / "buggy0" / "ps1-forward" / "ps1-forward.html").is_file()
    for student in after:
        data = json.loads(
            (
                course.path / "verification" / student / "ps1-forward" / "ps1-forward.json"
            ).read_text()
        )
        assert data["sandbox"] is True and data["kernel_peak_mb"] > 0


def test_force_grades_everything_again(course):
    before = _markers(course)
    proc = _run(course, "--workers", "1", "--force", "honest0", "ps1-forward")
    _, err = proc.communicate(timeout=600)
    assert proc.returncode != 0 and "unknown assignment(s): honest0" in err
    proc = _run(course, "--workers", "2", "--force")
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert "0 already graded, 8 to grade" in err
    after = _markers(course)
    assert all(after[s] > t for s, t in before.items())


def test_grading_refuses_to_start_without_the_sandbox_tool(course, monkeypatch, capsys):
    monkeypatch.setattr(isolation, "SANDBOX_TOOL", "no-such-bwrap")
    assert classrun.main(["--root", str(course.path)]) == 2
    err = capsys.readouterr().err
    assert "apt-get install bubblewrap" in err and "--no-sandbox" in err
