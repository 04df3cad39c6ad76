"""Judges of ps3-keras-layer: a Keras 3 BN layer from scratch, against Keras's own.

The inputs and the code that runs the student's ``moments``, ``MyBatchNorm`` and
``build_mlp`` are in :mod:`bncourse.grading.student.ps3_keras_layer`. Each judge builds
``keras.layers.BatchNormalization`` with the same arguments and weights, runs it on the same
inputs and compares; the hints it gives are computed in NumPy from the inputs. Outputs are
compared with ``rtol = atol = 1e-4``, far below the size of any of the mistakes named in the
hints.
"""

from __future__ import annotations

import json
from functools import partial

import numpy as np

from .compare import assert_close, assert_equal, carried_forward
from .registry import reference
from .student.ps3_keras_layer_common import CLASSES, IMAGE, WEIGHTS, cases, qualname
from .student.messages import CheckFailed, as_failure
from .student.values import require_array


from .keras_layer_common import (
    JUDGES,
    TOL,
    EXACT,
    HIDDEN,
    _keras_bn,
    _np,
    _feature_axis,
    _stats,
    _transform,
    _judge_layer_facts,
    _signature,
    _describe,
    _moments_wrong,
)
from . import keras_layer_state  # noqa: F401 (registers the state's judges)

# ============================================================ 1. moments


@JUDGES.judge("moments_visible")
@JUDGES.judge("moments")
def _judge_moments(inputs, outputs):
    calls = {k: int(outputs[f"facts/calls/{k}"]) for k in ("moments", "batch_normalization")}
    if any(calls.values()):
        raise AssertionError(
            "moments called keras.ops.moments (or keras.ops.batch_normalization)\n"
            "hint: write the mean and variance yourself with keras.ops.mean and .square"
        )
    lines = []
    for key, case in cases(inputs).items():
        x = case["x"]
        axis = _feature_axis(x, case)
        bn = _keras_bn({"kwargs": {"axis": axis, "momentum": 0.0}}, x.shape)
        bn(x, training=True)  # with momentum 0 the moving statistics become the batch's
        mean, var = _np(bn.moving_mean), _np(bn.moving_variance)
        where = f"x of shape {x.shape}, axis={case.get('kwargs', {}).get('axis', -1)}"
        for label, expected in (("mean", mean), ("var", var)):
            got = outputs[f"{key}/{label}"]
            if type(got) is np.ndarray and got.shape != expected.shape:
                raise CheckFailed(
                    f"{label}: wrong shape",
                    (f" {got.shape}, expected {expected.shape}", f" for {where}"),
                    "average over every axis except the feature axis, one value per feature",
                )
        _, b_var = _stats(x, axis)
        n = x.size // x.shape[axis]
        lines.append(
            f"mean for {where}: " + assert_close("mean", outputs[f"{key}/mean"], mean, **TOL)
        )
        try:
            lines.append(
                f"var for {where}: "
                + assert_close(
                    "var",
                    outputs[f"{key}/var"],
                    var,
                    **TOL,
                    hints=[
                        (
                            "you divide by N - 1 (the unbiased variance); BN divides by N",
                            (b_var * n / (n - 1)).reshape(-1),
                        ),
                        (
                            "you return the standard deviation instead of the variance",
                            np.sqrt(b_var).reshape(-1),
                        ),
                    ],
                )
            )
        except AssertionError as err:
            if not case.get("one_pass_fails"):
                raise
            err = as_failure(err)
            raise CheckFailed(
                err.what,
                err.detail,
                "E[x**2] - E[x]**2 loses the variance in float32 at mean 1000: "
                "subtract the mean first",
            ) from None
    return lines


# ============================================================ 2. build: the weights


@JUDGES.judge("build_visible")
@JUDGES.judge("build")
@_judge_layer_facts
def _judge_build(inputs, outputs):
    lines = []
    for key, case in cases(inputs).items():
        ref = _keras_bn(case, case["shape"])
        where = f"{_signature(case)}.build({case['shape']})"
        names = tuple(v.name for v in ref.weights)
        got = tuple(outputs[f"{key}/names"].tolist())
        if got != names:
            hint = ""
            if "moving_var" in got:
                hint = "\nhint: name the variance 'moving_variance', as Keras does"
            elif sorted(got) == sorted(names):
                hint = (
                    "\nhint: create them in Keras's order, so that get_weights and "
                    "set_weights match"
                )
            raise AssertionError(f"{where}: expected the weights {names}, got {got}{hint}")
        assert_equal(
            f"{where}: the shapes of {names}",
            tuple(outputs[f"{key}/shapes"].tolist()),
            tuple(str(tuple(v.shape)) for v in ref.weights),
        )
        trainable = tuple(bool(v.trainable) for v in ref.weights)
        got_trainable = tuple(bool(t) for t in outputs[f"{key}/trainable"].tolist())
        if got_trainable != trainable:
            raise AssertionError(
                f"{where}: expected trainable flags {dict(zip(names, trainable))}, got "
                f"{dict(zip(names, got_trainable))}\nhint: the moving statistics are not "
                "learned: add them with trainable=False"
            )
        assert_equal(
            f"{where}: the dtypes of {names}",
            tuple(outputs[f"{key}/dtypes"].tolist()),
            tuple(str(v.dtype) for v in ref.weights),
        )
        for i, v in enumerate(ref.weights):
            assert_close(
                f"the initial {v.name}",
                outputs[f"{key}/value{i}"],
                _np(v),
                **EXACT,
                hints=[("you swapped the initializers of gamma and beta", 1.0 - _np(v))]
                if v.name in ("gamma", "beta")
                else [],
            )
        expected = tuple(
            str(names.index(n)) if getattr(ref, n, None) is not None else "-" for n in WEIGHTS
        )
        got_attr = tuple(outputs[f"{key}/attributes"].tolist())
        for name, e, g in zip(WEIGHTS, expected, got_attr):
            if e != g:
                raise AssertionError(
                    f"{where}: self.{name} should be "
                    + (f"the variable {name!r}" if e != "-" else "None (Keras's layer has none)")
                    + ", got "
                    + (f"the variable {names[int(g)]!r}" if g != "-" else "none")
                )
        lines.append(
            f"{where}: weights {names}, trainable {trainable}, initial values as Keras's: exact"
        )
    return lines


# ============================================================ 3. training mode


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
        (
            "you add epsilon outside the square root: sqrt(var) + epsilon",
            _transform(x, axis, mean, var, gamma, beta, eps, epsilon_outside=True),
        ),
        (
            "you use the unbiased variance (divide by N - 1)",
            _transform(x, axis, mean, var * n / (n - 1), gamma, beta, eps),
        ),
        (
            "you normalise with the moving statistics although training=True",
            _transform(x, axis, np.zeros(x.shape[axis]), np.ones(x.shape[axis]), gamma, beta, eps),
        ),
    ]
    if gamma is not None and beta is not None:
        hints.append(("you swap gamma and beta", _transform(x, axis, mean, var, beta, gamma, eps)))
    if x.ndim > 2:
        m0, v0 = _stats(x, axis, axes=(0,))
        hints.append(
            (
                "you average over the batch axis only, not all but the feature axis",
                _transform(x, axis, m0, v0, gamma, beta, eps),
            )
        )
    if beta is None:
        hints.append(
            (
                "you add beta although center=False",
                _transform(x, axis, mean, var, gamma, case["beta"], eps),
            )
        )
    return hints


@JUDGES.judge("training_visible")
@JUDGES.judge("training")
@_judge_layer_facts
def _judge_training(inputs, outputs):
    lines = []
    for key, case in cases(inputs).items():
        x = case["x"]
        expected = _np(_keras_bn(case)(x, training=True))
        axis, wrong = _feature_axis(x, case), _moments_wrong(outputs, key, x, case)
        kwargs = case.get("kwargs", {})

        actual = outputs[f"{key}/out"]
        own = (
            None
            if not wrong
            else partial(
                assert_close,
                "out",
                actual,
                _transform(
                    x,
                    axis,
                    outputs[f"{key}/own_mean"],
                    outputs[f"{key}/own_var"],
                    case["gamma"] if kwargs.get("scale", True) else None,
                    case["beta"] if kwargs.get("center", True) else None,
                    kwargs.get("epsilon", 1e-3),
                ),
                **TOL,
            )
        )
        lines.append(
            f"{_describe(case)}, training=True: "
            + carried_forward(
                "out",
                partial(assert_close, "out", actual, expected, **TOL, hints=_training_hints(case)),
                own,
                wrong,
            )
        )
    return lines


# ============================================================ 7. get_config / from_config

CONFIG_KEYS = ("axis", "momentum", "epsilon", "center", "scale", "trainable")


@JUDGES.judge("config_visible")
@JUDGES.judge("config")
@_judge_layer_facts
def _judge_config(inputs, outputs):
    owner = str(outputs["facts/get_config_owner"])
    if owner.startswith("keras."):
        raise AssertionError(
            "MyBatchNorm does not define get_config\nhint: write get_config, starting "
            "from super().get_config(), as Keras's own layers do"
        )
    keras = reference("keras")
    lines = []
    for key, case in cases(inputs).items():
        sig = _signature(case)
        kwargs = case.get("kwargs", {})
        expected = keras.layers.BatchNormalization(**kwargs).get_config()
        config = json.loads(str(outputs[f"{key}/config"]))
        keys = CONFIG_KEYS + (("name",) if "name" in kwargs else ())
        for k in keys:
            if k not in config:
                where = (
                    "; start from super().get_config(), which holds name, trainable and dtype"
                    if k in ("name", "trainable")
                    else ""
                )
                raise AssertionError(f"{sig}.get_config() has no key {k!r}{where}")
            assert_equal(f"{sig}.get_config()[{k!r}]", config[k], expected[k])
        if not bool(outputs[f"{key}/clone_is_instance"]):
            raise AssertionError(
                f"MyBatchNorm.from_config(config) returned a {outputs[f'{key}/clone_class']}, "
                "not a MyBatchNorm"
            )
        clone_config = json.loads(str(outputs[f"{key}/clone_config"]))
        if clone_config != config:
            missing = "<missing>"
            changes = [
                f"{k}: {config.get(k, missing)!r} became {clone_config.get(k, missing)!r}"
                for k in sorted(set(config) | set(clone_config))
                if config.get(k, missing) != clone_config.get(k, missing)
            ]
            raise AssertionError(
                f"the layer made by MyBatchNorm.from_config({sig}.get_config()) has a different "
                f"config: {'; '.join(changes)}"
            )
        lines.append(
            f"{sig}.get_config(): {', '.join(f'{k}={config[k]!r}' for k in keys)} as "
            "Keras's; from_config gives the same config"
        )
        for mode, label in (("train", "training=True"), ("infer", "inference")):
            lines.append(
                f"    the clone's output ({label}) is the original's: "
                + assert_close(
                    f"the clone's output ({label})",
                    outputs[f"{key}/clone/{mode}"],
                    outputs[f"{key}/layer/{mode}"],
                    rtol=1e-6,
                    atol=1e-6,
                )
            )
    return lines


# ============================================================ 8. the tutorial's MLP


def _expected_layers() -> list:
    kinds = ["Flatten"]
    for units in HIDDEN:
        kinds += [
            f"Dense({units}, use_bias=False, activation=linear)",
            "MyBatchNorm",
            "Activation(relu)",
        ]
    kinds.append(f"Dense({CLASSES}, use_bias=True, activation=softmax)")
    return kinds


def _reference_mlp():
    """The MLP with Keras's BN, for its parameter counts."""
    keras = reference("keras")
    layers = [keras.Input(IMAGE), keras.layers.Flatten()]
    for units in HIDDEN:
        layers += [
            keras.layers.Dense(units, use_bias=False),
            keras.layers.BatchNormalization(),
            keras.layers.Activation("relu"),
        ]
    layers.append(keras.layers.Dense(CLASSES, activation="softmax"))
    return keras.Sequential(layers)


@JUDGES.judge("mlp_visible")
@JUDGES.judge("mlp")
@_judge_layer_facts
def _judge_mlp(inputs, outputs):
    keras = reference("keras")
    bn = qualname(keras.layers.BatchNormalization)
    if bn in outputs["layer_classes"].tolist():
        raise AssertionError(
            "your model uses keras.layers.BatchNormalization; use your own MyBatchNorm in it"
        )
    expected = _expected_layers()
    got = outputs["layers"].tolist()
    n_bn = got.count("MyBatchNorm")
    if n_bn != len(HIDDEN):
        raise AssertionError(
            f"your model has {n_bn} MyBatchNorm layer(s); expected {len(HIDDEN)}, one between "
            "each hidden Dense layer and its ReLU"
        )
    if got != expected:
        i = next(
            (i for i, (g, e) in enumerate(zip(got, expected)) if g != e),
            min(len(got), len(expected)),
        )
        raise AssertionError(
            f"layer {i + 1} of your model (not counting the Input) is "
            f"{got[i] if i < len(got) else 'missing'}; expected "
            f"{expected[i] if i < len(expected) else 'no more layers'}.\n"
            f"expected: {', '.join(expected)}\ngot:      {', '.join(got)}"
        )
    ref = _reference_mlp()
    lines = [f"layers: {', '.join(expected)}"]
    for label, variables in (
        ("trainable", ref.trainable_weights),
        ("non_trainable", ref.non_trainable_weights),
    ):
        count = int(sum(int(np.prod(tuple(v.shape))) for v in variables))
        assert_equal(
            f"the number of {label.replace('_', '-')} parameters",
            int(outputs[f"{label}_params"]),
            count,
        )
        lines.append(f"{label.replace('_', '-')} parameters: {count}, as with Keras's BN")
    probs = outputs["probs"]
    x = inputs["x"]
    assert_equal("the shape of model(x)", tuple(probs.shape), (x.shape[0], CLASSES))
    lines.append(
        "the output's rows sum to 1 (softmax): "
        + assert_close(
            "the sums of the output's rows",
            probs.astype(np.float64).sum(axis=1),
            np.ones(x.shape[0]),
            rtol=0,
            atol=1e-5,
        )
    )
    if inputs["train"]:
        loss = float(outputs["loss"])
        if not np.isfinite(loss):
            raise AssertionError(
                f"the loss of one train_on_batch step is {loss}, not a finite number"
            )
        lines.append(f"one train_on_batch step: loss {loss:.4f}")
        if not np.any(require_array("moving_mean", outputs["moving_mean"]) != 0):
            raise AssertionError(
                "the first MyBatchNorm's moving_mean did not move in train_on_batch\n"
                "hint: fit calls the layers with training=True: update it then"
            )
        lines.append("    the first MyBatchNorm's moving_mean moved")
    return lines
