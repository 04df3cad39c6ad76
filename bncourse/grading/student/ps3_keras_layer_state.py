"""Producers of ps3-keras-layer, the layer's state: the moving statistics, inference mode
and ``trainable=False``. Registered in the problem set's
``PRODUCERS`` (in :mod:`.ps3_keras_layer_common`); :mod:`.ps3_keras_layer` imports this module."""

from __future__ import annotations


import numpy as np


from .ps3_keras_layer_common import (
    PRODUCERS,
    _keras,
    _layer_class,
    _class_facts,
    _with_facts,
    _tensor,
    _required_variable,
    _new_layer,
    _layer_facts,
    _moving,
    _call,
    own_moments,
    cases,
    _off_centre,
    _params,
    _moving_values,
)


# ============================================================ 4. the moving statistics


def _moving_visible():
    return {"a": {"batches": [_off_centre(41 + i, (16, 3)) for i in range(3)]}}


def _moving_cases():
    return {
        "a": {
            "batches": [_off_centre(44 + i, (4, 3, 3, 5)) for i in range(3)],
            "kwargs": {"momentum": 0.9},
        },
        "b": {
            "batches": [_off_centre(47 + i, (8, 4)) for i in range(2)],
            "kwargs": {"momentum": 0.0},
        },
        "c": {
            "batches": [_off_centre(49 + i, (4, 5, 3, 3)) for i in range(2)],
            "kwargs": {"axis": 1, "momentum": 0.8},
        },
    }


@_with_facts
def _produce_moving(cls, inputs, uses):
    cls = _layer_class(cls)
    out = _class_facts(cls)
    for key, case in cases(inputs).items():
        layer = cls(**case.get("kwargs", {}))
        axis = case.get("kwargs", {}).get("axis", -1)
        for step, x in enumerate(case["batches"]):
            _call(layer, x, "layer(x, training=True)", training=True)
            out.update(_moving(layer, f"{key}/step{step}"))
            out.update({f"{key}/step{step}/{k}": v for k, v in own_moments(uses, x, axis).items()})
        out.update(_layer_facts(layer, f"{key}/layer"))
    return out


PRODUCERS.add(
    "moving_visible",
    "moving statistics after three training calls, default momentum",
    _moving_visible,
    _produce_moving,
    depends=("moments",),
)
PRODUCERS.add(
    "moving",
    "moving statistics with momentum 0.9, 0 and 0.8 (4-D, axis -1 and 1)",
    _moving_cases,
    _produce_moving,
    depends=("moments",),
)


# ============================================================ 5. inference mode


def _inference_visible():
    return {"a": {"x": _off_centre(51, (16, 3)), **_params(52, 3), **_moving_values(53, 3)}}


def _inference_cases():
    return {
        "a": {"x": _off_centre(54, (4, 3, 3, 5)), **_params(55, 5), **_moving_values(56, 5)},
        "b": {"x": _off_centre(57, (1, 3)), **_params(58, 3), **_moving_values(59, 3)},
        # a large epsilon next to small moving variances shows where epsilon goes
        "c": {
            "x": _off_centre(60, (6, 2), loc=1.0, scale=0.1),
            **_params(61, 2),
            **_moving_values(62, 2, low=0.01, high=0.05),
            "kwargs": {"epsilon": 0.5},
        },
        "d": {
            "x": _off_centre(63, (2, 5, 3, 3)),
            **_params(64, 5),
            **_moving_values(65, 5),
            "kwargs": {"axis": 1},
        },
    }


@_with_facts
def _produce_inference(cls, inputs):
    cls = _layer_class(cls)
    out = _class_facts(cls)
    for key, case in cases(inputs).items():
        layer = _new_layer(cls, case)
        out[f"{key}/out_false"] = _call(
            layer, case["x"], "layer(x, training=False)", training=False
        )
        out[f"{key}/out_default"] = _call(layer, case["x"], "layer(x)")
        out.update(_moving(layer, f"{key}/after"))
        out.update(_layer_facts(layer, f"{key}/layer"))
    return out


PRODUCERS.add(
    "inference_visible",
    "training=False and training left out, moving statistics set",
    _inference_visible,
    _produce_inference,
)
PRODUCERS.add(
    "inference",
    "inference on 4-D data (axis -1 and 1), a batch of one, a large epsilon",
    _inference_cases,
    _produce_inference,
)


# ============================================================ 6. trainable=False


def _trainable_visible():
    return {
        "a": {
            "x": _off_centre(71, (16, 3)),
            **_params(72, 3),
            **_moving_values(73, 3),
            "kwargs": {"momentum": 0.5},
        }
    }


def _trainable_cases():
    return {
        "a": {
            "x": _off_centre(74, (4, 3, 3, 5)),
            **_params(75, 5),
            **_moving_values(76, 5),
            "kwargs": {"momentum": 0.5},
        },
        # frozen inside a model trained with train_on_batch, then unfrozen
        "b": {
            "x": _off_centre(77, (16, 3)),
            **_params(78, 3),
            **_moving_values(79, 3),
            "kwargs": {"momentum": 0.5},
            "model": True,
        },
    }


@_with_facts
def _produce_trainable(cls, inputs):
    keras = _keras()
    cls = _layer_class(cls)
    out = _class_facts(cls)
    for key, case in cases(inputs).items():
        x = case["x"]
        layer = _new_layer(cls, case)
        layer.trainable = False
        if case.get("model"):
            keras.utils.set_random_seed(0)
            model = keras.Sequential([keras.Input(x.shape[1:]), layer, keras.layers.Dense(1)])
            model.compile(
                optimizer=keras.optimizers.SGD(learning_rate=0.1), loss="mse", jit_compile=False
            )
            model.train_on_batch(x, np.ones((x.shape[0], 1), dtype=np.float32))
            for name in ("gamma", "beta"):
                out[f"{key}/fit/{name}"] = _tensor(
                    f"MyBatchNorm.{name}", _required_variable(layer, name)
                )
            out.update(_moving(layer, f"{key}/fit"))
            layer.trainable = True
            out[f"{key}/out"] = _call(
                layer, x, "layer(x, training=True) after layer.trainable = True", training=True
            )
            # the same call on a layer that was never frozen, for comparison
            out[f"{key}/never_frozen"] = _call(
                _new_layer(cls, case), x, "layer(x, training=True)", training=True
            )
        else:
            out[f"{key}/out"] = _call(
                layer, x, "layer(x, training=True) with trainable=False", training=True
            )
            out.update(_moving(layer, f"{key}/after"))
            out.update(_layer_facts(layer, f"{key}/layer"))
    return out


PRODUCERS.add(
    "trainable_visible",
    "trainable=False: training=True uses and keeps the moving statistics",
    _trainable_visible,
    _produce_trainable,
)
PRODUCERS.add(
    "trainable",
    "trainable=False on 4-D data, and frozen then unfrozen in a model",
    _trainable_cases,
    _produce_trainable,
)
