"""Checks of ps3-keras-layer: a Keras 3 BN layer from scratch, against Keras's own.

The student writes ``moments(x, axis)``, a class ``MyBatchNorm(keras.layers.Layer)`` and
``build_mlp()``. Each ``produce`` builds the student's layer, sets its weights, calls it and
returns what came out as plain arrays, together with a few facts about the class (its base
classes, the paths of its variables, how often Keras's own BN ran meanwhile) that show
whether the work was handed to ``keras.layers.BatchNormalization``. Each ``judge`` builds
``keras.layers.BatchNormalization`` with the same arguments and weights, runs it on the same
inputs and compares; the hints it gives are computed in NumPy from the inputs.

Inputs are float32, as a Keras layer computes by default; outputs are compared with
``rtol = atol = 1e-4``, far below the size of any of the mistakes named in the hints.
"""

from __future__ import annotations

import functools
import json
from contextlib import contextmanager

import numpy as np

from .calls import off_centre
from .compare import assert_close, assert_equal, require_array, require_tuple
from .registry import CheckRegistry, reference

CHECKS = CheckRegistry("ps3-keras-layer")

TOL = {"rtol": 1e-4, "atol": 1e-4}
EXACT = {"rtol": 0.0, "atol": 0.0}
WEIGHTS = ("gamma", "beta", "moving_mean", "moving_variance")
HIDDEN = (300, 200, 100)
IMAGE = (28, 28)
CLASSES = 10


# ============================================================ the student's side (produce)

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


def _qualname(cls) -> str:
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
    return {"facts/mro": _strings(_qualname(c) for c in mro),
            "facts/get_config_owner": np.array(_qualname(owner))}


def _with_facts(produce):
    """Wrap a produce function of the layer: class facts, and Keras BN's calls counted."""

    def wrapped(cls, inputs):
        with _watch_keras_bn() as counts:
            out = produce(cls, inputs)
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
            f"{type(value).__name__}")
    return value


def _required_variable(layer, name: str):
    value = _variable(layer, name)
    if value is None:
        raise AssertionError(
            f"MyBatchNorm has no {name}: build must create it with "
            f"self.{name} = self.add_weight(...)")
    return value


def _new_layer(cls, case: dict):
    """The student's layer made with the case's arguments, built, with the case's weights."""
    layer = cls(**case.get("kwargs", {}))
    layer.build(tuple(case["x"].shape))
    for name in WEIGHTS:
        if name in case:
            variable = (_required_variable(layer, name) if name.startswith("moving")
                        else _variable(layer, name))
            if variable is not None:
                variable.assign(case[name])
    return layer


def _layer_facts(layer, prefix: str) -> dict:
    return {f"{prefix}/paths": _strings(v.path for v in layer.weights),
            f"{prefix}/name": np.array(str(layer.name))}


def _moving(layer, prefix: str) -> dict:
    return {f"{prefix}/{name}": _tensor(f"MyBatchNorm.{name}", _required_variable(layer, name))
            for name in ("moving_mean", "moving_variance")}


def _call(layer, x, label: str, **kwargs) -> np.ndarray:
    return _tensor(f"the output of {label}", layer(x, **kwargs))


# ============================================================ the reference's side (judge)

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
    bn = _qualname(keras.layers.BatchNormalization)
    if bn in outputs["facts/mro"].tolist():
        raise AssertionError(
            "MyBatchNorm is a subclass of keras.layers.BatchNormalization, the layer it is "
            "compared with; derive it from keras.layers.Layer and write the layer yourself")
    for key in sorted(k for k in outputs if k.endswith("/paths")):
        nested = [p for p in outputs[key].tolist() if p.count("/") > 1]
        if nested:
            raise AssertionError(
                f"MyBatchNorm has variables that belong to a layer inside it ({nested[0]}); "
                "create gamma, beta, moving_mean and moving_variance with self.add_weight "
                "in build, not by wrapping another layer")
    calls = {k: int(outputs.get(f"facts/calls/{k}", 0)) for k in
             ("layer", "moments", "batch_normalization")}
    if calls["layer"]:
        raise AssertionError(
            "keras.layers.BatchNormalization ran while your code was tested "
            f"({calls['layer']} call(s)): it is the reference your layer is compared with, "
            "so your layer may not use it")
    for name in ("moments", "batch_normalization"):
        if calls[name]:
            raise AssertionError(
                f"keras.ops.{name} ran while your code was tested ({calls[name]} call(s)): "
                "it does the work this problem set asks you to write; use keras.ops.mean, "
                "keras.ops.square, keras.ops.sqrt and arithmetic instead")


def _judge_layer_facts(judge):
    """Wrap a judge of the layer so that it first checks the facts about the class."""

    def wrapped(inputs, outputs):
        _judge_facts(outputs)
        return judge(inputs, outputs)

    wrapped.__name__ = judge.__name__
    wrapped.__doc__ = judge.__doc__
    return wrapped


def _cases(inputs: dict) -> dict:
    return {k: v for k, v in inputs.items() if isinstance(v, dict)}


def _signature(case: dict) -> str:
    """How the case's layer is made, as the student would write it."""
    args = ", ".join(f"{k}={v!r}" for k, v in case.get("kwargs", {}).items())
    return f"MyBatchNorm({args})"


def _describe(case: dict) -> str:
    return f"{_signature(case)} on x of shape {case['x'].shape}"


def _off_centre(seed: int, shape, loc=5.0, scale=10.0):
    return off_centre(seed, shape, np.float32, loc, scale)


def _params(seed: int, c: int) -> dict:
    rng = np.random.default_rng(seed)
    return {"gamma": rng.uniform(0.5, 2.0, c).astype(np.float32),
            "beta": rng.normal(0.0, 1.0, c).astype(np.float32)}


def _moving_values(seed: int, c: int, low=50.0, high=150.0) -> dict:
    rng = np.random.default_rng(seed)
    return {"moving_mean": rng.normal(5.0, 1.0, c).astype(np.float32),
            "moving_variance": rng.uniform(low, high, c).astype(np.float32)}


def _register(name, description, make_inputs, produce, *, layer=True):
    """Register a check; for checks of the layer, with the facts about the class."""
    if layer:
        produce = _with_facts(produce)

    def register(judge):
        CHECKS.add(name, description, make_inputs, produce)(
            _judge_layer_facts(judge) if layer else judge)
        return judge

    return register


# ============================================================ 1. moments

def _moments_visible():
    x = np.array([[1.0, 2.0, -1.0], [3.0, 6.0, -1.0], [5.0, 7.0, 2.0], [7.0, 9.0, 4.0]],
                 dtype=np.float32)
    return {"a": {"x": x}}


def _moments_cases():
    return {
        "a": {"x": _off_centre(21, (32, 4))},
        "b": {"x": _off_centre(22, (4, 3, 3, 5))},
        "c": {"x": _off_centre(23, (4, 5, 3, 3)), "kwargs": {"axis": 1}},
        # a mean large next to the spread: E[x**2] - E[x]**2 loses the variance in float32
        "d": {"x": _off_centre(24, (64, 3), loc=1000.0, scale=1.0), "one_pass_fails": True},
    }


def _produce_moments(fn, inputs):
    keras = _keras()
    if not callable(fn):
        raise AssertionError(f"moments: expected a function, got {type(fn).__name__}")
    out = {}
    with _watch_keras_bn() as counts:
        for key, case in _cases(inputs).items():
            x = keras.ops.convert_to_tensor(case["x"])
            kwargs = case.get("kwargs", {})
            result = require_tuple("the value returned by moments", fn(x, **kwargs), 2)
            for label, value in zip(("mean", "var"), result):
                out[f"{key}/{label}"] = _tensor(f"{label} (returned by moments)", value)
    out.update({f"facts/calls/{k}": np.array(v) for k, v in counts.items()})
    return out


def _judge_moments(inputs, outputs):
    calls = {k: int(outputs[f"facts/calls/{k}"]) for k in ("moments", "batch_normalization")}
    if any(calls.values()):
        raise AssertionError(
            "moments called keras.ops.moments (or keras.ops.batch_normalization): write the "
            "mean and the variance yourself with keras.ops.mean and keras.ops.square")
    lines = []
    for key, case in _cases(inputs).items():
        x = case["x"]
        axis = _feature_axis(x, case)
        bn = _keras_bn({"kwargs": {"axis": axis, "momentum": 0.0}}, x.shape)
        bn(x, training=True)  # with momentum 0 the moving statistics become the batch's
        mean, var = _np(bn.moving_mean), _np(bn.moving_variance)
        where = f"x of shape {x.shape}, axis={case.get('kwargs', {}).get('axis', -1)}"
        for label, expected in (("mean", mean), ("var", var)):
            got = outputs[f"{key}/{label}"]
            if type(got) is np.ndarray and got.shape != expected.shape:
                raise AssertionError(
                    f"{label} for {where}: expected shape {expected.shape} (one value per "
                    f"feature), got shape {got.shape}; average over every axis except the "
                    "feature axis (for (N, H, W, C) inputs and axis=-1 that is axes 0, 1 and 2)")
        _, b_var = _stats(x, axis)
        n = x.size // x.shape[axis]
        lines.append(f"mean for {where}: " + assert_close("mean", outputs[f"{key}/mean"],
                                                          mean, **TOL))
        try:
            lines.append(f"var for {where}: " + assert_close(
                "var", outputs[f"{key}/var"], var, **TOL,
                hints=[("you divide by N - 1 (the unbiased variance); BN divides by N",
                        (b_var * n / (n - 1)).reshape(-1)),
                       ("you return the standard deviation instead of the variance",
                        np.sqrt(b_var).reshape(-1))]))
        except AssertionError as err:
            if not case.get("one_pass_fails"):
                raise
            raise AssertionError(
                f"{err}\nhint: this batch has mean 1000 and variance about 1; if you compute "
                "E[x**2] - E[x]**2, float32 keeps only about 7 digits of E[x**2] (about 1e6) "
                "and the variance is lost in the rounding: subtract the mean first, then "
                "average the squares") from None
    return lines


_register("moments_visible", "moments of a 4 x 3 batch", _moments_visible,
          _produce_moments, layer=False)(_judge_moments)
_register("moments", "moments of off-centre 2-D and 4-D batches, channels last and first, "
          "and of a batch with mean 1000",
          _moments_cases, _produce_moments, layer=False)(_judge_moments)


# ============================================================ 2. build: the weights

def _build_visible():
    return {"a": {"shape": (None, 3)}}


def _build_cases():
    return {
        "a": {"shape": (None, 4, 4, 6)},
        "b": {"shape": (None, 5, 4, 4), "kwargs": {"axis": 1}},
        "c": {"shape": (None, 3), "kwargs": {"center": False}},
        "d": {"shape": (None, 3), "kwargs": {"scale": False}},
    }


def _produce_build(cls, inputs):
    cls = _layer_class(cls)
    out = _class_facts(cls)
    for key, case in _cases(inputs).items():
        layer = cls(**case.get("kwargs", {}))
        layer.build(case["shape"])
        weights = list(layer.weights)
        out[f"{key}/names"] = _strings(getattr(v, "name", "?") for v in weights)
        out[f"{key}/shapes"] = _strings(tuple(v.shape) for v in weights)
        out[f"{key}/trainable"] = np.array([bool(v.trainable) for v in weights], dtype=bool)
        out[f"{key}/dtypes"] = _strings(v.dtype for v in weights)
        for i, v in enumerate(weights):
            out[f"{key}/value{i}"] = _tensor(f"the value of weight {v.name!r}", v)
        attributes = []
        for name in WEIGHTS:
            value = _variable(layer, name)
            attributes.append(next((str(i) for i, v in enumerate(weights) if v is value), "-"))
        out[f"{key}/attributes"] = _strings(attributes)
        out.update(_layer_facts(layer, f"{key}/layer"))
    return out


def _judge_build(inputs, outputs):
    lines = []
    for key, case in _cases(inputs).items():
        ref = _keras_bn(case, case["shape"])
        where = f"{_signature(case)}.build({case['shape']})"
        names = tuple(v.name for v in ref.weights)
        got = tuple(outputs[f"{key}/names"].tolist())
        if got != names:
            hint = ""
            if "moving_var" in got:
                hint = " (name the variance 'moving_variance', as Keras does)"
            elif sorted(got) == sorted(names):
                hint = (" (create them in this order, Keras's order, so that weights can be "
                        "copied between your layer and Keras's with get_weights/set_weights)")
            raise AssertionError(f"{where}: expected the weights {names}, got {got}{hint}")
        assert_equal(f"{where}: the shapes of {names}", tuple(outputs[f"{key}/shapes"].tolist()),
                     tuple(str(tuple(v.shape)) for v in ref.weights))
        trainable = tuple(bool(v.trainable) for v in ref.weights)
        got_trainable = tuple(bool(t) for t in outputs[f"{key}/trainable"].tolist())
        if got_trainable != trainable:
            raise AssertionError(
                f"{where}: expected trainable flags {dict(zip(names, trainable))}, got "
                f"{dict(zip(names, got_trainable))} (the moving statistics are not learned by "
                "gradient descent: add them with trainable=False)")
        assert_equal(f"{where}: the dtypes of {names}", tuple(outputs[f"{key}/dtypes"].tolist()),
                     tuple(str(v.dtype) for v in ref.weights))
        for i, v in enumerate(ref.weights):
            assert_close(f"the initial {v.name}", outputs[f"{key}/value{i}"], _np(v), **EXACT,
                         hints=[("you swapped the initializers of gamma and beta",
                                 1.0 - _np(v))] if v.name in ("gamma", "beta") else [])
        expected = tuple(str(names.index(n)) if getattr(ref, n, None) is not None else "-"
                         for n in WEIGHTS)
        got_attr = tuple(outputs[f"{key}/attributes"].tolist())
        for name, e, g in zip(WEIGHTS, expected, got_attr):
            if e != g:
                raise AssertionError(
                    f"{where}: self.{name} should be "
                    + (f"the variable {name!r}" if e != "-" else "None (Keras's layer has none)")
                    + ", got " + (f"the variable {names[int(g)]!r}" if g != "-" else "none"))
        lines.append(f"{where}: weights {names}, trainable {trainable}, initial values as "
                     "Keras's: exact")
    return lines


_register("build_visible", "build: the four weights of MyBatchNorm() for inputs (None, 3)",
          _build_visible, _produce_build)(_judge_build)
_register("build", "build: 4-D inputs, axis=1, center=False and scale=False",
          _build_cases, _produce_build)(_judge_build)


# ============================================================ 3. training mode

def _training_visible():
    return {"a": {"x": _off_centre(31, (16, 3)), **_params(32, 3)}}


def _training_cases():
    return {
        "a": {"x": _off_centre(33, (4, 3, 3, 5)), **_params(34, 5)},
        "b": {"x": _off_centre(35, (4, 5, 3, 3)), **_params(36, 5), "kwargs": {"axis": 1}},
        # a large epsilon next to a small variance shows where epsilon goes
        "c": {"x": _off_centre(37, (10, 2), loc=1.0, scale=0.1), **_params(38, 2),
              "kwargs": {"epsilon": 0.5}},
        "d": {"x": _off_centre(39, (12, 4)), **_params(40, 4), "kwargs": {"center": False}},
    }


def _produce_training(cls, inputs):
    cls = _layer_class(cls)
    out = _class_facts(cls)
    for key, case in _cases(inputs).items():
        layer = _new_layer(cls, case)
        out[f"{key}/out"] = _call(layer, case["x"], "layer(x, training=True)", training=True)
        out.update(_layer_facts(layer, f"{key}/layer"))
    return out


def _training_hints(case: dict) -> list:
    x = case["x"]
    kwargs = case.get("kwargs", {})
    axis, eps = _feature_axis(x, case), kwargs.get("epsilon", 1e-3)
    gamma = case["gamma"] if kwargs.get("scale", True) else None
    beta = case["beta"] if kwargs.get("center", True) else None
    mean, var = _stats(x, axis)
    n = x.size // x.shape[axis]
    hints = [
        ("you leave out gamma and beta", _transform(x, axis, mean, var, None, None, eps)),
        ("you add epsilon outside the square root: sqrt(var) + epsilon",
         _transform(x, axis, mean, var, gamma, beta, eps, epsilon_outside=True)),
        ("you use the unbiased variance (divide by N - 1)",
         _transform(x, axis, mean, var * n / (n - 1), gamma, beta, eps)),
        ("you normalise with the moving statistics although training=True",
         _transform(x, axis, np.zeros(x.shape[axis]), np.ones(x.shape[axis]), gamma, beta, eps)),
    ]
    if gamma is not None and beta is not None:
        hints.append(("you swap gamma and beta",
                      _transform(x, axis, mean, var, beta, gamma, eps)))
    if x.ndim > 2:
        m0, v0 = _stats(x, axis, axes=(0,))
        hints.append(("you average over the batch axis only; BN averages over every axis "
                      "except the feature axis", _transform(x, axis, m0, v0, gamma, beta, eps)))
    if beta is None:
        hints.append(("you add beta although center=False",
                      _transform(x, axis, mean, var, gamma, case["beta"], eps)))
    return hints


def _judge_training(inputs, outputs):
    lines = []
    for key, case in _cases(inputs).items():
        expected = _np(_keras_bn(case)(case["x"], training=True))
        lines.append(f"{_describe(case)}, training=True: " + assert_close(
            "out", outputs[f"{key}/out"], expected, **TOL, hints=_training_hints(case)))
    return lines


_register("training_visible", "training=True on off-centre (16, 3) data, gamma and beta set",
          _training_visible, _produce_training)(_judge_training)
_register("training", "training=True on 4-D data (axis -1 and 1), a large epsilon, center=False",
          _training_cases, _produce_training)(_judge_training)


# ============================================================ 4. the moving statistics

def _moving_visible():
    return {"a": {"batches": [_off_centre(41 + i, (16, 3)) for i in range(3)]}}


def _moving_cases():
    return {
        "a": {"batches": [_off_centre(44 + i, (4, 3, 3, 5)) for i in range(3)],
              "kwargs": {"momentum": 0.9}},
        "b": {"batches": [_off_centre(47 + i, (8, 4)) for i in range(2)],
              "kwargs": {"momentum": 0.0}},
        "c": {"batches": [_off_centre(49 + i, (4, 5, 3, 3)) for i in range(2)],
              "kwargs": {"axis": 1, "momentum": 0.8}},
    }


def _produce_moving(cls, inputs):
    cls = _layer_class(cls)
    out = _class_facts(cls)
    for key, case in _cases(inputs).items():
        layer = cls(**case.get("kwargs", {}))
        for step, x in enumerate(case["batches"]):
            _call(layer, x, "layer(x, training=True)", training=True)
            out.update(_moving(layer, f"{key}/step{step}"))
        out.update(_layer_facts(layer, f"{key}/layer"))
    return out


def _simulate(case: dict, *, reversed_momentum=False, ddof=0, momentum=None, frozen=False):
    """The moving statistics after each batch, as a mistaken layer would compute them."""
    m = case.get("kwargs", {}).get("momentum", 0.99) if momentum is None else momentum
    first = case["batches"][0]
    axis = _feature_axis(first, case)
    moving_mean, moving_var = np.zeros(first.shape[axis]), np.ones(first.shape[axis])
    history = []
    for x in case["batches"]:
        mean, var = (v.reshape(-1) for v in _stats(x, axis, ddof=ddof))
        if not frozen:
            if reversed_momentum:
                moving_mean = moving_mean * (1 - m) + mean * m
                moving_var = moving_var * (1 - m) + var * m
            else:
                moving_mean = moving_mean * m + mean * (1 - m)
                moving_var = moving_var * m + var * (1 - m)
        history.append({"moving_mean": moving_mean, "moving_variance": moving_var})
    return history


def _judge_moving(inputs, outputs):
    lines = []
    for key, case in _cases(inputs).items():
        m = case.get("kwargs", {}).get("momentum", 0.99)
        first = case["batches"][0]
        ref = _keras_bn({"kwargs": case.get("kwargs", {})}, first.shape)
        mistakes = [
            ("you apply momentum the wrong way round (PyTorch's convention: moving * "
             "(1 - momentum) + batch * momentum); Keras uses moving * momentum + batch * "
             "(1 - momentum)", _simulate(case, reversed_momentum=True)),
            ("you use the unbiased variance (divide by N - 1)", _simulate(case, ddof=1)),
            ("you never update the moving statistics in training", _simulate(case, frozen=True)),
        ]
        if m != 0.99:
            mistakes.append(("you always use momentum 0.99, whatever momentum the layer was "
                             "given", _simulate(case, momentum=0.99)))
        for step, x in enumerate(case["batches"]):
            ref(x, training=True)
            for name in ("moving_mean", "moving_variance"):
                expected = _np(getattr(ref, name))
                assert_close(
                    f"{name} after training call {step + 1}", outputs[f"{key}/step{step}/{name}"],
                    expected, **TOL,
                    hints=[(d, h[step][name].astype(np.float32)) for d, h in mistakes
                           if not (name == "moving_mean" and "unbiased" in d)])
        lines.append(f"{_signature(case)}, {len(case['batches'])} training calls on "
                     f"{tuple(first.shape)} batches: moving_mean and moving_variance as "
                     "Keras's after each")
    return lines


_register("moving_visible", "moving statistics after three training calls, default momentum",
          _moving_visible, _produce_moving)(_judge_moving)
_register("moving", "moving statistics with momentum 0.9, 0 and 0.8 (4-D, axis -1 and 1)",
          _moving_cases, _produce_moving)(_judge_moving)


# ============================================================ 5. inference mode

def _inference_visible():
    return {"a": {"x": _off_centre(51, (16, 3)), **_params(52, 3), **_moving_values(53, 3)}}


def _inference_cases():
    return {
        "a": {"x": _off_centre(54, (4, 3, 3, 5)), **_params(55, 5), **_moving_values(56, 5)},
        "b": {"x": _off_centre(57, (1, 3)), **_params(58, 3), **_moving_values(59, 3)},
        # a large epsilon next to small moving variances shows where epsilon goes
        "c": {"x": _off_centre(60, (6, 2), loc=1.0, scale=0.1), **_params(61, 2),
              **_moving_values(62, 2, low=0.01, high=0.05), "kwargs": {"epsilon": 0.5}},
        "d": {"x": _off_centre(63, (2, 5, 3, 3)), **_params(64, 5), **_moving_values(65, 5),
              "kwargs": {"axis": 1}},
    }


def _produce_inference(cls, inputs):
    cls = _layer_class(cls)
    out = _class_facts(cls)
    for key, case in _cases(inputs).items():
        layer = _new_layer(cls, case)
        out[f"{key}/out_false"] = _call(layer, case["x"], "layer(x, training=False)",
                                        training=False)
        out[f"{key}/out_default"] = _call(layer, case["x"], "layer(x)")
        out.update(_moving(layer, f"{key}/after"))
        out.update(_layer_facts(layer, f"{key}/layer"))
    return out


def _judge_inference(inputs, outputs):
    lines = []
    for key, case in _cases(inputs).items():
        x = case["x"]
        axis, eps = _feature_axis(x, case), case.get("kwargs", {}).get("epsilon", 1e-3)
        gamma, beta = case["gamma"], case["beta"]
        mm, mv = case["moving_mean"], case["moving_variance"]
        expected = _np(_keras_bn(case)(x, training=False))
        mean, var = _stats(x, axis)
        hints = [
            ("you normalise with the batch's statistics; inference uses the moving ones",
             _transform(x, axis, mean, var, gamma, beta, eps)),
            ("you add epsilon outside the square root",
             _transform(x, axis, mm, mv, gamma, beta, eps, epsilon_outside=True)),
            ("you divide by moving_variance + epsilon, without the square root",
             _transform(x, axis, mm, mv, gamma, beta, eps, root=False)),
            ("you leave out gamma and beta", _transform(x, axis, mm, mv, None, None, eps)),
        ]
        lines.append(f"{_describe(case)}, training=False: " + assert_close(
            "out (training=False)", outputs[f"{key}/out_false"], expected, **TOL, hints=hints))
        assert_close("out of layer(x), with training left out", outputs[f"{key}/out_default"],
                     expected, **TOL,
                     hints=[("you treat training=None as training; Keras's default is "
                             "inference", _transform(x, axis, mean, var, gamma, beta, eps))])
        for name, before in (("moving_mean", mm), ("moving_variance", mv)):
            _unchanged(f"{name} after the inference calls", outputs[f"{key}/after/{name}"],
                       before, "you update the moving statistics at inference too; they may "
                       "change only in training")
        lines.append("    layer(x) gives the same; the moving statistics are unchanged")
    return lines


_register("inference_visible", "training=False and training left out, moving statistics set",
          _inference_visible, _produce_inference)(_judge_inference)
_register("inference", "inference on 4-D data (axis -1 and 1), a batch of one, a large epsilon",
          _inference_cases, _produce_inference)(_judge_inference)


# ============================================================ 6. trainable=False

def _trainable_visible():
    return {"a": {"x": _off_centre(71, (16, 3)), **_params(72, 3), **_moving_values(73, 3),
                  "kwargs": {"momentum": 0.5}}}


def _trainable_cases():
    return {
        "a": {"x": _off_centre(74, (4, 3, 3, 5)), **_params(75, 5), **_moving_values(76, 5),
              "kwargs": {"momentum": 0.5}},
        # frozen inside a model trained with train_on_batch, then unfrozen
        "b": {"x": _off_centre(77, (16, 3)), **_params(78, 3), **_moving_values(79, 3),
              "kwargs": {"momentum": 0.5}, "model": True},
    }


def _produce_trainable(cls, inputs):
    keras = _keras()
    cls = _layer_class(cls)
    out = _class_facts(cls)
    for key, case in _cases(inputs).items():
        x = case["x"]
        layer = _new_layer(cls, case)
        layer.trainable = False
        if case.get("model"):
            keras.utils.set_random_seed(0)
            model = keras.Sequential([keras.Input(x.shape[1:]), layer, keras.layers.Dense(1)])
            model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1), loss="mse",
                          jit_compile=False)
            model.train_on_batch(x, np.ones((x.shape[0], 1), dtype=np.float32))
            for name in ("gamma", "beta"):
                out[f"{key}/fit/{name}"] = _tensor(f"MyBatchNorm.{name}",
                                                   _required_variable(layer, name))
            out.update(_moving(layer, f"{key}/fit"))
            layer.trainable = True
            out[f"{key}/out"] = _call(layer, x, "layer(x, training=True) after "
                                      "layer.trainable = True", training=True)
            # the same call on a layer that was never frozen, for comparison
            out[f"{key}/never_frozen"] = _call(_new_layer(cls, case), x,
                                               "layer(x, training=True)", training=True)
        else:
            out[f"{key}/out"] = _call(layer, x, "layer(x, training=True) with "
                                      "trainable=False", training=True)
            out.update(_moving(layer, f"{key}/after"))
            out.update(_layer_facts(layer, f"{key}/layer"))
    return out


def _judge_trainable(inputs, outputs):
    frozen_hint = ("you update the moving statistics of a frozen layer; with trainable=False "
                   "they must keep their values")
    lines = []
    for key, case in _cases(inputs).items():
        x = case["x"]
        axis, eps = _feature_axis(x, case), case.get("kwargs", {}).get("epsilon", 1e-3)
        gamma, beta = case["gamma"], case["beta"]
        mean, var = _stats(x, axis)
        mm, mv = case["moving_mean"], case["moving_variance"]
        if case.get("model"):
            for name in ("gamma", "beta", "moving_mean", "moving_variance"):
                _unchanged(f"{name} after one train_on_batch step of a model with the frozen "
                           "layer", outputs[f"{key}/fit/{name}"], case[name],
                           frozen_hint if name.startswith("moving") else
                           "a frozen layer's weights are not trained")
            lines.append(f"{_describe(case)}, frozen in a model: one train_on_batch step left "
                         "gamma, beta and the moving statistics unchanged")
            # Compared with the student's own layer that was never frozen, so that a mistake
            # in the training-mode formula costs the points of that part only.
            lines.append("then layer.trainable = True; layer(x, training=True) is the output "
                         "of a layer that was never frozen: " + assert_close(
                             "out (training=True) after layer.trainable = True",
                             outputs[f"{key}/out"], outputs[f"{key}/never_frozen"],
                             rtol=1e-6, atol=1e-6,
                             hints=[("your layer still uses the moving statistics: read "
                                     "self.trainable in call, each time, rather than once in "
                                     "__init__", _transform(x, axis, mm, mv, gamma, beta, eps))]))
            continue
        ref = _keras_bn(case)
        ref.trainable = False
        expected = _np(ref(x, training=True))
        lines.append(f"{_describe(case)}, trainable=False, training=True: " + assert_close(
            "out (trainable=False, training=True)", outputs[f"{key}/out"], expected, **TOL,
            hints=[("you normalise with the batch's statistics although the layer is frozen; "
                    "in Keras 3 a layer with trainable=False uses its moving statistics, even "
                    "when training=True", _transform(x, axis, mean, var, gamma, beta, eps))]))
        for name in ("moving_mean", "moving_variance"):
            _unchanged(f"{name} after layer(x, training=True) with trainable=False",
                       outputs[f"{key}/after/{name}"], case[name], frozen_hint)
        lines.append("    the moving statistics are unchanged")
    return lines


_register("trainable_visible", "trainable=False: training=True uses and keeps the moving "
          "statistics", _trainable_visible, _produce_trainable)(_judge_trainable)
_register("trainable", "trainable=False on 4-D data, and frozen then unfrozen in a model",
          _trainable_cases, _produce_trainable)(_judge_trainable)


# ============================================================ 7. get_config / from_config

CONFIG_KEYS = ("axis", "momentum", "epsilon", "center", "scale", "trainable")


def _config_visible():
    return {
        "a": {"x": _off_centre(81, (8, 3)), **_params(82, 3), **_moving_values(83, 3)},
        "b": {"x": _off_centre(84, (8, 3)), **_params(85, 3), **_moving_values(86, 3),
              "kwargs": {"momentum": 0.9, "epsilon": 0.01, "name": "bn"}},
    }


def _config_cases():
    return {
        "a": {"x": _off_centre(87, (4, 5, 3, 3)), **_params(88, 5), **_moving_values(89, 5),
              "kwargs": {"axis": 1, "momentum": 0.5, "epsilon": 0.1, "center": False,
                         "name": "bn_first"}},
        "b": {"x": _off_centre(90, (8, 3)), **_params(91, 3), **_moving_values(92, 3),
              "kwargs": {"scale": False, "trainable": False, "name": "frozen"}},
    }


def _not_json(value):
    return f"<not JSON: {type(value).__name__}>"


def _config_json(label: str, config) -> np.ndarray:
    if type(config) is not dict:
        raise AssertionError(f"{label}: expected a dict, got {type(config).__name__}")
    try:
        return np.array(json.dumps(config, sort_keys=True, default=_not_json))
    except (TypeError, ValueError) as err:
        raise AssertionError(f"{label} cannot be written as JSON: {err}") from None


def _produce_config(cls, inputs):
    cls = _layer_class(cls)
    out = _class_facts(cls)
    for key, case in _cases(inputs).items():
        layer = cls(**case.get("kwargs", {}))
        out[f"{key}/config"] = _config_json("layer.get_config()", layer.get_config())
        clone = cls.from_config(json.loads(str(out[f"{key}/config"])))
        out[f"{key}/clone_class"] = np.array(type(clone).__name__)
        out[f"{key}/clone_is_instance"] = np.array(isinstance(clone, cls))
        if not isinstance(clone, cls):
            continue
        out[f"{key}/clone_config"] = _config_json("the clone's get_config()", clone.get_config())
        layer.build(tuple(case["x"].shape))
        for name in WEIGHTS:
            variable = _variable(layer, name)
            if variable is not None:
                variable.assign(case[name])
        clone.build(tuple(case["x"].shape))
        clone.set_weights(layer.get_weights())
        for who, obj in (("layer", layer), ("clone", clone)):
            out[f"{key}/{who}/train"] = _call(obj, case["x"], f"{who}(x, training=True)",
                                              training=True)
            out[f"{key}/{who}/infer"] = _call(obj, case["x"], f"{who}(x)")
        out.update(_layer_facts(layer, f"{key}/layer"))
    return out


def _judge_config(inputs, outputs):
    owner = str(outputs["facts/get_config_owner"])
    if owner.startswith("keras."):
        raise AssertionError(
            "MyBatchNorm does not define get_config. Keras 3 can often make a config from "
            "the constructor's arguments by itself, but a layer that is meant to be saved "
            "says what its config is, as Keras's own layers do: write get_config, starting "
            "from super().get_config()")
    keras = reference("keras")
    lines = []
    for key, case in _cases(inputs).items():
        sig = _signature(case)
        kwargs = case.get("kwargs", {})
        expected = keras.layers.BatchNormalization(**kwargs).get_config()
        config = json.loads(str(outputs[f"{key}/config"]))
        keys = CONFIG_KEYS + (("name",) if "name" in kwargs else ())
        for k in keys:
            if k not in config:
                where = ("; start from super().get_config(), which holds name, trainable and "
                         "dtype" if k in ("name", "trainable") else "")
                raise AssertionError(f"{sig}.get_config() has no key {k!r}{where}")
            assert_equal(f"{sig}.get_config()[{k!r}]", config[k], expected[k])
        if not bool(outputs[f"{key}/clone_is_instance"]):
            raise AssertionError(
                f"MyBatchNorm.from_config(config) returned a {outputs[f'{key}/clone_class']}, "
                "not a MyBatchNorm")
        clone_config = json.loads(str(outputs[f"{key}/clone_config"]))
        if clone_config != config:
            missing = "<missing>"
            changes = [f"{k}: {config.get(k, missing)!r} became {clone_config.get(k, missing)!r}"
                       for k in sorted(set(config) | set(clone_config))
                       if config.get(k, missing) != clone_config.get(k, missing)]
            raise AssertionError(
                f"the layer made by MyBatchNorm.from_config({sig}.get_config()) has a different "
                f"config: {'; '.join(changes)}")
        lines.append(f"{sig}.get_config(): {', '.join(f'{k}={config[k]!r}' for k in keys)} as "
                     "Keras's; from_config gives the same config")
        for mode, label in (("train", "training=True"), ("infer", "inference")):
            lines.append(f"    the clone's output ({label}) is the original's: " + assert_close(
                f"the clone's output ({label})", outputs[f"{key}/clone/{mode}"],
                outputs[f"{key}/layer/{mode}"], rtol=1e-6, atol=1e-6))
    return lines


_register("config_visible", "get_config: Keras's defaults, and a round trip with momentum and "
          "epsilon", _config_visible, _produce_config)(_judge_config)
_register("config", "get_config round trip: axis=1 with center=False, scale=False and frozen",
          _config_cases, _produce_config)(_judge_config)


# ============================================================ 8. the tutorial's MLP

def _expected_layers() -> list:
    kinds = ["Flatten"]
    for units in HIDDEN:
        kinds += [f"Dense({units}, use_bias=False, activation=linear)", "MyBatchNorm",
                  "Activation(relu)"]
    kinds.append(f"Dense({CLASSES}, use_bias=True, activation=softmax)")
    return kinds


def _reference_mlp():
    """The MLP with Keras's BN, for its parameter counts."""
    keras = reference("keras")
    layers = [keras.Input(IMAGE), keras.layers.Flatten()]
    for units in HIDDEN:
        layers += [keras.layers.Dense(units, use_bias=False),
                   keras.layers.BatchNormalization(), keras.layers.Activation("relu")]
    layers.append(keras.layers.Dense(CLASSES, activation="softmax"))
    return keras.Sequential(layers)


def _mlp_visible():
    return {"x": np.random.default_rng(101).random((4, *IMAGE)).astype(np.float32),
            "train": False}


def _mlp_cases():
    rng = np.random.default_rng(102)
    return {"x": rng.random((8, *IMAGE)).astype(np.float32),
            "y": rng.integers(0, CLASSES, 8), "train": True}


def _kind(layer, cls, keras) -> str:
    """A layer as the structural check sees it."""
    if isinstance(layer, cls):
        return "MyBatchNorm"
    activation = getattr(getattr(layer, "activation", None), "__name__", "?")
    if isinstance(layer, keras.layers.Dense):
        return f"Dense({layer.units}, use_bias={layer.use_bias}, activation={activation})"
    if isinstance(layer, keras.layers.Activation):
        return f"Activation({activation})"
    if isinstance(layer, keras.layers.ReLU):
        return "Activation(relu)"
    return type(layer).__name__


def _count(variables) -> np.ndarray:
    return np.array(sum(int(np.prod(tuple(v.shape))) for v in variables))


def _produce_mlp(obj, inputs):
    keras = _keras()
    fn, cls = require_tuple("the pair checked (build_mlp, MyBatchNorm)", obj, 2)
    if not callable(fn):
        raise AssertionError(f"build_mlp: expected a function, got {type(fn).__name__}")
    cls = _layer_class(cls)
    out = _class_facts(cls)
    keras.utils.set_random_seed(0)
    model = fn()
    if not isinstance(model, keras.Model):
        raise AssertionError(
            f"build_mlp() must return a Keras model (keras.Sequential), got {type(model).__name__}")
    x = inputs["x"]
    out["probs"] = _tensor("the output of model(x)", model(x, training=False))
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    out["layers"] = _strings(_kind(layer, cls, keras) for layer in layers)
    out["layer_classes"] = _strings(_qualname(type(layer)) for layer in layers)
    out["trainable_params"] = _count(model.trainable_weights)
    out["non_trainable_params"] = _count(model.non_trainable_weights)
    if inputs["train"]:
        bn = next((layer for layer in layers if isinstance(layer, cls)), None)
        if bn is None:
            return out  # the judge says what is missing
        model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.01),
                      loss="sparse_categorical_crossentropy", jit_compile=False)
        loss = model.train_on_batch(x, inputs["y"])
        out["loss"] = np.array(float(np.ravel(keras.ops.convert_to_numpy(loss))[0]))
        out["moving_mean"] = _tensor("MyBatchNorm.moving_mean",
                                     _required_variable(bn, "moving_mean"))
    return out


def _judge_mlp(inputs, outputs):
    keras = reference("keras")
    bn = _qualname(keras.layers.BatchNormalization)
    if bn in outputs["layer_classes"].tolist():
        raise AssertionError("your model uses keras.layers.BatchNormalization; use your own "
                             "MyBatchNorm in it")
    expected = _expected_layers()
    got = outputs["layers"].tolist()
    n_bn = got.count("MyBatchNorm")
    if n_bn != len(HIDDEN):
        raise AssertionError(
            f"your model has {n_bn} MyBatchNorm layer(s); expected {len(HIDDEN)}, one between "
            "each hidden Dense layer and its ReLU")
    if got != expected:
        i = next((i for i, (g, e) in enumerate(zip(got, expected)) if g != e),
                 min(len(got), len(expected)))
        raise AssertionError(
            f"layer {i + 1} of your model (not counting the Input) is "
            f"{got[i] if i < len(got) else 'missing'}; expected "
            f"{expected[i] if i < len(expected) else 'no more layers'}.\n"
            f"expected: {', '.join(expected)}\ngot:      {', '.join(got)}")
    ref = _reference_mlp()
    lines = [f"layers: {', '.join(expected)}"]
    for label, variables in (("trainable", ref.trainable_weights),
                             ("non_trainable", ref.non_trainable_weights)):
        count = int(sum(int(np.prod(tuple(v.shape))) for v in variables))
        assert_equal(f"the number of {label.replace('_', '-')} parameters",
                     int(outputs[f"{label}_params"]), count)
        lines.append(f"{label.replace('_', '-')} parameters: {count}, as with Keras's BN")
    probs = outputs["probs"]
    x = inputs["x"]
    assert_equal("the shape of model(x)", tuple(probs.shape), (x.shape[0], CLASSES))
    lines.append("the output's rows sum to 1 (softmax): " + assert_close(
        "the sums of the output's rows", probs.astype(np.float64).sum(axis=1),
        np.ones(x.shape[0]), rtol=0, atol=1e-5))
    if inputs["train"]:
        loss = float(outputs["loss"])
        if not np.isfinite(loss):
            raise AssertionError(f"the loss of one train_on_batch step is {loss}, not a "
                                 "finite number")
        lines.append(f"one train_on_batch step: loss {loss:.4f}")
        if not np.any(require_array("moving_mean", outputs["moving_mean"]) != 0):
            raise AssertionError(
                "the first MyBatchNorm's moving_mean did not move in train_on_batch: fit calls "
                "the layers with training=True, and your layer must then update it")
        lines.append("    the first MyBatchNorm's moving_mean moved")
    return lines


_register("mlp_visible", "build_mlp: the layers, the parameter counts, the output",
          _mlp_visible, _produce_mlp)(_judge_mlp)
_register("mlp", "build_mlp: one training step on 8 images gives a finite loss",
          _mlp_cases, _produce_mlp)(_judge_mlp)
