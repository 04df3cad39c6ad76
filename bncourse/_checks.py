"""Argument checks shared by the NumPy and Keras references: one message for one mistake."""

from __future__ import annotations

import math
import numbers


def check_integer(value, name: str) -> int:
    """``value`` as an int; a TypeError naming ``name`` for anything else (bools too)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r} of type {type(value).__name__}")
    return int(value)


def check_positive_integer(value, name: str) -> int:
    """``value`` as an int >= 1; a ValueError naming ``name`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_momentum(momentum) -> float:
    """The momentum of moving averages, a number in [0, 1]."""
    if (
        isinstance(momentum, bool)
        or not isinstance(momentum, numbers.Real)
        or not 0.0 <= momentum <= 1.0
    ):
        raise ValueError(f"momentum must be a number in [0, 1], got {momentum!r}")
    return float(momentum)


def check_epsilon(epsilon) -> float:
    """The epsilon added to a variance, a finite number > 0."""
    if (
        isinstance(epsilon, bool)
        or not isinstance(epsilon, numbers.Real)
        or not (epsilon > 0 and math.isfinite(epsilon))
    ):
        raise ValueError(f"epsilon must be a finite number > 0, got {epsilon!r}")
    return float(epsilon)
