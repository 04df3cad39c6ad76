"""Comparisons that explain themselves: the messages a student reads when a check fails.

Every function here either returns a one-line description of what matched ("exact",
"approximately equal, largest difference 3e-08 at (2, 1)") or raises a
:class:`~bncourse.grading.student.messages.CheckFailed` of at most two short lines: what was
wrong (the type, the shape, the dtype, or the largest difference and where it is), then the
hint for the common mistake that the caller recognised, if any.

NumPy's functions are looked up once, when this module is imported, and kept here under
private names: a notebook that later replaces ``np.allclose`` or ``np.abs`` does not change
what these comparisons compute. Types are checked with ``type(x) is``, so an object that
claims to be equal to everything is refused before any comparison runs (by
``require_array``, which the student's side uses too: :mod:`bncourse.grading.student.values`).
"""

from __future__ import annotations

import numpy as _np

from .student.messages import CheckFailed, depends_on
from .student.values import require_array

_asarray = _np.asarray
_abs = _np.abs
_argmax = _np.argmax
_isnan = _np.isnan
_isfinite = _np.isfinite
_unravel = _np.unravel_index
_array_equal = _np.array_equal
_any = _np.any
_all = _np.all
_float64 = _np.float64


def _where(shape, flat_index) -> str:
    index = tuple(int(i) for i in _unravel(int(flat_index), shape))
    return str(index[0]) if len(index) == 1 else str(index)


def _close(actual, expected, rtol, atol) -> bool:
    if actual.shape != expected.shape:
        return False
    a = actual.astype(_float64)
    e = expected.astype(_float64)
    nan_a, nan_e = _isnan(a), _isnan(e)
    if not _array_equal(nan_a, nan_e):
        return False
    ok = nan_a | (_abs(a - e) <= atol + rtol * _abs(e))
    return bool(_all(ok))


def assert_close(
    name: str,
    actual,
    expected,
    *,
    rtol: float = 1e-5,
    atol: float = 1e-6,
    check_dtype: bool = True,
    hints=(),
) -> str:
    """Check that ``actual`` equals ``expected`` element-wise within ``atol + rtol*|expected|``.

    Args:
        name: what is compared, as the student knows it ("out", "dgamma").
        actual: the student's value; must be exactly a numeric ``np.ndarray``.
        expected: the reference array.
        rtol, atol: the tolerances, as in ``np.allclose``.
        check_dtype: if True, the dtypes must be the same.
        hints: ``(description, wrong_array)`` pairs, one per common mistake; when
            ``actual`` matches a wrong array, the message names the mistake.

    Returns:
        A description of the match: "exact" or "approximately equal, ...".
    """
    actual = require_array(name, actual)
    if actual.shape != expected.shape:
        raise CheckFailed(
            f"{name}: wrong shape",
            f" {actual.shape}, expected {expected.shape}",
            _matching_hint(actual, hints, rtol, atol),
        )
    if check_dtype and actual.dtype != expected.dtype:
        raise CheckFailed(
            f"{name}: wrong dtype",
            f" {actual.dtype}, expected {expected.dtype}",
            "compute in the input's precision and return that dtype",
        )
    if _array_equal(actual, expected):
        return "exact"
    a = actual.astype(_float64)
    e = expected.astype(_float64)
    if actual.size and not _all(_isfinite(a)) and _all(_isfinite(e)):
        bad = _argmax(~_isfinite(a))
        raise CheckFailed(
            f"{name}: inf or NaN where none were expected", f", first at {_where(a.shape, bad)}"
        )
    diff = _abs(a - e)
    diff[_isnan(a) & _isnan(e)] = 0.0
    worst = _argmax(diff)
    at = _where(a.shape, worst)
    if _close(actual, expected, rtol, atol):
        return f"approximately equal, largest difference {diff.reshape(-1)[worst]:.3g} at {at}"
    raise CheckFailed(
        f"{name}: wrong values",
        (
            f", off by {diff.reshape(-1)[worst]:.3g} at index {at}",
            f" (got {a.reshape(-1)[worst]:.4g}, expected {e.reshape(-1)[worst]:.4g})",
        ),
        _matching_hint(actual, hints, rtol, atol),
    )


def _matching_hint(actual, hints, rtol, atol):
    """The description of the first common mistake whose result ``actual`` matches."""
    for description, wrong in hints:
        wrong = _asarray(wrong)
        if wrong.shape == actual.shape and _close(actual, wrong, rtol, atol):
            return description
    return None


def assert_equal(name: str, actual, expected) -> str:
    """Check a plain value (str, int, float, bool, tuple of those) for exact equality.

    The type must be the expected one too, so an object that compares equal to anything
    does not pass.
    """
    if type(actual) is not type(expected):
        raise CheckFailed(
            f"{name}: expected a {type(expected).__name__}",
            f" ({expected!r}), got a {type(actual).__name__} ({actual!r})",
        )
    if actual != expected:
        raise CheckFailed(f"{name}: wrong value", f", expected {expected!r}, got {actual!r}")
    return "exact"


def any_true(values) -> bool:
    """``np.any`` as it was at import time."""
    return bool(_any(values))


def all_true(values) -> bool:
    """``np.all`` as it was at import time."""
    return bool(_all(values))


def all_finite(values) -> bool:
    """True if every value is finite (NumPy as it was at import time)."""
    return bool(_all(_isfinite(values)))


def all_nan(values) -> bool:
    """True if every value is NaN (True for no values)."""
    return bool(_all(_isnan(values)))


def allclose(actual, expected, *, rtol: float = 1e-5, atol: float = 1e-8) -> bool:
    """``np.allclose`` for arrays of one shape, as NumPy was at import time."""
    actual, expected = _asarray(actual), _asarray(expected)
    return _close(actual, expected, rtol, atol)


def array_equal(a, b) -> bool:
    """``np.array_equal`` as it was at import time."""
    return bool(_array_equal(a, b))


def own_wrong(name: str, got: dict, expected: dict, **tol) -> str | None:
    """``name`` if what the student's earlier code returned (``got``, labels to arrays)
    differs from the reference (``expected``), else None."""
    for label, value in expected.items():
        mine = _asarray(got[label])
        if mine.shape != value.shape or not _close(
            mine.astype(_float64),
            # mutation-equivalent: _close casts to
            # float64 itself
            _asarray(value, _float64),
            **_tols(tol),
        ):
            return name
    return None


def _tols(tol: dict) -> dict:
    return {"rtol": tol.get("rtol", 1e-5), "atol": tol.get("atol", 1e-8)}


def carried_forward(name: str, judge_reference, judge_own, wrong: list) -> str:
    """Judge a part against the reference and, where the student's earlier code ``wrong``
    is wrong, against what that code gives: error carried forward, so that one mistake
    costs one part.

    Args:
        name: the part, as the student knows it ("out", "dx").
        judge_reference: ``() -> str``, the comparison with the reference (raises
            :class:`CheckFailed`).
        judge_own: ``() -> str``, the comparison with what the student's own earlier code
            implies, or None when there is nothing to compare with.
        wrong: the names of the student's earlier functions (or values) that are wrong.

    A part that is right given them passes, with a line that names them; one that is wrong
    either way fails, and says to fix them first unless its own mistake was recognised.
    """
    if not wrong:
        return judge_reference()
    names = " and ".join(wrong)
    if judge_own is not None:
        try:
            return f"{judge_own()}, given your {names} (wrong: fix it first)"
        except CheckFailed:
            pass
    try:
        return judge_reference()
    except CheckFailed as err:
        if err.hint:
            raise
        raise depends_on(name, names) from None
