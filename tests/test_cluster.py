"""A class graded on a real dask.distributed cluster (a scheduler and two worker processes on
127.0.0.1), with the gradebook in a real PostgreSQL server, both started here."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from bncourse.grading import classrun
from bncourse.grading.course import Course, solved
from conftest import free_port, wait_for_port
from nbgrader_course import replace_cell

pytestmark = pytest.mark.slow

UNBIASED = "def batch_mean_var(x):\n    return x.mean(axis=0), x.var(axis=0, ddof=1)\n"


def _postgres_bin() -> Path:
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not versions:
        raise RuntimeError(
            "PostgreSQL is not installed: run `make setup` as root (it installs "
            "Debian's postgresql)"
        )
    return versions[-1].parent


@pytest.fixture(scope="module")
def postgres():
    """A PostgreSQL server on 127.0.0.1, in a temporary directory, run as the postgres user
    (it refuses to run as root); yields a database URL."""
    pg = _postgres_bin()
    # outside pytest's own temporary folders, which only root may enter
    data = Path(tempfile.mkdtemp(prefix="bncourse-pgdata-"))
    shutil.chown(data, "postgres", "postgres")
    run_as = ["runuser", "-u", "postgres", "--"]
    init = subprocess.run(
        [
            *run_as,
            str(pg / "initdb"),
            "-D",
            str(data),
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
        ],
        capture_output=True,
        text=True,
    )
    assert init.returncode == 0, init.stderr
    port = free_port()
    server = subprocess.Popen(
        [
            *run_as,
            str(pg / "postgres"),
            "-D",
            str(data),
            "-p",
            str(port),
            "-k",
            str(data),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "fsync=off",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, server, "PostgreSQL")
        subprocess.run(
            [*run_as, str(pg / "createdb"), "-h", "127.0.0.1", "-p", str(port), "gradebook"],
            check=True,
            capture_output=True,
        )
        yield f"postgresql://postgres@127.0.0.1:{port}/gradebook"
    finally:
        server.terminate()
        server.wait(timeout=60)
        shutil.rmtree(data, ignore_errors=True)


def test_a_class_graded_on_a_dask_cluster_into_postgresql(tmp_path, scheduler, postgres):
    course = Course(tmp_path / "course", cell_timeout=10)
    course.generate("ps1-forward")
    release = course.release("ps1-forward")
    answer = solved(release, course.source("ps1-forward"))
    kinds = {
        "honest": answer,
        "blank": release,
        "buggy": replace_cell(answer, "batch_mean_var", UNBIASED),
    }
    for i in range(2):
        for kind, nb in kinds.items():
            course.submit(f"{kind}{i}", "ps1-forward", nb)
    command = [
        sys.executable,
        "-m",
        "bncourse.grading.classrun",
        "--scheduler",
        scheduler,
        "--db-url",
        postgres,
    ]
    proc = subprocess.run(
        command, cwd=course.path, env=course.env, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 2
    assert "ps1-forward not in the gradebook at postgresql://" in proc.stderr
    course.nbgrader(
        "generate_assignment", "ps1-forward", "--force", f"--CourseDirectory.db_url={postgres}"
    )
    proc = subprocess.run(
        command, cwd=course.path, env=course.env, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stderr
    assert "6 to grade in the sandbox on tcp://127.0.0.1" in proc.stderr
    assert "[6/6]" in proc.stderr
    from nbgrader.api import Gradebook

    # generate_assignment made the course's SQLite gradebook; no grade went there
    with Gradebook(f"sqlite:///{course.path / 'gradebook.db'}") as gb:
        assert gb.students == []

    points = course.max_points("ps1-forward")
    full = sum(points.values())
    lost = points["test_batch_mean_var"]  # the later parts are judged on what it returns
    with Gradebook(postgres) as gb:
        totals = {s.id: gb.find_submission("ps1-forward", s.id).score for s in gb.students}
    assert totals == {
        "honest0": full,
        "honest1": full,
        "blank0": 0.0,
        "blank1": 0.0,
        "buggy0": full - lost,
        "buggy1": full - lost,
    }
    markers = [
        json.loads(p.read_text())
        for p in (course.path / "verification").glob(f"*/ps1-forward/{classrun.MARKER}")
    ]
    assert len(markers) == 6 and all(m["success"] and m["sandbox"] for m in markers)
    assert len({m["worker"] for m in markers}) == 2, markers  # both workers graded
    report = subprocess.run(
        [sys.executable, "-m", "bncourse.grading.report", "--db-url", postgres],
        cwd=course.path,
        env=course.env,
        capture_output=True,
        text=True,
    )
    assert report.returncode == 0, report.stderr
    assert "buggy0" in report.stdout and "graded" in report.stdout
