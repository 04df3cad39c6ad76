"""The verification re-run, from the grader's side: start it in a sandbox, keep its time
limits, judge what it hands back.

nbgrader's kernel runs the whole notebook, so a student's cell can change how the checks in
later cells behave (rebind ``check``, patch NumPy). The re-run executes only the student's
cells and then each check's ``produce`` (:mod:`bncourse.grading.student.rerun`), in a fresh
:class:`~bncourse.grading.isolation.Sandbox`, and the arrays it saves are judged here, in
the grader's process, where no student code ever ran.

Time limits are kept from outside. Each step (a cell or a check) gets ``cell_timeout``
seconds from the last sign of progress; the run as a whole gets one limit per step plus a
minute. When either runs out the sandbox is killed whole and started again with that step
skipped, so one infinite loop costs only the cells that need it. The status file the
re-run writes only says *which* step was running; a forged line cannot stop the clock.
"""

from __future__ import annotations

import ast
import json
import re
import sys
import time
from pathlib import Path

from .isolation import Sandbox, UsageMeter, kill_tree
from .records import read_records
from .registry import ProblemSet, cell_timeout, checks_of
from .student.messages import CheckFailed, as_failure, fit

MAX_RESTARTS = 8


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
    return (
        cell.get("cell_type") == "code"
        and bool(meta.get("locked"))
        and not meta.get("grade")
        and not meta.get("solution")
        and str(meta.get("grade_id", "")).startswith("demo")
    )


def is_test_cell(cell) -> bool:
    """True for an nbgrader autograder-test cell (graded, not a solution)."""
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return cell.get("cell_type") == "code" and bool(meta.get("grade")) and not meta.get("solution")


def _read_lines(path: Path) -> list[str]:
    try:
        with open(path, errors="replace") as f:
            return f.read(1_000_000).splitlines()
    except FileNotFoundError:
        return []


def _running_step(lines: list[str]) -> int | None:
    """The last step the status lines say was started and not ended, or None."""
    open_steps: list = []
    for line in lines:
        kind, _, number = line.partition(" ")
        if not number.isdigit():
            continue
        if kind == "start":
            open_steps.append(int(number))
        elif kind == "end" and int(number) in open_steps:
            open_steps.remove(int(number))
    return open_steps[-1] if open_steps else None


_CARRIED = re.compile(r"given your (.+?) \(wrong: fix it first\)")


def carried_note(lines) -> str | None:
    """The note for a part that passed on the student's own wrong earlier code (error
    carried forward), from the judge's lines; None when it passed on the reference."""
    for line in lines or ():
        found = _CARRIED.search(str(line))
        if found:
            return f"note: right given your {found.group(1)}, which is wrong: fix it first"
    return None


def judge(check, outputs: dict) -> tuple[bool, str, str]:
    """Judge one check's outputs here, outside the sandbox: ``(passed, message, public)``.

    ``message`` is what the student reads for a visible check (two short lines, see
    :mod:`~bncourse.grading.student.messages`); ``public`` is what may be shown for a hidden
    one: the same without the details that describe its inputs.
    """
    try:
        lines = check.judge(check.make_inputs(), outputs)
    except AssertionError as err:
        failure = as_failure(err)
    except Exception as err:  # values a judge did not foresee: a failed check, not a crash
        failure = CheckFailed(
            "the grader could not judge the values your code produced", f" ({type(err).__name__})"
        )
    else:
        note = carried_note(lines)
        return True, note or "ok", note or "ok"
    public = failure.lines(hidden=True) if check.hidden else failure.lines()
    return False, "\n".join(failure.lines()), "\n".join(public)


def _run_once(box: Sandbox, job: dict, timeout: float, total_steps: int) -> tuple:
    """Start the re-run once and watch it; ``(killed_step, status lines)``.

    ``killed_step`` is None when the process ended by itself, the step it was killed in,
    or -1 when it was killed before any step started.
    """
    job_path = box.out / f"job{job['restart']}.json"
    job_path.write_text(json.dumps(job))
    status = Path(job["status"])
    proc = box.popen([sys.executable, "-m", "bncourse.grading.student.rerun", str(job_path)])
    started = last_change = time.monotonic()
    deadline = started + timeout * (total_steps + 1) + 60
    seen = None
    killed_step = None
    while proc.poll() is None:
        lines = _read_lines(status)
        now = time.monotonic()
        if len(lines) != seen:
            seen, last_change = len(lines), now
        if now - last_change > timeout or now > deadline:
            kill_tree(proc)
            proc.wait()
            running = _running_step(lines)
            killed_step = -1 if running is None else running
            break
        time.sleep(0.05)
    box.kill_all()
    return killed_step, _read_lines(status)


def verify(
    ps: ProblemSet,
    cells: list[str],
    checks: list[tuple[str, str]],
    *,
    cwd,
    timeout: float | None = None,
    groups: list | None = None,
    slot: int = 0,
    sandbox: bool = True,
) -> dict:
    """Run the student's ``cells`` and ``checks`` in a sandbox and judge them here.

    Args:
        ps: the problem set.
        cells: the sources of the code cells to execute, in order (no test cells).
        checks: ``(check id, expression)`` pairs from the test cells.
        cwd: the submission's folder (copied into the sandbox as its working directory).
        timeout: seconds per cell or check; :func:`~.registry.cell_timeout` by default.
        groups: for each check, the test cell it belongs to. When one check times out, the
            later checks of its cell are not run (the cell scores 0 anyway), so an infinite
            loop costs one time limit per cell, not one per check.
        slot: which concurrent sandbox (user id) to use.
        sandbox: False runs the re-run without isolation (``--no-sandbox``).

    Returns:
        ``{"checks": {id: {"passed": bool, "message": str}}, "timed_out": [steps],
        "crashed": [steps], "restarts": n, "seconds": s, "cpu_seconds": c,
        "max_rss_mb": m}``.
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
    outputs: dict = {}
    errors: dict = {}
    started = time.perf_counter()
    restarts = 0
    with (
        Sandbox(ps, slot=slot, workdir=Path(cwd), enabled=sandbox) as box,
        UsageMeter(box.uid) as meter,
    ):
        while True:
            job = {
                "restart": restarts,
                "problem_set": ps.name,
                "cells": cells,
                "checks": checks,
                "skip": sorted(skip | set(outputs) | set(errors)),
                "status": str(box.out / f"status{restarts}"),
                "errors": str(box.out / f"errors{restarts}"),
                "results": str(box.mkdir(box.out / f"results{restarts}")),
            }
            killed_step, lines = _run_once(box, job, timeout, total - len(job["skip"]))
            for record in read_records(Path(job["results"])):
                step = record["seq"]
                if (
                    n_cells <= step < total
                    and step not in outputs
                    and record["check"] == checks[step - n_cells][0]
                ):
                    outputs[step] = record["outputs"]
            for line in _read_lines(Path(job["errors"])):
                try:
                    entry = json.loads(line)
                    step = int(entry["step"])
                except (ValueError, KeyError, TypeError):
                    continue
                if n_cells <= step < total and step not in outputs:
                    errors.setdefault(step, str(entry.get("message", "failed"))[:2000])
            if killed_step is None and lines and lines[-1] == "finished":
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
            elif (died := _running_step(lines)) is not None:
                crashed.append(died)
                skip.add(died)
            else:
                break  # died before running anything, or stopped on its own: nothing to skip
            restarts += 1
            if restarts > MAX_RESTARTS:
                break
    verdicts: dict = {}
    for i, (check_id, _) in enumerate(checks):
        step = n_cells + i
        if step in timed_out:
            message = f"timed out after {timeout:g} s"
        elif step in skipped_after_timeout:
            message = "not run: an earlier check of this test cell timed out"
        elif step in crashed:
            message = "the process died while this check ran your code"
        elif step in errors:
            message = fit(errors[step])
        elif step not in outputs:
            message = "not run: the submission's code stopped the grader early"
        else:
            message = None
        verdict = (
            judge(all_checks[check_id], outputs[step])
            if message is None
            else (False, message, message)
        )
        verdicts.setdefault(check_id, []).append(verdict)
    return {
        "checks": {
            cid: {
                "passed": all(ok for ok, _, _ in v),
                "message": "; ".join(m for ok, m, _ in v if not ok),
                "public": "; ".join(p for ok, _, p in v if not ok),
            }
            for cid, v in verdicts.items()
        },
        "timed_out": timed_out,
        "crashed": crashed,
        "restarts": restarts,
        "seconds": round(time.perf_counter() - started, 3),
        "cpu_seconds": meter.cpu_seconds,
        "max_rss_mb": round(meter.peak_mb, 1),
    }
