"""Autograde a whole class: in parallel, with progress, resumable, on one machine or a cluster.

Run from the course root (``assignments/``); ``make autograde`` does::

    python -m bncourse.grading.classrun [--workers N] [--force] [--no-sandbox]
        [--scheduler tcp://HOST:PORT] [--db-url URL] [ASSIGNMENT ...]

Each submission (``submitted/<student>/<assignment>/``) is graded by its own ``nbgrader
autograde <assignment> --student <student>`` process, in its own sandbox (each worker has a
sandbox slot, so its user id and process cap are its own). A submission is finished when
its marker ``verification/<student>/<assignment>/done.json`` exists; the marker is written
(atomically) only after nbgrader has committed the grades, so a run stopped at any point,
even by ``kill -9``, goes on where it stopped when started again, and a half-graded
submission is graded again from scratch. ``--force`` grades everything again.

With ``--scheduler`` the submissions are graded by the workers of a running
``dask.distributed`` cluster instead (each in its own sandbox; the course folder must be
at the same path on every worker); ``--db-url`` points nbgrader at another gradebook, such
as PostgreSQL, which the workers then share.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bncourse.progress import Progress

from .isolation import SandboxUnavailable, check_available, claim_slot
from .registry import PROBLEM_SETS

MARKER = "done.json"
_WORKER_SLOT: dict = {}


def submissions(root: Path, assignments=None) -> list[tuple[str, str]]:
    """Every ``(student, assignment)`` with a folder under ``submitted/``, sorted."""
    names = list(assignments) if assignments else list(PROBLEM_SETS)
    unknown = [a for a in names if a not in PROBLEM_SETS]
    if unknown:
        raise ValueError(
            f"unknown assignment(s): {', '.join(unknown)}; known: {', '.join(PROBLEM_SETS)}"
        )
    found = []
    submitted = root / "submitted"
    if submitted.is_dir():
        for student in sorted(p.name for p in submitted.iterdir() if p.is_dir()):
            for name in names:
                if (submitted / student / name).is_dir():
                    found.append((student, name))
    return found


def missing_assignments(root: Path, names: list, db_url: str | None) -> list:
    """The problem sets among ``names`` that the gradebook does not know (autograding
    needs the record ``nbgrader generate_assignment`` writes)."""
    from nbgrader.api import Gradebook, MissingEntry

    missing = []
    with Gradebook(db_url or f"sqlite:///{root / 'gradebook.db'}") as gb:
        for name in names:
            try:
                gb.find_assignment(name)
            except MissingEntry:
                missing.append(name)
    return missing


def marker(root: Path, student: str, assignment: str) -> Path:
    return root / "verification" / student / assignment / MARKER


def is_done(root: Path, student: str, assignment: str) -> bool:
    return marker(root, student, assignment).is_file()


def _write_atomic(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, path)


def finished(
    root: Path,
    student: str,
    assignment: str,
    *,
    success: bool,
    started: float,
    sandbox: bool,
    error: str,
) -> dict:
    """Write a graded submission's marker (what :func:`is_done` looks for) and return it."""
    record = {
        "student": student,
        "assignment": assignment,
        "success": success,
        "seconds": round(time.perf_counter() - started, 3),
        "sandbox": sandbox,
        "worker": f"{socket.gethostname()}:{os.getpid()}",
        "error": error[-3000:],
    }
    _write_atomic(marker(root, student, assignment), record)
    return record


def grade_one(
    root: str,
    student: str,
    assignment: str,
    slot: int,
    *,
    sandbox: bool = True,
    db_url: str | None = None,
    bin_dir: str | None = None,
) -> dict:
    """Autograde one submission with nbgrader in sandbox slot ``slot``; write its marker."""
    root_path = Path(root)
    bin_dir = bin_dir or str(Path(sys.executable).parent)
    env = dict(
        os.environ,
        PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        BNCOURSE_SANDBOX_SLOT=str(slot),
    )
    if not sandbox:
        env["BNCOURSE_NO_SANDBOX"] = "1"
    cmd = [
        os.path.join(bin_dir, "nbgrader"),
        "autograde",
        assignment,
        "--student",
        student,
        "--create",
        "--force",
    ]
    if db_url:
        cmd.append(f"--CourseDirectory.db_url={db_url}")
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=root_path, env=env, capture_output=True, text=True)
    return finished(
        root_path,
        student,
        assignment,
        success=proc.returncode == 0,
        started=started,
        sandbox=sandbox,
        error=proc.stderr if proc.returncode else "",
    )


def worker_main(slot: int, db_url: str | None) -> int:
    """A grading worker: ``{"student", "assignment"}`` lines on stdin, one result line each
    on stdout. nbgrader's configuration is read once, from the course root (the cwd)."""
    os.environ["BNCOURSE_SANDBOX_SLOT"] = str(slot)
    from nbgrader.apps import NbGraderAPI
    from nbgrader.apps.baseapp import NbGrader

    app = NbGrader()
    app.initialize([])
    if db_url:
        app.config.CourseDirectory.db_url = db_url
    api = NbGraderAPI(config=app.config)
    # only result lines go to the parent: keep the pipe on a descriptor of its own and send
    # everything else written to stdout (by nbgrader, the kernels, C code) to the log
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    root = Path.cwd()
    for line in sys.stdin:
        job = json.loads(line)
        started = time.perf_counter()
        result = api.autograde(job["assignment"], job["student"], force=True, create=True)
        record = finished(
            root,
            job["student"],
            job["assignment"],
            success=bool(result.get("success")),
            started=started,
            sandbox=os.environ.get("BNCOURSE_NO_SANDBOX") != "1",
            error=result.get("error") or "",
        )
        out.write(json.dumps(record) + "\n")
        out.flush()
    return 0


def run_local(
    root: Path, jobs: list, workers: int, *, sandbox: bool, db_url=None, log=None
) -> list:
    """Grade ``jobs`` on this machine with ``workers`` worker processes, each in a sandbox
    slot of its own; their logs go to ``log`` (a file object) or are dropped."""
    progress = Progress(len(jobs))
    pending = list(reversed(jobs))
    lock = threading.Lock()
    results = []
    env = dict(
        os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    )
    if not sandbox:
        env["BNCOURSE_NO_SANDBOX"] = "1"

    def work(slot: int):
        cmd = [sys.executable, "-m", "bncourse.grading.classrun", "--worker", str(slot)]
        if db_url:
            cmd += ["--db-url", db_url]
        proc = subprocess.Popen(
            cmd,
            cwd=root,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log or subprocess.DEVNULL,
            text=True,
            bufsize=1,
        )
        try:
            while True:
                with lock:
                    if not pending:
                        break
                    student, assignment = pending.pop()
                proc.stdin.write(json.dumps({"student": student, "assignment": assignment}) + "\n")
                proc.stdin.flush()
                line = proc.stdout.readline()
                if not line:
                    raise RuntimeError(
                        f"grading worker {slot} died while grading {student}/{assignment}"
                    )
                result = json.loads(line)
                with lock:
                    results.append(result)
                progress.step(f"{student}/{assignment}")
        finally:
            proc.stdin.close()
            proc.wait()

    slots = [claim_slot() for _ in range(workers)]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for future in [pool.submit(work, slot) for slot in slots]:
            future.result()
    return results


def _dask_grade(root, student, assignment, sandbox, db_url, bin_dir):
    """Runs on a dask worker, in the sandbox slot this worker process holds."""
    if "slot" not in _WORKER_SLOT:
        _WORKER_SLOT["slot"] = claim_slot()
    slot = _WORKER_SLOT["slot"]
    return grade_one(
        root, student, assignment, slot, sandbox=sandbox, db_url=db_url, bin_dir=bin_dir
    )


def run_dask(root: Path, jobs: list, scheduler: str, *, sandbox: bool, db_url=None) -> list:
    """Grade ``jobs`` on the ``dask.distributed`` cluster at ``scheduler``."""
    from distributed import Client, as_completed as dask_completed

    progress = Progress(len(jobs))
    results = []
    bin_dir = str(Path(sys.executable).parent)
    with Client(scheduler, timeout=30) as client:
        futures = [
            client.submit(
                _dask_grade,
                str(root),
                s,
                a,
                sandbox,
                db_url,
                bin_dir,
                key=f"grade-{a}-{s}",
                pure=False,
            )
            for s, a in jobs
        ]
        for future in dask_completed(futures):
            result = future.result()
            results.append(result)
            progress.step(f"{result['student']}/{result['assignment']}")
    return results


def finish(root: Path, assignments: list, *, db_url=None) -> None:
    """Feedback, export and the class report, once every submission is graded."""
    bin_dir = str(Path(sys.executable).parent)
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    extra = [f"--CourseDirectory.db_url={db_url}"] if db_url else []
    for name in assignments:
        subprocess.run(
            [os.path.join(bin_dir, "nbgrader"), "generate_feedback", name, "--force", *extra],
            cwd=root,
            env=env,
            capture_output=True,
        )
    subprocess.run(
        [os.path.join(bin_dir, "nbgrader"), "export", *extra],
        cwd=root,
        env=env,
        capture_output=True,
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bncourse.grading.classrun",
        description="Autograde every submission under submitted/, in parallel and resumably.",
    )
    parser.add_argument("assignments", nargs="*", help="problem sets (default: all)")
    parser.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="parallel graders on this machine (default: one per core)",
    )
    parser.add_argument(
        "--force", action="store_true", help="grade again submissions that are already graded"
    )
    parser.add_argument(
        "--no-sandbox",
        action="store_true",
        help="run student code without the OS sandbox (trusted notebooks only; the report says so)",
    )
    parser.add_argument("--scheduler", help="a dask.distributed scheduler, tcp://HOST:PORT")
    parser.add_argument(
        "--db-url",
        help="nbgrader's gradebook URL (default: sqlite in the "
        "course root), e.g. postgresql://user@host/db",
    )
    parser.add_argument("--root", default=".", help="the course root (default: .)")
    parser.add_argument("--worker", type=int, metavar="SLOT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:
        return worker_main(args.worker, args.db_url)
    if args.workers < 1:
        parser.error(f"--workers must be at least 1, got {args.workers}")
    root = Path(args.root).resolve()
    if not (root / "nbgrader_config.py").is_file():
        parser.error(f"{root} is not a course root (no nbgrader_config.py)")
    if not args.no_sandbox:
        try:
            check_available()
        except SandboxUnavailable as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    try:
        found = submissions(root, args.assignments)
    except ValueError as err:
        parser.error(str(err))
    missing = missing_assignments(root, sorted({a for _, a in found}), args.db_url)
    if missing:
        where = args.db_url or str(root / "gradebook.db")
        print(
            f"error: {', '.join(missing)} not in the gradebook at {where}: run `nbgrader "
            f"generate_assignment NAME` with the same gradebook first",
            file=sys.stderr,
        )
        return 2
    jobs = [job for job in found if args.force or not is_done(root, *job)]
    print(
        f"{len(found)} submission(s), {len(found) - len(jobs)} already graded, "
        f"{len(jobs)} to grade"
        + ("" if args.no_sandbox else " in the sandbox")
        + (f" on {args.scheduler}" if args.scheduler else f" with {args.workers} worker(s)"),
        file=sys.stderr,
    )
    if args.no_sandbox:
        print("warning: --no-sandbox: student code runs with the grader's rights", file=sys.stderr)
    if jobs:
        if args.scheduler:
            run_dask(root, jobs, args.scheduler, sandbox=not args.no_sandbox, db_url=args.db_url)
        else:
            log_path = root / "verification" / "classrun.log"
            log_path.parent.mkdir(exist_ok=True)
            with open(log_path, "a") as log:
                run_local(
                    root,
                    jobs,
                    args.workers,
                    sandbox=not args.no_sandbox,
                    db_url=args.db_url,
                    log=log,
                )
    graded = sorted({a for _, a in found})
    finish(root, graded, db_url=args.db_url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
