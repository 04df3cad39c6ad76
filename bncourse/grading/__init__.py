"""Autograding for the course's nbgrader problem sets: checks that teach and cannot be fooled.

A notebook's first (locked) cell runs::

    from bncourse import grading
    check = grading.seal("ps1-forward")

and each test cell calls ``check("ps1-forward.<name>", student_object)``, which prints
``ok: ...`` or raises an ``AssertionError`` that says what is wrong (see
:mod:`bncourse.grading.compare`). :mod:`bncourse.grading.sandbox` explains how the grade is
protected; :mod:`bncourse.grading.autograde` holds the nbgrader preprocessor and the class
report.
"""

from __future__ import annotations

import sys
import warnings

from . import registry, sandbox
from .compare import assert_close, assert_equal
from .registry import PROBLEM_SETS, problem_set

__all__ = ["seal", "full_results", "assert_close", "assert_equal", "PROBLEM_SETS",
           "problem_set"]

_STATE = {"child": False}


def _no_check(check_id, obj):
    """In the verification process test cells do not run; this stands in for ``check``."""


def seal(name: str):
    """Seal this kernel for problem set ``name`` and return its ``check`` function.

    Captures the reference code the checks need, then forbids importing ``bncourse``'s
    reference implementations (and Keras in the NumPy-only sets) and starting processes,
    for the rest of this kernel's life.
    """
    ps = problem_set(name)
    if _STATE["child"]:
        return _no_check
    checks = registry.checks_of(ps)
    registry.capture_references(ps)
    if "bncourse.results" in ps.references:
        _STATE["full_results"] = _full_results_tables()
    sandbox.seal(ps)
    print_ = print
    stdout = sys.stdout

    def check(check_id, obj):
        """Run check ``check_id`` on ``obj``: print ``ok: ...`` or raise AssertionError."""
        if check_id not in checks:
            raise ValueError(f"unknown check {check_id!r}; {ps.name} has: {', '.join(checks)}")
        c = checks[check_id]
        inputs = c.make_inputs()
        saved_stderr = sys.stderr
        sys.stderr = sys.stdout  # anything on stderr scores 0 in nbgrader: keep it on stdout
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                outputs = c.produce(obj, inputs)
                lines = c.judge(inputs, outputs)
        finally:
            sys.stderr = saved_stderr
        for w in caught:
            print_(f"note: a warning was raised: {w.category.__name__}: {w.message}",
                   file=stdout)
        print_(f"ok: {c.description}", file=stdout)
        for line in lines or ():
            print_(f"    {line}", file=stdout)

    return check


def _full_results_tables() -> dict:
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
    modules that sealing blocks). Says so when the results are not available, as with a
    package installed without the repository.
    """
    if _STATE["child"]:
        return ""
    tables = _STATE.get("full_results")
    if tables is None:
        tables = _full_results_tables()
    if experiment in tables:
        return tables[experiment]
    return (f"No full results of {experiment} were found (set BNCOURSE_RESULTS_DIR to the "
            "repository's results/ folder); the book's chapter on reproducing the tutorials "
            "shows them.")
