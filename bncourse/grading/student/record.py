"""Saving what a check's ``produce`` computed, for the grader to judge outside the sandbox.

In the sandbox the judges and the reference implementations are absent, so a check cannot
judge there: it saves the plain arrays its ``produce`` returned as ``NNNNNN.npz`` (no
pickles; the check's id under ``__check__``) in ``~/.bncourse/results``, which the grader
reads back with :func:`bncourse.grading.records.read_records`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as _np

_savez = _np.savez
_array = _np.array
CHECK_KEY = "__check__"


def results_dir() -> Path:
    """Where the kernel's checks save their outputs during grading."""
    return Path.home() / ".bncourse" / "results"


def saver(directory: Path):
    """A function ``save(seq, check_id, outputs)`` writing ``directory/<seq>.npz``."""
    directory = Path(directory)

    def save(seq: int, check_id: str, outputs: dict) -> None:
        if type(outputs) is not dict:
            raise TypeError("a check's produce returned no dict")
        _savez(directory / f"{seq:06d}.npz", **{CHECK_KEY: _array(check_id)}, **outputs)

    return save
