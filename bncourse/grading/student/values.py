"""Checks of the values a student's code returns, made before they leave its sandbox.

``produce`` code uses these to refuse what is not a plain numeric array or tuple (an object
that claims to be equal to everything is refused here, by ``type(x) is``, before any
comparison runs) and to tell a student whose function modified its input in place.
:mod:`bncourse.grading.compare` uses the same ones on the judge's side.

NumPy's functions are looked up once, when this module is imported, and kept here under
private names: a notebook that later replaces ``np.array_equal`` does not change what these
checks compute.
"""

from __future__ import annotations

import numpy as _np

_ndarray = _np.ndarray
_array_equal = _np.array_equal
_NUMERIC_KINDS = frozenset("fiub")


def require_array(name: str, value, *, ndim: int | None = None) -> _ndarray:
    """``value`` if it is a numeric NumPy array (exactly ``np.ndarray``), else AssertionError."""
    if type(value) is not _ndarray:
        raise AssertionError(
            f"{name}: expected a NumPy array (numpy.ndarray), got {type(value).__name__}"
        )
    if value.dtype.kind not in _NUMERIC_KINDS:
        raise AssertionError(f"{name}: expected a numeric array, got dtype {value.dtype}")
    if ndim is not None and value.ndim != ndim:
        raise AssertionError(
            f"{name}: expected an array with {ndim} dimension(s), got shape {value.shape}"
        )
    return value


def require_tuple(name: str, value, length: int) -> tuple:
    """``value`` if it is a tuple (or list) of ``length`` items, else AssertionError."""
    if type(value) not in (tuple, list):
        raise AssertionError(
            f"{name}: expected a tuple of {length} values, got {type(value).__name__}"
        )
    if len(value) != length:
        raise AssertionError(f"{name}: expected {length} values, got {len(value)}")
    return tuple(value)


def assert_unchanged(name: str, before: _ndarray, after: _ndarray) -> None:
    """AssertionError if a function modified its input array ``name`` in place."""
    if not _array_equal(before, after, equal_nan=True):
        raise AssertionError(
            f"your function changed its input {name} in place; work on a copy "
            "(or compute new arrays) so that the caller's data is left as it was"
        )
