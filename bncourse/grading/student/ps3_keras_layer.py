"""Producers of ps3-keras-layer: a Keras 3 BN layer from scratch, run where the student's code runs.

The student writes ``moments(x, axis)``, a class ``MyBatchNorm(keras.layers.Layer)`` and
``build_mlp()``. Each ``produce`` builds the student's layer, sets its weights, calls it and
returns what came out as plain arrays, together with a few facts about the class (its base
classes, the paths of its variables, how often Keras's own BN ran meanwhile) that show
whether the work was handed to ``keras.layers.BatchNormalization``. The judges are in
:mod:`bncourse.grading.keras_layer`.

Inputs are float32, as a Keras layer computes by default. Keras is imported by the
``produce`` functions, not by this module: making the inputs needs NumPy only.
"""

from __future__ import annotations

import json

import numpy as np

from .values import require_tuple


from .ps3_keras_layer_common import (
    PRODUCERS,
    WEIGHTS,
    IMAGE,
    CLASSES,
    _keras,
    _watch_keras_bn,
    qualname,
    _strings,
    _layer_class,
    _class_facts,
    _with_facts,
    _tensor,
    _variable,
    _required_variable,
    _new_layer,
    _layer_facts,
    _call,
    own_moments,
    cases,
    _off_centre,
    _params,
    _moving_values,
)
from . import ps3_keras_layer_state  # noqa: F401 (registers the state's producers)

# ============================================================ 1. moments


def _moments_visible():
    x = np.array(
        [[1.0, 2.0, -1.0], [3.0, 6.0, -1.0], [5.0, 7.0, 2.0], [7.0, 9.0, 4.0]], dtype=np.float32
    )
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
        for key, case in cases(inputs).items():
            x = keras.ops.convert_to_tensor(case["x"])
            kwargs = case.get("kwargs", {})
            result = require_tuple("the value returned by moments", fn(x, **kwargs), 2)
            for label, value in zip(("mean", "var"), result):
                out[f"{key}/{label}"] = _tensor(f"{label} (returned by moments)", value)
    out.update({f"facts/calls/{k}": np.array(v) for k, v in counts.items()})
    return out


PRODUCERS.add("moments_visible", "moments of a 4 x 3 batch", _moments_visible, _produce_moments)
PRODUCERS.add(
    "moments",
    "moments of off-centre 2-D and 4-D batches, channels last and first, "
    "and of a batch with mean 1000",
    _moments_cases,
    _produce_moments,
)


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


@_with_facts
def _produce_build(cls, inputs):
    cls = _layer_class(cls)
    out = _class_facts(cls)
    for key, case in cases(inputs).items():
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


PRODUCERS.add(
    "build_visible",
    "build: the four weights of MyBatchNorm() for inputs (None, 3)",
    _build_visible,
    _produce_build,
)
PRODUCERS.add(
    "build", "build: 4-D inputs, axis=1, center=False and scale=False", _build_cases, _produce_build
)


# ============================================================ 3. training mode


def _training_visible():
    return {"a": {"x": _off_centre(31, (16, 3)), **_params(32, 3)}}


def _training_cases():
    return {
        "a": {"x": _off_centre(33, (4, 3, 3, 5)), **_params(34, 5)},
        "b": {"x": _off_centre(35, (4, 5, 3, 3)), **_params(36, 5), "kwargs": {"axis": 1}},
        # a large epsilon next to a small variance shows where epsilon goes
        "c": {
            "x": _off_centre(37, (10, 2), loc=1.0, scale=0.1),
            **_params(38, 2),
            "kwargs": {"epsilon": 0.5},
        },
        "d": {"x": _off_centre(39, (12, 4)), **_params(40, 4), "kwargs": {"center": False}},
    }


@_with_facts
def _produce_training(cls, inputs, uses):
    cls = _layer_class(cls)
    out = _class_facts(cls)
    for key, case in cases(inputs).items():
        layer = _new_layer(cls, case)
        out[f"{key}/out"] = _call(layer, case["x"], "layer(x, training=True)", training=True)
        out.update(_layer_facts(layer, f"{key}/layer"))
        axis = case.get("kwargs", {}).get("axis", -1)
        out.update({f"{key}/{k}": v for k, v in own_moments(uses, case["x"], axis).items()})
    return out


PRODUCERS.add(
    "training_visible",
    "training=True on off-centre (16, 3) data, gamma and beta set",
    _training_visible,
    _produce_training,
    depends=("moments",),
)
PRODUCERS.add(
    "training",
    "training=True on 4-D data (axis -1 and 1), a large epsilon, center=False",
    _training_cases,
    _produce_training,
    depends=("moments",),
)

# ============================================================ 7. get_config / from_config


def _config_visible():
    return {
        "a": {"x": _off_centre(81, (8, 3)), **_params(82, 3), **_moving_values(83, 3)},
        "b": {
            "x": _off_centre(84, (8, 3)),
            **_params(85, 3),
            **_moving_values(86, 3),
            "kwargs": {"momentum": 0.9, "epsilon": 0.01, "name": "bn"},
        },
    }


def _config_cases():
    return {
        "a": {
            "x": _off_centre(87, (4, 5, 3, 3)),
            **_params(88, 5),
            **_moving_values(89, 5),
            "kwargs": {
                "axis": 1,
                "momentum": 0.5,
                "epsilon": 0.1,
                "center": False,
                "name": "bn_first",
            },
        },
        "b": {
            "x": _off_centre(90, (8, 3)),
            **_params(91, 3),
            **_moving_values(92, 3),
            "kwargs": {"scale": False, "trainable": False, "name": "frozen"},
        },
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


@_with_facts
def _produce_config(cls, inputs):
    cls = _layer_class(cls)
    out = _class_facts(cls)
    for key, case in cases(inputs).items():
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
            out[f"{key}/{who}/train"] = _call(
                obj, case["x"], f"{who}(x, training=True)", training=True
            )
            out[f"{key}/{who}/infer"] = _call(obj, case["x"], f"{who}(x)")
        out.update(_layer_facts(layer, f"{key}/layer"))
    return out


PRODUCERS.add(
    "config_visible",
    "get_config: Keras's defaults, and a round trip with momentum and epsilon",
    _config_visible,
    _produce_config,
)
PRODUCERS.add(
    "config",
    "get_config round trip: axis=1 with center=False, scale=False and frozen",
    _config_cases,
    _produce_config,
)


# ============================================================ 8. the tutorial's MLP


def _mlp_visible():
    return {"x": np.random.default_rng(101).random((4, *IMAGE)).astype(np.float32), "train": False}


def _mlp_cases():
    rng = np.random.default_rng(102)
    return {
        "x": rng.random((8, *IMAGE)).astype(np.float32),
        "y": rng.integers(0, CLASSES, 8),
        "train": True,
    }


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


@_with_facts
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
            f"build_mlp() must return a Keras model (keras.Sequential), got {type(model).__name__}"
        )
    x = inputs["x"]
    out["probs"] = _tensor("the output of model(x)", model(x, training=False))
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    out["layers"] = _strings(_kind(layer, cls, keras) for layer in layers)
    out["layer_classes"] = _strings(qualname(type(layer)) for layer in layers)
    out["trainable_params"] = _count(model.trainable_weights)
    out["non_trainable_params"] = _count(model.non_trainable_weights)
    if inputs["train"]:
        bn = next((layer for layer in layers if isinstance(layer, cls)), None)
        if bn is None:
            return out  # the judge says what is missing
        model.compile(
            optimizer=keras.optimizers.SGD(learning_rate=0.01),
            loss="sparse_categorical_crossentropy",
            jit_compile=False,
        )
        loss = model.train_on_batch(x, inputs["y"])
        out["loss"] = np.array(float(np.ravel(keras.ops.convert_to_numpy(loss))[0]))
        out["moving_mean"] = _tensor(
            "MyBatchNorm.moving_mean", _required_variable(bn, "moving_mean")
        )
    return out


PRODUCERS.add(
    "mlp_visible",
    "build_mlp: the layers, the parameter counts, the output",
    _mlp_visible,
    _produce_mlp,
)
PRODUCERS.add(
    "mlp", "build_mlp: one training step on 8 images gives a finite loss", _mlp_cases, _produce_mlp
)
