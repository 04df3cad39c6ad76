"""Reference answers for ps4-experiment's pure functions, kept where students cannot import them.

This module is blocked in sealed notebooks (see
:mod:`bncourse.grading.student.problem_sets`): the judges use it; a student's code cannot.
"""

from __future__ import annotations

import numpy as np


def summarize(results: dict) -> dict:
    """``{variant: {"test_accuracy", "best_val_accuracy", "best_epoch"}}`` from
    ``{variant: (history, test_accuracy)}``; ``best_epoch`` is 1-based, the first maximum."""
    table = {}
    for variant, (history, test_accuracy) in results.items():
        val = np.asarray(history["val_accuracy"], dtype=float)
        best = int(np.argmax(val))
        table[variant] = {
            "test_accuracy": float(test_accuracy),
            "best_val_accuracy": float(val[best]),
            "best_epoch": best + 1,
        }
    return table
