"""The problem sets: where their checks live and what their notebooks may import.

Each problem set names two modules: its producers (:mod:`bncourse.grading.student`, the
inputs and the code that runs the student's objects, see
:mod:`~bncourse.grading.student.producers`) and its judges (outside this package, where the
reference code is). :func:`bncourse.grading.registry.checks_of` joins the two.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass

# What a sealed notebook may not import: the reference code, the tools around it, and every
# grading module outside bncourse.grading.student (the judges and the grader itself).
# bncourse.grading and bncourse.grading.student stay importable: a notebook uses them.
BNCOURSE_MODULES = (
    "bncourse.numpy_bn",
    "bncourse.keras_bn",
    "bncourse.models",
    "bncourse.fold",
    "bncourse.experiments",
    "bncourse.runner",
    "bncourse.progress",
    "bncourse.diagnostics",
    "bncourse.bn_noise",
    "bncourse.residual",
    "bncourse.stats",
    "bncourse.verdicts",
    "bncourse.cli",
    "bncourse.bench",
    "bncourse.plotting",
    "bncourse.results",
    "bncourse.data",
    "bncourse.data_files",
    "bncourse.book",
    "bncourse.homework",
    "bncourse.mathjax",
    "bncourse.npm",
    "bncourse.pdf",
    "bncourse.sphinx_ext",
    "bncourse.grading.autograde",
    "bncourse.grading.backward",
    "bncourse.grading.bench",
    "bncourse.grading.classrun",
    "bncourse.grading.compare",
    "bncourse.grading.course",
    "bncourse.grading.experiment",
    "bncourse.grading.forward",
    "bncourse.grading.isolation",
    "bncourse.grading.keras_layer",
    "bncourse.grading.keras_layer_common",
    "bncourse.grading.keras_layer_state",
    "bncourse.grading.kernel",
    "bncourse.grading.mistakes",
    "bncourse.grading.records",
    "bncourse.grading.registry",
    "bncourse.grading.report",
    "bncourse.grading.solutions",
    "bncourse.grading.verify",
)
FRAMEWORKS = ("keras", "tensorflow", "jax", "torch", "tf_keras", "flax")


@dataclass(frozen=True)
class ProblemSet:
    """An assignment: where its checks are and what its notebook may import.

    Attributes:
        name: the nbgrader assignment id, e.g. ``"ps1-forward"``.
        producers_module: the module whose ``PRODUCERS`` make its checks' inputs and run
            the student's code (in :mod:`bncourse.grading.student`).
        judges_module: the module whose ``JUDGES`` compare what was produced with the
            reference.
        frameworks: whether Keras/TensorFlow may be imported (False for NumPy-only sets).
        allowed: ``bncourse`` modules the notebook may import (data loading, results).
        preload: modules imported before the notebook is sealed (they may need to spawn
            processes or read files on first import, which sealing forbids).
        references: modules the judges need; captured before sealing.
        cell_timeout: seconds a cell may run when it is graded.
        data: ``(dataset, training images, test images)`` the notebook needs when graded:
            its sandbox sees only the first that many images of each split, so the rest
            stay out of its reach (held out for the judges).
    """

    name: str
    producers_module: str
    judges_module: str
    frameworks: bool = False
    allowed: tuple = ()
    preload: tuple = ()
    references: tuple = ()
    cell_timeout: int = 30
    data: tuple = ()

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
            "bncourse.grading.student.ps1_forward",
            "bncourse.grading.forward",
            references=("bncourse.numpy_bn",),
        ),
        ProblemSet(
            "ps2-backward",
            "bncourse.grading.student.ps2_backward",
            "bncourse.grading.backward",
            references=("bncourse.numpy_bn",),
        ),
        ProblemSet(
            "ps3-keras-layer",
            "bncourse.grading.student.ps3_keras_layer",
            "bncourse.grading.keras_layer",
            frameworks=True,
            preload=("keras",),
            references=("keras",),
            cell_timeout=60,
        ),
        ProblemSet(
            "ps4-experiment",
            "bncourse.grading.student.ps4_experiment",
            "bncourse.grading.experiment",
            frameworks=True,
            # bncourse.diagnostics: the optional, ungraded part (the training diagnostics)
            allowed=("bncourse.data", "bncourse.data_files", "bncourse.diagnostics"),
            preload=("keras", "matplotlib.pyplot", "bncourse.data"),
            references=(
                "bncourse.models",
                "bncourse.results",
                "bncourse.grading.solutions",
                "bncourse.data",
                "bncourse.data_files",
            ),
            cell_timeout=120,
            # the budget's images (ps4_experiment.BUDGET): training 0-6999, test 0-999
            data=(("fashion_mnist", 7000, 1000),),
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


def producers_of(ps: ProblemSet) -> dict:
    """``{check id: Producer}`` of a problem set, from its producers module's ``PRODUCERS``."""
    return importlib.import_module(ps.producers_module).PRODUCERS
