"""Autograding for the course's nbgrader problem sets: checks that teach and cannot be fooled.

A notebook's first (locked) cell runs::

    from bncourse import grading
    check = grading.seal("ps1-forward")

and each test cell calls ``check("ps1-forward.<name>", student_object)``.

- **At home**, with the whole package installed, ``check`` runs the check's ``produce`` on the
  student's object and judges the result at once: it prints ``ok: ...`` or raises an
  ``AssertionError`` that says in two lines what is wrong, without the grader's frames
  (:mod:`bncourse.grading.student.messages`). Hidden checks do not run there.
- **When graded**, the notebook runs in an operating-system sandbox
  (:mod:`bncourse.grading.isolation`) in which the judges and the reference
  implementations do not exist. There ``check`` only runs ``produce`` and saves what it
  computed (:mod:`bncourse.grading.student.record`); the grader judges it outside the
  sandbox (:class:`bncourse.grading.autograde.JudgeChecks`) and writes the verdict into
  the cell.

This module runs next to student code, so it imports only :mod:`bncourse.grading.student`;
the judging side is looked up at run time, and only where it is installed.
"""

from __future__ import annotations

import importlib
import os
import sys
import warnings

from .student import quiet, record
from .student.messages import CheckFailed, as_failure, hide_grader_frames
from .student.problem_sets import PROBLEM_SETS, problem_set, producers_of
from .student.seal import is_rerun
from .student.seal import seal as _seal_process

__all__ = ["seal", "full_results", "PROBLEM_SETS", "problem_set"]

_STATE: dict = {}


def _no_check(check_id, obj):
    """In the verification re-run test cells do not run; this stands in for ``check``."""


def _judging_side():
    """The grader's registry module where it is installed (at home), else None (sandbox)."""
    try:
        return importlib.import_module("bncourse.grading.registry")
    except ImportError:
        return None


def hidden_checks_allowed() -> bool:
    """True where hidden checks may be judged in the notebook's own kernel: where nbgrader
    runs from the course folder (its ``nbgrader_config.py`` sets
    ``BNCOURSE_HIDDEN_CHECKS=1``), not in a student's copy. Only a courtesy: the course's
    code is public; what decides a grade runs where no student code runs."""
    return os.environ.get("BNCOURSE_HIDDEN_CHECKS") == "1"


def seal(name: str):
    """Seal this kernel for problem set ``name`` and return its ``check`` function.

    Where the judges are installed, captures the reference code they need first; then
    forbids importing ``bncourse``'s reference implementations (and Keras in the NumPy-only
    sets) and starting processes, for the rest of this kernel's life.
    """
    ps = problem_set(name)
    if is_rerun():
        return _no_check
    producers = producers_of(ps)
    registry = _judging_side()
    if registry is not None:
        checks = registry.checks_of(ps)
        registry.capture_references(ps)
        if "bncourse.results" in ps.references:
            _STATE["full_results"] = _full_results_tables(registry)
        judge = True
    else:
        checks, judge = producers, False
        save = record.saver(record.results_dir())
        counter = [0]
    if ps.frameworks:
        with quiet.native_stderr() as noise:
            quiet.start_framework()
        quiet.report(noise)
    _seal_process(ps)
    print_ = print
    stdout = sys.stdout
    hidden_ok = hidden_checks_allowed()

    def check(check_id, obj):
        """Run check ``check_id`` on ``obj``: print ``ok: ...`` or raise what is wrong."""
        if check_id not in producers:
            raise ValueError(
                f"unknown check {check_id!r}; {ps.name} has: "
                f"{', '.join(i for i in producers if not producers[i].hidden)}"
            )
        c = checks[check_id]
        if judge and producers[check_id].hidden and not hidden_ok:
            raise CheckFailed(f"{check_id} is a hidden check: it runs when you are graded")
        namespace = sys._getframe(1).f_globals
        inputs = c.make_inputs()
        saved_stderr = sys.stderr
        sys.stderr = sys.stdout  # anything on stderr scores 0 in nbgrader: keep it on stdout
        try:
            with warnings.catch_warnings(record=True) as caught, quiet.native_stderr() as noise:
                warnings.simplefilter("always")
                outputs = c.run(obj, inputs, namespace)
                if judge:
                    lines = c.judge(inputs, outputs)
                else:
                    counter[0] += 1
                    save(counter[0], check_id, outputs)
                    lines = None
        except AssertionError as err:
            raise as_failure(err) from None
        except BaseException as err:  # the student's own error, or an interrupt
            hide_grader_frames(err)
            raise
        finally:
            sys.stderr = saved_stderr
        quiet.report(noise, print_, stdout)
        for w in caught:
            print_(f"note: a warning was raised: {w.category.__name__}: {w.message}", file=stdout)
        if judge:
            print_(f"ok: {c.description}", file=stdout)
            for line in lines or ():
                print_(f"    {line}", file=stdout)

    return check


def _full_results_tables(registry) -> dict:
    """``{experiment: table}`` of the committed full results (read before sealing)."""
    results = registry.reference("bncourse.results")
    directory = results.repository_results_dir()
    if directory is None:
        return {}
    records, _ = results.load_results(directory)
    tables = {}
    for row in results.summarize(records):
        if row["profile"] == "full":
            tables.setdefault(row["experiment"], []).append(row)
    return {name: results.format_table(rows) for name, rows in tables.items()}


def full_results(experiment: str = "t1-mlp") -> str:
    """The book's table of ``experiment``'s full-profile results, for a notebook to show.

    In a sealed kernel the tables were read when it was sealed (reading results needs
    modules that sealing blocks). Says so when the results are not available, as in the
    grading sandbox or with a package installed without the repository.
    """
    if is_rerun():
        return ""
    tables = _STATE.get("full_results")
    if tables is None:
        registry = _judging_side()
        tables = _full_results_tables(registry) if registry is not None else {}
    if experiment in tables:
        return tables[experiment]
    return (
        f"No full results of {experiment} were found (set BNCOURSE_RESULTS_DIR to the "
        "repository's results/ folder); the book's chapter on reproducing the tutorials "
        "shows them."
    )
