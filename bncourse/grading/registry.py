"""The problem sets' checks, and the reference code the checks compare against.

A check has three parts, kept apart on purpose:

- ``make_inputs()``: seeded inputs, the same wherever they are made;
- ``produce(obj, inputs)``: runs the student's function or class on the inputs and returns
  what it computed as a dict of plain NumPy arrays (numbers or strings). This is the only
  part that touches student code, and it uses no reference implementation;
- ``judge(inputs, outputs)``: compares those arrays with the reference and returns lines
  of description, or raises ``AssertionError`` with a message for the student.

The first two live in :mod:`bncourse.grading.student` (a problem set's ``PRODUCERS``), which
is all the student's sandbox needs; the judges live in the problem set's judges module
(``JUDGES``, a :class:`JudgeRegistry`), with the references. Because ``produce`` returns
plain arrays, the autograder can run it in a separate process
(in the sandbox, :mod:`bncourse.grading.isolation`) and judge the arrays where the student's code never ran.
:func:`checks_of` joins the two halves into :class:`Check` objects.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Callable

from .student.producers import Producer

# The problem sets are defined on the student's side (its sandbox needs them too) and
# re-exported here, where the grader has always imported them from.
from .student.problem_sets import (
    BNCOURSE_MODULES,
    FRAMEWORKS,
    PROBLEM_SETS,
    ProblemSet,
    cell_timeout,
    problem_set,
    producers_of,
)

__all__ = [
    "BNCOURSE_MODULES",
    "FRAMEWORKS",
    "PROBLEM_SETS",
    "ProblemSet",
    "cell_timeout",
    "problem_set",
    "producers_of",
    "Check",
    "JudgeRegistry",
    "judges_of",
    "checks_of",
    "find_check",
    "reference",
    "capture_references",
]


@dataclass(frozen=True)
class Check:
    """One graded check; see the module docstring for the three parts."""

    id: str
    description: str
    make_inputs: Callable[[], dict]
    produce: Callable
    judge: Callable[[dict, dict], list]
    producer: Producer

    @property
    def hidden(self) -> bool:
        """True for a hidden check: see :attr:`Producer.hidden`."""
        return self.producer.hidden

    def run(self, obj, inputs: dict, namespace: dict) -> dict:
        """The producer's :meth:`~Producer.run`."""
        return self.producer.run(obj, inputs, namespace)


class JudgeRegistry(dict):
    """``{id: judge}`` of one problem set, filled with the :meth:`judge` decorator."""

    def __init__(self, problem_set_name: str):
        super().__init__()
        self.prefix = problem_set_name + "."

    def judge(self, name: str):
        """Decorator: register the decorated function as the judge of ``<problem set>.<name>``.

        It returns the function unchanged, so that one judge can serve several checks (a
        visible one and a hidden one) by stacking decorators. ValueError if the check has a
        judge already.
        """

        def register(fn):
            check_id = self.prefix + name
            if check_id in self:
                raise ValueError(f"the judge of check {check_id!r} is defined twice")
            self[check_id] = fn
            return fn

        return register


def judges_of(ps: ProblemSet) -> dict:
    """``{check id: judge}`` of a problem set, from its judges module's ``JUDGES``."""
    return importlib.import_module(ps.judges_module).JUDGES


def checks_of(ps: ProblemSet) -> dict:
    """``{check id: Check}`` of a problem set: its producers joined with its judges.

    ValueError if a check has a producer and no judge, or a judge and no producer.
    """
    producers, judges = producers_of(ps), judges_of(ps)
    unjudged = [i for i in producers if i not in judges]
    unproduced = [i for i in judges if i not in producers]
    if unjudged or unproduced:
        problems = []
        if unjudged:
            problems.append(f"no judge in {ps.judges_module} for {', '.join(unjudged)}")
        if unproduced:
            problems.append(f"no producer in {ps.producers_module} for {', '.join(unproduced)}")
        raise ValueError(f"the checks of {ps.name} do not pair up: {'; '.join(problems)}")
    return {
        i: Check(i, p.description, p.make_inputs, p.produce, judges[i], p)
        for i, p in producers.items()
    }


def find_check(check_id: str) -> tuple[ProblemSet, Check]:
    """The problem set and check with id ``check_id`` (ids start with the set's name)."""
    for ps in PROBLEM_SETS.values():
        if isinstance(check_id, str) and check_id.startswith(ps.name + "."):
            checks = checks_of(ps)
            if check_id in checks:
                return ps, checks[check_id]
            raise ValueError(f"unknown check {check_id!r}; {ps.name} has: {', '.join(checks)}")
    raise ValueError(f"unknown check {check_id!r}: its id names no problem set")


@dataclass
class _References:
    """Reference modules captured before a notebook is sealed."""

    modules: dict = field(default_factory=dict)
    sealed: bool = False


_REFS = _References()


def reference(name: str):
    """The reference module ``name`` for a judge: captured at sealing, else imported."""
    if name in _REFS.modules:
        return _REFS.modules[name]
    if _REFS.sealed:
        raise RuntimeError(f"the reference {name} was not captured before this notebook was sealed")
    return importlib.import_module(name)


def capture_references(ps: ProblemSet) -> None:
    """Import the judges' reference modules now, before any student code runs."""
    for name in ps.references:
        _REFS.modules[name] = importlib.import_module(name)
    _REFS.sealed = True
