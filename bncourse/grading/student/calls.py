"""Calling a student's function from a check's ``produce``: copies in, plain arrays out."""

from __future__ import annotations

import numpy as _np

from .values import assert_unchanged, require_array, require_tuple

_copy = _np.copy
_ndarray = _np.ndarray


def require_callable(name: str, obj):
    """``obj`` if it can be called; AssertionError naming ``name`` otherwise."""
    if not callable(obj):
        raise AssertionError(f"{name}: expected a function, got {type(obj).__name__}")
    return obj


def call(name: str, fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` on copies of the array arguments, which it must not modify.

    The arrays the function receives are checked afterwards against the originals, so a
    function that normalises its input in place is told so.
    """
    require_callable(name, fn)
    originals = [a for a in args if type(a) is _ndarray]
    originals += [v for v in kwargs.values() if type(v) is _ndarray]
    copies = {id(a): _copy(a) for a in originals}
    given_args = [copies.get(id(a), a) if type(a) is _ndarray else a for a in args]
    given_kwargs = {
        k: copies.get(id(v), v) if type(v) is _ndarray else v for k, v in kwargs.items()
    }
    result = fn(*given_args, **given_kwargs)
    arg_names = [f"argument {i + 1}" for i in range(len(args))] + list(kwargs)
    for label, given, original in zip(
        arg_names,
        list(given_args) + list(given_kwargs.values()),
        list(args) + list(kwargs.values()),
    ):
        if type(original) is _ndarray:
            assert_unchanged(f"{label} of {name}", original, given)
    return result


def arrays(name: str, result, labels: tuple) -> dict:
    """Split a returned tuple into ``{label: array}``, each checked to be a numeric array."""
    if len(labels) == 1:
        return {labels[0]: _copy(require_array(f"the value returned by {name}", result))}
    values = require_tuple(f"the value returned by {name}", result, len(labels))
    return {
        label: _copy(require_array(f"{label} (returned by {name})", value))
        for label, value in zip(labels, values)
    }


def off_centre(seed: int, shape, dtype=_np.float64, loc: float = 5.0, scale: float = 10.0):
    """Seeded normal data away from zero (Keras's tests use loc 5, scale 10): the inputs on
    which mistakes in the mean or the variance show."""
    return _np.random.default_rng(seed).normal(loc, scale, size=shape).astype(dtype)


def flatten_cases(cases: dict) -> dict:
    """``{"a": {"x": ...}}`` as ``{"a/x": ...}``: one flat dict of inputs for a check."""
    return {f"{group}/{key}": value for group, case in cases.items() for key, value in case.items()}


def cases_of(inputs: dict) -> dict:
    """The inverse of :func:`flatten_cases`; inputs without groups form the group ``""``."""
    if not any("/" in key for key in inputs):
        return {"": inputs}
    out: dict = {}
    for key, value in inputs.items():
        group, _, name = key.partition("/")
        out.setdefault(group, {})[name] = value
    return out
