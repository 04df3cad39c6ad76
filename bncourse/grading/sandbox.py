"""Sealing a notebook's process, and re-running a submission where its tricks cannot reach.

Two lines of defence keep a grade honest:

1. :func:`seal` (called by :func:`bncourse.grading.seal` in each notebook's first cell)
   captures the reference code the checks need, then installs a Python audit hook, which
   cannot be removed, that refuses to import or read ``bncourse``'s reference modules
   (and Keras/TensorFlow in the NumPy-only sets) and refuses to start other processes.
   A student sees the same rules at home as the autograder applies.
2. Inside one process a determined student can still reach anything (patch ``check``,
   hide tracebacks, dig references out of closures). So at autograde time
   :func:`verify` runs the submission again in a fresh sealed Python process that never
   loads the references: it executes the student's cells (every code cell but the test
   cells and the instructor's locked ``demo`` cells), calls each check's ``produce`` on the student's objects and saves what they
   computed as plain arrays (``.npz`` without pickles). The arrays are judged here, in a
   process that ran no student code. A test cell that passed in the notebook but whose
   checks fail here is marked failed and flagged as tampered.

A cell or a check that hangs is given ``cell_timeout`` seconds; the process is then killed
and started again with that step skipped, so one infinite loop costs only the cells that
need it. A process that dies (``os._exit``) is restarted the same way.

Run by the autograder as ``python -m bncourse.grading.sandbox JOB.json``.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .registry import ProblemSet, cell_timeout, checks_of, problem_set

_PROCESS_EVENTS = frozenset(
    {
        "subprocess.Popen",
        "os.system",
        "os.exec",
        "os.posix_spawn",
        "os.spawn",
        "os.fork",
        "os.forkpty",
        "pty.spawn",
    }
)
_SEALED: dict = {}
MAX_RESTARTS = 8


class SealedError(ImportError):
    """Raised when a sealed notebook imports a module it may not use."""


def _blocked_files(blocked: tuple) -> tuple[frozenset, frozenset]:
    """Directories and file-name stems of the blocked ``bncourse`` modules."""
    package = Path(__file__).resolve().parent.parent
    stems = set()
    for name in blocked:
        if name.startswith("bncourse."):
            stems.add(name.split(".")[-1])
    dirs = {str(package), str(package / "__pycache__"), str(package / "grading"),
            str(package / "grading" / "__pycache__")}
    return frozenset(dirs), frozenset(stems)


def _make_hook(ps: ProblemSet):
    blocked = ps.blocked_modules
    dirs, stems = _blocked_files(blocked)
    realpath, dirname, basename = os.path.realpath, os.path.dirname, os.path.basename
    fspath = os.fspath
    message = (
        f"{{}} is not available in {ps.name}: your code is graded with bncourse's reference "
        "implementations{} disabled, so that it is your own work that is tested"
    ).format
    extra = "" if ps.frameworks else " and Keras/TensorFlow (this problem set is NumPy only)"

    def hook(event, args):
        if event == "import":
            name = args[0]
            if isinstance(name, str):
                for b in blocked:
                    if name == b or name.startswith(b + "."):
                        raise SealedError(message(name, extra))
        elif event == "open":
            path = args[0]
            if isinstance(path, (str, bytes, os.PathLike)):
                try:
                    p = realpath(fspath(path))
                except (TypeError, ValueError):
                    return
                if isinstance(p, bytes):
                    p = p.decode(errors="replace")
                if dirname(p) in dirs and basename(p).split(".")[0] in stems:
                    raise PermissionError(message(p, extra))
        elif event in _PROCESS_EVENTS:
            raise PermissionError(
                f"starting another process is disabled in {ps.name} while it is graded"
            )

    return hook


def _hide(blocked: tuple) -> None:
    """Remove already-imported blocked modules from ``sys.modules`` and their packages."""
    for name in list(sys.modules):
        if any(name == b or name.startswith(b + ".") for b in blocked):
            module = sys.modules.pop(name)
            parent, _, child = name.rpartition(".")
            if parent in sys.modules and getattr(sys.modules[parent], child, None) is module:
                delattr(sys.modules[parent], child)


def seal(ps: ProblemSet) -> None:
    """Seal this process for problem set ``ps`` (idempotent; cannot be undone)."""
    if ps.name in _SEALED:
        return
    if _SEALED:
        raise RuntimeError(
            f"this process is already sealed for {next(iter(_SEALED))}; restart the kernel"
        )
    import importlib

    for name in ps.preload:
        importlib.import_module(name)
    _hide(ps.blocked_modules)
    sys.addaudithook(_make_hook(ps))
    _SEALED[ps.name] = True


# --------------------------------------------------------------------------- test cells


def checks_in_cell(source: str) -> list[tuple[str, str]]:
    """The ``check("id", expression)`` calls of a test cell, as ``(id, expression)``."""
    tree = ast.parse(source)
    calls = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "check"
            and len(node.args) == 2
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            expr = ast.get_source_segment(source, node.args[1])
            calls.append(((node.lineno, node.col_offset), node.args[0].value, expr))
    return [(check_id, expr) for _, check_id, expr in sorted(calls)]


def is_demo_cell(cell) -> bool:
    """True for a locked instructor cell named ``demo...``: it shows something and defines
    nothing the checks need, so verification skips it."""
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return (cell.get("cell_type") == "code" and bool(meta.get("locked"))
            and not meta.get("grade") and not meta.get("solution")
            and str(meta.get("grade_id", "")).startswith("demo"))


def is_test_cell(cell) -> bool:
    """True for an nbgrader autograder-test cell (graded, not a solution)."""
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return cell.get("cell_type") == "code" and bool(meta.get("grade")) and not meta.get("solution")


# --------------------------------------------------------------------------- the child


def _child_main(job_path: str) -> int:
    job = json.loads(Path(job_path).read_text())
    status = open(job["status"], "a", buffering=1)
    results = open(job["results"], "a", buffering=1)
    out_dir = Path(job["out_dir"])
    ps = problem_set(job["problem_set"])
    checks = checks_of(ps)
    from . import _STATE

    _STATE["child"] = True
    import numpy as np
    from IPython.core.interactiveshell import InteractiveShell

    savez = np.savez
    seal(ps)
    shell = InteractiveShell.instance()
    skip = set(job["skip"])
    step = 0
    for source in job["cells"]:
        if step not in skip:
            status.write(f"start {step}\n")
            shell.run_cell(source, store_history=False, silent=False)
            status.write(f"end {step}\n")
        step += 1
    for check_id, expr in job["checks"]:
        if step not in skip:
            status.write(f"start {step}\n")
            check = checks[check_id]
            record = {"step": step, "check": check_id}
            try:
                obj = eval(expr, shell.user_ns)  # the expression comes from a locked test cell
                inputs = check.make_inputs()
                outputs = check.produce(obj, inputs)
                if type(outputs) is not dict:
                    raise TypeError("produce returned no dict")
                savez(out_dir / f"{step}.npz", **outputs)
                record["status"] = "ok"
            except BaseException as err:  # a student's code may raise anything, SystemExit too
                record["status"] = "error"
                record["message"] = f"{type(err).__name__}: {err}"[:2000]
            results.write(json.dumps(record) + "\n")
            status.write(f"end {step}\n")
        step += 1
    status.write("finished\n")
    return 0


# --------------------------------------------------------------------------- the parent


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return []


def _load_outputs(path: Path) -> dict:
    import numpy as np

    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def verify(
    ps: ProblemSet,
    cells: list[str],
    checks: list[tuple[str, str]],
    *,
    cwd,
    timeout: float | None = None,
    groups: list | None = None,
) -> dict:
    """Run the student's ``cells`` and ``checks`` in a sealed child process and judge them.

    Args:
        ps: the problem set.
        cells: the sources of the code cells to execute, in order (no test cells).
        checks: ``(check id, expression)`` pairs from the test cells.
        cwd: the directory to run in (the submission's folder).
        timeout: seconds per cell or check; :func:`~.registry.cell_timeout` by default.
        groups: for each check, the test cell it belongs to. When one check times out, the
            later checks of its cell are not run (the cell scores 0 anyway), so an infinite
            loop costs one time limit per cell, not one per check.

    Returns:
        ``{"checks": {id: {"passed": bool, "message": str}}, "timed_out": [steps],
        "crashed": [steps], "restarts": n, "seconds": s, "max_rss_mb": m}``.
    """
    timeout = cell_timeout(ps) if timeout is None else timeout
    all_checks = checks_of(ps)
    for check_id, _ in checks:
        if check_id not in all_checks:
            raise ValueError(f"unknown check {check_id!r} in a test cell of {ps.name}")
    n_cells = len(cells)
    total = n_cells + len(checks)
    skip: set = set()
    timed_out: list = []
    crashed: list = []
    skipped_after_timeout: set = set()
    finished_checks: dict = {}
    started = time.perf_counter()
    max_rss = 0
    restarts = 0
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONWARNINGS="ignore",
               MPLBACKEND="Agg")
    with tempfile.TemporaryDirectory(prefix="bncourse-verify-") as tmp:
        tmp = Path(tmp)
        while True:
            status, results = tmp / f"status{restarts}", tmp / f"results{restarts}"
            out_dir = tmp / f"out{restarts}"
            out_dir.mkdir()
            job = {
                "problem_set": ps.name,
                "cells": cells,
                "checks": checks,
                "skip": sorted(skip | set(finished_checks)),
                "status": str(status),
                "results": str(results),
                "out_dir": str(out_dir),
            }
            job_path = tmp / f"job{restarts}.json"
            job_path.write_text(json.dumps(job))
            proc = subprocess.Popen(
                [sys.executable, "-m", "bncourse.grading.sandbox", str(job_path)],
                cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            current, since = None, time.monotonic()
            killed_step = None
            while True:
                pid, _, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    max_rss = max(max_rss, usage.ru_maxrss // 1024)
                    proc.returncode = -1  # reaped here; Popen must not wait for it again
                    break
                lines = _read_lines(status)
                last = lines[-1] if lines else ""
                if last.startswith("start "):
                    step = int(last.split()[1])
                    if step != current:
                        current, since = step, time.monotonic()
                    elif time.monotonic() - since > timeout:
                        proc.kill()
                        _, _, usage = os.wait4(proc.pid, 0)
                        proc.returncode = -1
                        max_rss = max(max_rss, usage.ru_maxrss // 1024)
                        killed_step = step
                        break
                elif last == "finished":
                    current = None
                elif time.monotonic() - since > timeout + 60:  # stuck before any cell ran
                    proc.kill()
                    os.wait4(proc.pid, 0)
                    proc.returncode = -1
                    killed_step = -1
                    break
                time.sleep(0.05)
            for line in _read_lines(results):
                try:
                    record = json.loads(line)
                    step = int(record["step"])
                except (ValueError, KeyError, TypeError):
                    continue
                if n_cells <= step < total and step not in finished_checks:
                    finished_checks[step] = record
            lines = _read_lines(status)
            if lines and lines[-1] == "finished":
                break
            if killed_step is not None and killed_step >= 0:
                timed_out.append(killed_step)
                skip.add(killed_step)
                if groups is not None and killed_step >= n_cells:
                    group = groups[killed_step - n_cells]
                    for i in range(killed_step - n_cells + 1, len(checks)):
                        if groups[i] == group:
                            skip.add(n_cells + i)
                            skipped_after_timeout.add(n_cells + i)
            elif lines and lines[-1].startswith("start "):
                died = int(lines[-1].split()[1])
                crashed.append(died)
                skip.add(died)
            else:
                break  # died before running anything: nothing to skip
            restarts += 1
            if restarts > MAX_RESTARTS:
                break
        verdicts = {}
        for i, (check_id, _) in enumerate(checks):
            step = n_cells + i
            record = finished_checks.get(step)
            if step in timed_out:
                verdict = (False, f"timed out after {timeout:g} s")
            elif step in skipped_after_timeout:
                verdict = (False, "not run: an earlier check of this test cell timed out")
            elif step in crashed:
                verdict = (False, "the process died while this check ran your code")
            elif record is None:
                verdict = (False, "not run: the submission's code stopped the grader early")
            elif record.get("status") != "ok":
                verdict = (False, str(record.get("message", "failed")))
            else:
                verdict = _judge(all_checks[check_id], out_dir_for(tmp, step))
            verdicts.setdefault(check_id, [])
            verdicts[check_id].append(verdict)
    return {
        "checks": {
            cid: {"passed": all(ok for ok, _ in v), "message": "; ".join(m for ok, m in v if not ok)}
            for cid, v in verdicts.items()
        },
        "timed_out": [s for s in timed_out],
        "crashed": crashed,
        "restarts": restarts,
        "seconds": round(time.perf_counter() - started, 3),
        "max_rss_mb": max_rss,
    }


def out_dir_for(tmp: Path, step: int) -> Path:
    """The ``.npz`` a child wrote for ``step`` (whichever restart wrote it)."""
    for path in sorted(tmp.glob(f"out*/{step}.npz")):
        return path
    return tmp / "missing" / f"{step}.npz"


def _judge(check, path: Path) -> tuple[bool, str]:
    try:
        outputs = _load_outputs(path)
    except (OSError, ValueError) as err:
        return False, f"the values your code produced could not be read back: {err}"
    try:
        check.judge(check.make_inputs(), outputs)
    except AssertionError as err:
        return False, str(err)
    except Exception as err:  # values a judge did not foresee: a failed check, not a crash
        return False, f"the grader could not judge the values your code produced ({err!r})"
    return True, "ok"


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1]))
