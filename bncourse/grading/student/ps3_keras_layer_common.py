"""What the producers of ps3-keras-layer share: running the student's layer and recording
what it did, and the inputs (:mod:`bncourse.grading.student.ps3_keras_layer` and
:mod:`bncourse.grading.student.ps3_keras_layer_state`)."""

from __future__ import annotations

import functools
from contextlib import contextmanager

import numpy as np

from .producers import ProducerRegistry
from .calls import off_centre
from .values import require_array, require_tuple


# The problem set's one registry: ps3_keras_layer and ps3_keras_layer_state both add to it.
PRODUCERS = ProducerRegistry("ps3-keras-layer")

WEIGHTS = ("gamma", "beta", "moving_mean", "moving_variance")
IMAGE = (28, 28)
CLASSES = 10


# ============================================================ running the student's layer


def _keras():
    """Keras as the notebook has it: produce builds and calls the student's layers with it."""
    import keras

    return keras


@contextmanager
def _watch_keras_bn():
    """Count the calls to Keras's BN layer, ``ops.moments`` and ``ops.batch_normalization``.

    The three are wrapped while the student's code runs and put back afterwards."""
    keras = _keras()
    counts = {"layer": 0, "moments": 0, "batch_normalization": 0}
    patched = []

    def counting(key, fn):
        @functools.wraps(fn)  # Keras reads the signature of call
        def wrapper(*args, **kwargs):
            counts[key] += 1
            return fn(*args, **kwargs)

        return wrapper

    bn = keras.layers.BatchNormalization
    patched.append((bn, "call", bn.__dict__["call"]))
    for module in (keras.ops, getattr(keras.ops, "nn", None)):
        for name in ("moments", "batch_normalization"):
            if module is not None and hasattr(module, name):
                patched.append((module, name, getattr(module, name)))
    try:
        for owner, name, original in patched:
            setattr(owner, name, counting("layer" if name == "call" else name, original))
        yield counts
    finally:
        for owner, name, original in reversed(patched):
            setattr(owner, name, original)


def qualname(cls) -> str:
    """``module.QualifiedName`` of a class, as the facts about the student's class name it."""
    return f"{getattr(cls, '__module__', '?')}.{getattr(cls, '__qualname__', '?')}"


def _strings(values) -> np.ndarray:
    return np.array([str(v) for v in values], dtype=np.str_)


def _layer_class(cls):
    """``cls`` if it is a class derived from ``keras.layers.Layer``; AssertionError otherwise."""
    keras = _keras()
    if not isinstance(cls, type):
        raise AssertionError(f"MyBatchNorm: expected a class, got {type(cls).__name__}")
    if not issubclass(cls, keras.layers.Layer):
        raise AssertionError("MyBatchNorm must be a subclass of keras.layers.Layer")
    return cls


def _class_facts(cls) -> dict:
    """The classes ``cls`` derives from, and which class defines its ``get_config``."""
    mro = type.__dict__["__mro__"].__get__(cls)
    owner = next((c for c in mro if "get_config" in c.__dict__), object)
    return {
        "facts/mro": _strings(qualname(c) for c in mro),
        "facts/get_config_owner": np.array(qualname(owner)),
    }


def _with_facts(produce):
    """Wrap a produce function of the layer: class facts, and Keras BN's calls counted."""

    def wrapped(cls, inputs, *uses):
        with _watch_keras_bn() as counts:
            out = produce(cls, inputs, *uses)
        out.update({f"facts/calls/{k}": np.array(v) for k, v in counts.items()})
        return out

    wrapped.__name__ = produce.__name__
    wrapped.__doc__ = produce.__doc__
    return wrapped


def _tensor(name: str, value) -> np.ndarray:
    """A tensor, variable or array the student's code returned, as a NumPy array."""
    keras = _keras()
    if isinstance(value, keras.Variable):
        value = keras.ops.copy(value)  # NumPy 2 warns when it converts a variable directly
    elif not (keras.ops.is_tensor(value) or type(value) is np.ndarray):
        raise AssertionError(f"{name}: expected a tensor, got {type(value).__name__}")
    return np.copy(require_array(name, keras.ops.convert_to_numpy(value)))


def _variable(layer, name: str):
    """The layer's variable attribute ``name``, or None if it has none (or it is None)."""
    keras = _keras()
    value = getattr(layer, name, None)
    if value is None:
        return None
    if not isinstance(value, keras.Variable):
        raise AssertionError(
            f"MyBatchNorm.{name}: expected a variable made with self.add_weight, got "
            f"{type(value).__name__}"
        )
    return value


def _required_variable(layer, name: str):
    value = _variable(layer, name)
    if value is None:
        raise AssertionError(
            f"MyBatchNorm has no {name}: build must create it with "
            f"self.{name} = self.add_weight(...)"
        )
    return value


def _new_layer(cls, case: dict):
    """The student's layer made with the case's arguments, built, with the case's weights."""
    layer = cls(**case.get("kwargs", {}))
    layer.build(tuple(case["x"].shape))
    for name in WEIGHTS:
        if name in case:
            variable = (
                _required_variable(layer, name)
                if name.startswith("moving")
                else _variable(layer, name)
            )
            if variable is not None:
                variable.assign(case[name])
    return layer


def _layer_facts(layer, prefix: str) -> dict:
    return {
        f"{prefix}/paths": _strings(v.path for v in layer.weights),
        f"{prefix}/name": np.array(str(layer.name)),
    }


def _moving(layer, prefix: str) -> dict:
    return {
        f"{prefix}/{name}": _tensor(f"MyBatchNorm.{name}", _required_variable(layer, name))
        for name in ("moving_mean", "moving_variance")
    }


def _call(layer, x, label: str, **kwargs) -> np.ndarray:
    return _tensor(f"the output of {label}", layer(x, **kwargs))


def own_moments(uses: dict, x, axis) -> dict:
    """What the student's own ``moments`` returns for ``x`` (``{"own_mean", "own_var"}``),
    or ``{}`` when it is missing or fails: the judge then grades the layer on the
    reference alone (see error carried forward in :mod:`bncourse.grading.keras_layer`)."""
    fn = uses.get("moments")
    if not callable(fn):
        return {}
    try:
        keras = _keras()
        result = require_tuple("", fn(keras.ops.convert_to_tensor(x), axis=axis), 2)
        return {
            f"own_{label}": _tensor("", value).reshape(-1)
            for label, value in zip(("mean", "var"), result)
        }
    except Exception:  # moments' own test cell reports what is wrong with it
        return {}


# ============================================================ the inputs


def cases(inputs: dict) -> dict:
    """``{key: case}`` of a check's inputs: every value that is a dict is one case."""
    return {k: v for k, v in inputs.items() if isinstance(v, dict)}


def _off_centre(seed: int, shape, loc=5.0, scale=10.0):
    return off_centre(seed, shape, np.float32, loc, scale)


def _params(seed: int, c: int) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "gamma": rng.uniform(0.5, 2.0, c).astype(np.float32),
        "beta": rng.normal(0.0, 1.0, c).astype(np.float32),
    }


def _moving_values(seed: int, c: int, low=50.0, high=150.0) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "moving_mean": rng.normal(5.0, 1.0, c).astype(np.float32),
        "moving_variance": rng.uniform(low, high, c).astype(np.float32),
    }
