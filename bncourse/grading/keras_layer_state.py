"""Judges of ps3-keras-layer, the layer's state: the moving statistics, inference mode and
``trainable=False``. Registered in the problem set's
``JUDGES`` (in :mod:`.keras_layer_common`); :mod:`bncourse.grading.keras_layer` imports this module."""

from functools import partial

import numpy as np

from .compare import assert_close, carried_forward
from .student.ps3_keras_layer_common import cases

from .keras_layer_common import (
    JUDGES,
    TOL,
    _keras_bn,
    _np,
    _feature_axis,
    _stats,
    _transform,
    _unchanged,
    _judge_layer_facts,
    _signature,
    _describe,
    _moments_wrong,
)


# ============================================================ 4. the moving statistics


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


@JUDGES.judge("moving_visible")
@JUDGES.judge("moving")
@_judge_layer_facts
def _judge_moving(inputs, outputs):
    lines = []
    for key, case in cases(inputs).items():
        m = case.get("kwargs", {}).get("momentum", 0.99)
        first = case["batches"][0]
        ref = _keras_bn({"kwargs": case.get("kwargs", {})}, first.shape)
        mistakes = [
            (
                "momentum reversed: Keras keeps moving * momentum + batch * (1 - momentum)",
                _simulate(case, reversed_momentum=True),
            ),
            ("you use the unbiased variance (divide by N - 1)", _simulate(case, ddof=1)),
            ("you never update the moving statistics in training", _simulate(case, frozen=True)),
        ]
        if m != 0.99:
            mistakes.append(
                (
                    "you always use momentum 0.99, not the layer's momentum",
                    _simulate(case, momentum=0.99),
                )
            )
        wrong = sorted(
            {
                w
                for step, x in enumerate(case["batches"])
                for w in _moments_wrong(outputs, f"{key}/step{step}", x, case)
            }
        )
        own_mean, own_var = np.zeros(first.shape[_feature_axis(first, case)]), None
        own_var = np.ones_like(own_mean)
        for step, x in enumerate(case["batches"]):
            ref(x, training=True)
            if wrong:  # the moving statistics the student's own moments give
                p = f"{key}/step{step}/"
                own_mean = own_mean * m + outputs[p + "own_mean"] * (1 - m)
                own_var = own_var * m + outputs[p + "own_var"] * (1 - m)
            for name, own in (("moving_mean", own_mean), ("moving_variance", own_var)):
                expected = _np(getattr(ref, name))
                label, actual = f"{name} after call {step + 1}", outputs[f"{key}/step{step}/{name}"]
                hints = [
                    (d, h[step][name].astype(np.float32))
                    for d, h in mistakes
                    if not (name == "moving_mean" and "unbiased" in d)
                ]
                carried_forward(
                    label,
                    partial(assert_close, label, actual, expected, **TOL, hints=hints),
                    partial(assert_close, label, actual, own.astype(np.float32), **TOL)
                    if wrong
                    else None,
                    wrong,
                )
        lines.append(
            f"{_signature(case)}, {len(case['batches'])} training calls on "
            f"{tuple(first.shape)} batches: moving_mean and moving_variance as "
            "Keras's after each"
        )
    return lines


# ============================================================ 5. inference mode


@JUDGES.judge("inference_visible")
@JUDGES.judge("inference")
@_judge_layer_facts
def _judge_inference(inputs, outputs):
    lines = []
    for key, case in cases(inputs).items():
        x = case["x"]
        axis, eps = _feature_axis(x, case), case.get("kwargs", {}).get("epsilon", 1e-3)
        gamma, beta = case["gamma"], case["beta"]
        mm, mv = case["moving_mean"], case["moving_variance"]
        expected = _np(_keras_bn(case)(x, training=False))
        mean, var = _stats(x, axis)
        hints = [
            (
                "you normalise with the batch's statistics; inference uses the moving ones",
                _transform(x, axis, mean, var, gamma, beta, eps),
            ),
            (
                "you add epsilon outside the square root",
                _transform(x, axis, mm, mv, gamma, beta, eps, epsilon_outside=True),
            ),
            (
                "you divide by moving_variance + epsilon, without the square root",
                _transform(x, axis, mm, mv, gamma, beta, eps, root=False),
            ),
            ("you leave out gamma and beta", _transform(x, axis, mm, mv, None, None, eps)),
        ]
        # the state first: a layer that updates its moving statistics at inference also
        # normalises with the updated ones, and the output alone would not say why
        for name, before in (("moving_mean", mm), ("moving_variance", mv)):
            _unchanged(
                f"{name} after the inference calls",
                outputs[f"{key}/after/{name}"],
                before,
                "you update the moving statistics at inference; only training may",
            )
        lines.append(
            f"{_describe(case)}, training=False: "
            + assert_close(
                "out (training=False)", outputs[f"{key}/out_false"], expected, **TOL, hints=hints
            )
        )
        assert_close(
            "out of layer(x), with training left out",
            outputs[f"{key}/out_default"],
            expected,
            **TOL,
            hints=[
                (
                    "you treat training=None as training; Keras's default is inference",
                    _transform(x, axis, mean, var, gamma, beta, eps),
                )
            ],
        )
        lines.append("    layer(x) gives the same; the moving statistics are unchanged")
    return lines


# ============================================================ 6. trainable=False


@JUDGES.judge("trainable_visible")
@JUDGES.judge("trainable")
@_judge_layer_facts
def _judge_trainable(inputs, outputs):
    frozen_hint = "you update the moving statistics of a frozen layer (trainable=False)"
    lines = []
    for key, case in cases(inputs).items():
        x = case["x"]
        axis, eps = _feature_axis(x, case), case.get("kwargs", {}).get("epsilon", 1e-3)
        gamma, beta = case["gamma"], case["beta"]
        mean, var = _stats(x, axis)
        mm, mv = case["moving_mean"], case["moving_variance"]
        if case.get("model"):
            for name in ("gamma", "beta", "moving_mean", "moving_variance"):
                _unchanged(
                    f"{name} after one train_on_batch step of a model with the frozen layer",
                    outputs[f"{key}/fit/{name}"],
                    case[name],
                    frozen_hint
                    if name.startswith("moving")
                    else "a frozen layer's weights are not trained",
                )
            lines.append(
                f"{_describe(case)}, frozen in a model: one train_on_batch step left "
                "gamma, beta and the moving statistics unchanged"
            )
            # Compared with the student's own layer that was never frozen, so that a mistake
            # in the training-mode formula costs the points of that part only.
            lines.append(
                "then layer.trainable = True; layer(x, training=True) is the output "
                "of a layer that was never frozen: "
                + assert_close(
                    "out (training=True) after layer.trainable = True",
                    outputs[f"{key}/out"],
                    outputs[f"{key}/never_frozen"],
                    rtol=1e-6,
                    atol=1e-6,
                    hints=[
                        (
                            "read self.trainable in call each time, not once in __init__",
                            _transform(x, axis, mm, mv, gamma, beta, eps),
                        )
                    ],
                )
            )
            continue
        ref = _keras_bn(case)
        ref.trainable = False
        expected = _np(ref(x, training=True))
        for name in ("moving_mean", "moving_variance"):  # the state first, as at inference
            _unchanged(
                f"{name} after layer(x, training=True) with trainable=False",
                outputs[f"{key}/after/{name}"],
                case[name],
                frozen_hint,
            )
        lines.append(
            f"{_describe(case)}, trainable=False, training=True: "
            + assert_close(
                "out (trainable=False, training=True)",
                outputs[f"{key}/out"],
                expected,
                **TOL,
                hints=[
                    (
                        "a frozen layer uses its moving statistics, even when training=True",
                        _transform(x, axis, mean, var, gamma, beta, eps),
                    )
                ],
            )
        )
        lines.append("    the moving statistics are unchanged")
    return lines
