"""The problem sets, their checks, and the reference code the checks compare against.

A check has three parts, kept apart on purpose:

- ``make_inputs()``: seeded inputs, the same wherever they are made;
- ``produce(obj, inputs)``: runs the student's function or class on the inputs and returns
  what it computed as a dict of plain NumPy arrays (numbers or strings). This is the only
  part that touches student code, and it uses no reference implementation;
- ``judge(inputs, outputs)``: compares those arrays with the reference and returns lines
  of description, or raises ``AssertionError`` with a message for the student.

Because ``produce`` returns plain arrays, the autograder can run it in a separate process
(:mod:`bncourse.grading.sandbox`) and judge the arrays where the student's code never ran.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from typing import Callable

BNCOURSE_MODULES = (
    "bncourse.numpy_bn",
    "bncourse.keras_bn",
    "bncourse.models",
    "bncourse.fold",
    "bncourse.experiments",
    "bncourse.claims",
    "bncourse.cli",
    "bncourse.bench",
    "bncourse.plotting",
    "bncourse.results",
    "bncourse.data",
    "bncourse.book",
    "bncourse.mathjax",
    "bncourse.sphinx_ext",
    "bncourse.grading.solutions",
)
FRAMEWORKS = ("keras", "tensorflow", "jax", "torch", "tf_keras", "flax")


@dataclass(frozen=True)
class Check:
    """One graded check; see the module docstring for the three parts."""

    id: str
    description: str
    make_inputs: Callable[[], dict]
    produce: Callable[[object, dict], dict]
    judge: Callable[[dict, dict], list]


@dataclass(frozen=True)
class ProblemSet:
    """An assignment: its checks module and what its notebook may import.

    Attributes:
        name: the nbgrader assignment id, e.g. ``"ps1-forward"``.
        checks_module: the module that defines its checks.
        frameworks: whether Keras/TensorFlow may be imported (False for NumPy-only sets).
        allowed: ``bncourse`` modules the notebook may import (data loading, results).
        preload: modules imported before the notebook is sealed (they may need to spawn
            processes or read files on first import, which sealing forbids).
        references: modules the judges need; captured before sealing.
        cell_timeout: seconds a cell may run when it is graded.
    """

    name: str
    checks_module: str
    frameworks: bool = False
    allowed: tuple = ()
    preload: tuple = ()
    references: tuple = ()
    cell_timeout: int = 30

    @property
    def blocked_modules(self) -> tuple:
        """Top-level or dotted module names this notebook may not import."""
        own = tuple(m for m in BNCOURSE_MODULES if m not in self.allowed)
        return own if self.frameworks else own + FRAMEWORKS


PROBLEM_SETS = {
    ps.name: ps
    for ps in (
        ProblemSet(
            "ps1-forward",
            "bncourse.grading.forward",
            references=("bncourse.numpy_bn",),
        ),
        ProblemSet(
            "ps2-backward",
            "bncourse.grading.backward",
            references=("bncourse.numpy_bn",),
        ),
        ProblemSet(
            "ps3-keras-layer",
            "bncourse.grading.keras_layer",
            frameworks=True,
            preload=("keras",),
            references=("keras",),
            cell_timeout=60,
        ),
        ProblemSet(
            "ps4-experiment",
            "bncourse.grading.experiment",
            frameworks=True,
            allowed=("bncourse.data",),
            preload=("keras", "matplotlib.pyplot", "bncourse.data"),
            references=("bncourse.models", "bncourse.results", "bncourse.grading.solutions"),
            cell_timeout=120,
        ),
    )
}


def cell_timeout(ps: ProblemSet) -> float:
    """Seconds a cell of ``ps`` may run: ``$BNCOURSE_CELL_TIMEOUT`` if set, else the set's own."""
    value = os.environ.get("BNCOURSE_CELL_TIMEOUT")
    if value is None:
        return ps.cell_timeout
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise ValueError(f"BNCOURSE_CELL_TIMEOUT must be a number of seconds > 0, got {value!r}")
    return seconds


def problem_set(name: str) -> ProblemSet:
    """The problem set called ``name``; ValueError listing the known ones otherwise."""
    try:
        return PROBLEM_SETS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown problem set {name!r}; known: {', '.join(PROBLEM_SETS)}"
        ) from None


def checks_of(ps: ProblemSet) -> dict:
    """``{check id: Check}`` of a problem set, from its checks module's ``CHECKS``."""
    return importlib.import_module(ps.checks_module).CHECKS


def find_check(check_id: str) -> tuple[ProblemSet, Check]:
    """The problem set and check with id ``check_id`` (ids start with the set's name)."""
    for ps in PROBLEM_SETS.values():
        if isinstance(check_id, str) and check_id.startswith(ps.name + "."):
            checks = checks_of(ps)
            if check_id in checks:
                return ps, checks[check_id]
            raise ValueError(
                f"unknown check {check_id!r}; {ps.name} has: {', '.join(checks)}"
            )
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
        raise RuntimeError(
            f"the reference {name} was not captured before this notebook was sealed"
        )
    return importlib.import_module(name)


def capture_references(ps: ProblemSet) -> None:
    """Import the judges' reference modules now, before any student code runs."""
    for name in ps.references:
        _REFS.modules[name] = importlib.import_module(name)
    _REFS.sealed = True


class CheckRegistry(dict):
    """``{id: Check}`` built with the :meth:`add` decorator, in a checks module."""

    def __init__(self, problem_set_name: str):
        super().__init__()
        self.prefix = problem_set_name + "."

    def add(self, name: str, description: str, make_inputs: Callable, produce: Callable):
        """Decorator: register the decorated judge as check ``<problem set>.<name>``."""

        def register(judge):
            check_id = self.prefix + name
            if check_id in self:
                raise ValueError(f"check {check_id!r} is defined twice")
            self[check_id] = Check(check_id, description, make_inputs, produce, judge)
            return judge

        return register
