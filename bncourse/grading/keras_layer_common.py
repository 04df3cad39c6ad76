"""What the judges of ps3-keras-layer share: Keras's own layer as the reference, the NumPy
statistics the hints are computed from, and the checks of what the student's layer did
(:mod:`bncourse.grading.keras_layer` and :mod:`bncourse.grading.keras_layer_state`)."""

import numpy as np

from .compare import assert_close, own_wrong
from .registry import JudgeRegistry, reference
from .student.ps3_keras_layer_common import WEIGHTS, qualname

# The problem set's one registry: keras_layer and keras_layer_state both register into it.
JUDGES = JudgeRegistry("ps3-keras-layer")

TOL = {"rtol": 1e-4, "atol": 1e-4}
EXACT = {"rtol": 0.0, "atol": 0.0}
HIDDEN = (300, 200, 100)


# ============================================================ the reference


def _keras_bn(case: dict, input_shape=None):
    """``keras.layers.BatchNormalization`` with the case's arguments, built, with its weights."""
    keras = reference("keras")
    layer = keras.layers.BatchNormalization(**case.get("kwargs", {}))
    layer.build(tuple(input_shape or case["x"].shape))
    for name in WEIGHTS:
        variable = getattr(layer, name, None)
        if name in case and variable is not None:
            variable.assign(case[name])
    return layer


def _np(value) -> np.ndarray:
    """A tensor or variable of the reference as a NumPy array."""
    ops = reference("keras").ops
    return ops.convert_to_numpy(ops.copy(value))


def _feature_axis(x, case) -> int:
    return case.get("kwargs", {}).get("axis", -1) % x.ndim


def _broadcast(x, axis):
    shape = [1] * x.ndim
    shape[axis] = -1
    return tuple(shape)


def _stats(x, axis, ddof=0, axes=None):
    """Mean and variance of x over every axis but ``axis`` (or over ``axes``), in float64."""
    axes = tuple(i for i in range(x.ndim) if i != axis) if axes is None else axes
    x64 = x.astype(np.float64)
    mean = x64.mean(axis=axes, keepdims=True)
    n = x.size // mean.size
    var = ((x64 - mean) ** 2).mean(axis=axes, keepdims=True) * n / (n - ddof)
    return mean, var


def _transform(x, axis, mean, var, gamma, beta, epsilon, *, epsilon_outside=False, root=True):
    """gamma * (x - mean) / sqrt(var + epsilon) + beta in float64, returned as float32.

    ``mean`` and ``var`` are either of shape (C,) or already broadcastable to x."""
    b = _broadcast(x, axis)
    mean = np.reshape(mean, b) if np.ndim(mean) == 1 else mean
    var = np.reshape(var, b) if np.ndim(var) == 1 else var
    if epsilon_outside:
        scale = np.sqrt(var) + epsilon
    else:
        scale = np.sqrt(var + epsilon) if root else var + epsilon
    out = (x.astype(np.float64) - mean) / scale
    if gamma is not None:
        out = out * np.reshape(gamma, b)
    if beta is not None:
        out = out + np.reshape(beta, b)
    return out.astype(np.float32)


def _unchanged(name: str, got, before, hint: str) -> None:
    """AssertionError with ``hint`` if a variable that must keep its value has changed."""
    try:
        assert_close(name, got, before, **EXACT)
    except AssertionError as err:
        raise AssertionError(f"{err}\nhint: {hint}") from None


def _judge_facts(outputs) -> None:
    """AssertionError if the student's class is or uses Keras's own BN."""
    keras = reference("keras")
    bn = qualname(keras.layers.BatchNormalization)
    if bn in outputs["facts/mro"].tolist():
        raise AssertionError(
            "MyBatchNorm is a subclass of keras.layers.BatchNormalization\n"
            "hint: derive it from keras.layers.Layer and write the layer yourself"
        )
    for key in sorted(k for k in outputs if k.endswith("/paths")):
        nested = [p for p in outputs[key].tolist() if p.count("/") > 1]
        if nested:
            raise AssertionError(
                f"MyBatchNorm has variables of a layer inside it ({nested[0]})\n"
                "hint: create the four weights with self.add_weight in build"
            )
    calls = {
        k: int(outputs.get(f"facts/calls/{k}", 0))
        for k in ("layer", "moments", "batch_normalization")
    }
    if calls["layer"]:
        raise AssertionError(
            f"keras.layers.BatchNormalization ran {calls['layer']} time(s) in your code\n"
            "hint: it is the reference your layer is compared with: do not use it"
        )
    for name in ("moments", "batch_normalization"):
        if calls[name]:
            raise AssertionError(
                f"keras.ops.{name} ran {calls[name]} time(s) in your code\n"
                "hint: write it with keras.ops.mean, square, sqrt and arithmetic"
            )


def _judge_layer_facts(judge):
    """Wrap a judge of the layer so that it first checks the facts about the class."""

    def wrapped(inputs, outputs):
        _judge_facts(outputs)
        return judge(inputs, outputs)

    wrapped.__name__ = judge.__name__
    wrapped.__doc__ = judge.__doc__
    return wrapped


def _signature(case: dict) -> str:
    """How the case's layer is made, as the student would write it."""
    args = ", ".join(f"{k}={v!r}" for k, v in case.get("kwargs", {}).items())
    return f"MyBatchNorm({args})"


def _describe(case: dict) -> str:
    return f"{_signature(case)} on x of shape {case['x'].shape}"


def _moments_wrong(outputs, prefix, x, case) -> list:
    """``["moments"]`` if the student's own moments (recorded under ``prefix``) is wrong
    on ``x``, else ``[]`` (also when it was not recorded)."""
    if f"{prefix}/own_mean" not in outputs:
        return []
    mean, var = (v.reshape(-1) for v in _stats(x, _feature_axis(x, case)))
    got = {"mean": outputs[f"{prefix}/own_mean"], "var": outputs[f"{prefix}/own_var"]}
    return ["moments"] if own_wrong("moments", got, {"mean": mean, "var": var}, **TOL) else []
