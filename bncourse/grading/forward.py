"""Judges of ps1-forward: BN's forward pass in NumPy, the moving statistics, inference.

The inputs and the calls of the student's code are in
:mod:`bncourse.grading.student.ps1_forward`; the judges here compare what those calls
returned with :mod:`bncourse.numpy_bn`.
"""

from __future__ import annotations

import numpy as np

from .compare import assert_close, carried_forward, own_wrong
from .registry import JudgeRegistry, reference
from .student.calls import cases_of
from .student.messages import CheckFailed, depends_on

JUDGES = JudgeRegistry("ps1-forward")


def _numpy_bn():
    return reference("bncourse.numpy_bn")


def _mean_var(x):
    """Reference batch statistics, in x's dtype (biased variance)."""
    _, cache = _numpy_bn().batchnorm_forward(x, np.ones(x.shape[1]), np.zeros(x.shape[1]))
    return cache["mean"].astype(x.dtype), cache["var"].astype(x.dtype)


def _tol(dtype):
    return {"rtol": 1e-4, "atol": 1e-4} if dtype == np.float32 else {"rtol": 1e-7, "atol": 1e-9}


UNBIASED = "you divide by N - 1 (the unbiased variance); BN divides by N"
PER_SAMPLE = "you take statistics per sample (axis=1); BN's are per feature (axis=0)"
EPS_OUTSIDE = "you add epsilon outside the square root: sqrt(var) + epsilon"
REVERSED = "momentum reversed: Keras keeps old * momentum + new * (1 - momentum)"


def carried(name, actual, expected, own_expected, wrong, *, hints=(), **tol) -> str:
    """:func:`~.compare.carried_forward` for one array of this problem set."""
    return carried_forward(
        name,
        lambda: assert_close(name, actual, expected, hints=hints, **tol),
        None if own_expected is None else lambda: assert_close(name, actual, own_expected, **tol),
        wrong,
    )


def raise_for(raised, name: str, wrong: list):
    """The failure of a part whose code raised: blamed on the wrong earlier functions it
    uses, if any, else the error itself."""
    if wrong:
        raise depends_on(name, " and ".join(wrong))
    raise CheckFailed(f"{name} raised {raised}")


# ---------------------------------------------------------------- batch mean and variance


@JUDGES.judge("mean_var_visible")
@JUDGES.judge("mean_var")
def _judge_mean_var(inputs, outputs):
    lines = []
    for key, x in inputs.items():
        mean, var = _mean_var(x)
        n = x.shape[0]
        tol = _tol(x.dtype)
        lines.append(
            f"mean of x {x.shape} {x.dtype}: "
            + assert_close(
                "mean", outputs[f"{key}/mean"], mean, **tol, hints=[(PER_SAMPLE, x.mean(axis=1))]
            )
        )
        lines.append(
            f"var of x {x.shape} {x.dtype}: "
            + assert_close(
                "var",
                outputs[f"{key}/var"],
                var,
                **tol,
                hints=[
                    (UNBIASED, var * n / (n - 1)),
                    ("you return the standard deviation, not the variance", np.sqrt(var)),
                    (PER_SAMPLE, x.var(axis=1)),
                ],
            )
        )
    return lines


# ---------------------------------------------------------------- training-mode forward


def _own_stats(a, group, outputs, x):
    """The student's batch_mean_var on this case's x, and whether it is wrong."""
    if f"{group}/own_mean" not in outputs:
        return None, None
    own = {"mean": outputs[f"{group}/own_mean"], "var": outputs[f"{group}/own_var"]}
    mean, var = _mean_var(x)
    return own, own_wrong("batch_mean_var", own, {"mean": mean, "var": var}, **_tol(x.dtype))


def _bn(x, mean, var, gamma, beta, eps):
    mean, var = np.asarray(mean, np.float64), np.asarray(var, np.float64)
    return (gamma * (x - mean) / np.sqrt(var + eps) + beta).astype(x.dtype)


@JUDGES.judge("forward_visible")
@JUDGES.judge("forward")
def _judge_forward(inputs, outputs):
    lines = []
    for group, a in cases_of(inputs).items():
        x, gamma, beta, eps = a["x"], a["gamma"], a["beta"], a["epsilon"]
        expected, cache = _numpy_bn().batchnorm_forward(x, gamma, beta, eps)
        mean, var = cache["mean"], cache["var"]
        n = x.shape[0]
        xhat = (x - mean) / np.sqrt(var + eps)
        hints = [
            (
                "you leave out gamma and beta (return x_hat, not gamma * x_hat + beta)",
                xhat.astype(x.dtype),
            ),
            (EPS_OUTSIDE, (gamma * (x - mean) / (np.sqrt(var) + eps) + beta).astype(x.dtype)),
            (UNBIASED, _bn(x, mean, var * n / (n - 1), gamma, beta, eps)),
            ("you swap gamma and beta", (beta * xhat + gamma).astype(x.dtype)),
            ("you ignore the epsilon argument and use 1e-3", _bn(x, mean, var, gamma, beta, 1e-3)),
        ]
        if eps == 1e-3:
            hints.pop()
        own, wrong = _own_stats(a, group, outputs, x)
        if f"{group}/raised" in outputs:
            raise_for(outputs[f"{group}/raised"], "batchnorm_forward", [wrong] if wrong else [])
        own_expected = None if not wrong else _bn(x, own["mean"], own["var"], gamma, beta, eps)
        lines.append(
            f"out for x {x.shape} {x.dtype}, epsilon={eps:g}: "
            + carried(
                "out",
                outputs[f"{group}/out"],
                expected,
                own_expected,
                [wrong] if wrong else [],
                hints=hints,
                **_tol(x.dtype),
            )
        )
    return lines


# ---------------------------------------------------------------- moving statistics


@JUDGES.judge("moving_visible")
@JUDGES.judge("moving")
def _judge_moving(inputs, outputs):
    lines = []
    for group, a in cases_of(inputs).items():
        m = a["momentum"]
        for stat, batch in (("moving_mean", a["mean"]), ("moving_var", a["var"])):
            old = a[stat]
            expected = old * m + batch * (1 - m)
            hints = [(REVERSED, old * (1 - m) + batch * m)]
            if m == 0.99:
                hints.append(
                    ("you use momentum 0.9 rather than the default 0.99", old * 0.9 + batch * 0.1)
                )
            lines.append(
                f"{stat}, momentum={m:g}: "
                + assert_close(
                    stat, outputs[f"{group}/{stat}"], expected, rtol=1e-7, atol=1e-9, hints=hints
                )
            )
    return lines


# ---------------------------------------------------------------- inference mode


@JUDGES.judge("inference_visible")
@JUDGES.judge("inference")
def _judge_inference(inputs, outputs):
    lines = []
    for group, a in cases_of(inputs).items():
        x, gamma, beta, eps = a["x"], a["gamma"], a["beta"], a["epsilon"]
        mm, mv = a["moving_mean"], a["moving_var"]
        expected = _numpy_bn().batchnorm_inference(x, gamma, beta, mm, mv, eps)
        hints = [
            (
                "you add epsilon outside the square root",
                (gamma * (x - mm) / (np.sqrt(mv) + eps) + beta).astype(x.dtype),
            )
        ]
        if x.shape[0] > 1:
            hints.append(
                (
                    "you use the batch's statistics; inference uses the moving ones",
                    _bn(x, x.mean(axis=0), x.var(axis=0), gamma, beta, eps),
                )
            )
        lines.append(
            f"out for x {x.shape} {x.dtype}: "
            + assert_close("out", outputs[f"{group}/out"], expected, **_tol(x.dtype), hints=hints)
        )
    return lines


# ---------------------------------------------------------------- the layer with state


def _own_layer_wrong(outputs, x, momentum, steps, tol) -> list:
    """Which of the student's functions the composed layer (``own/...``) shows wrong, as far
    as the composition ran."""
    d = x.shape[1]
    gamma, beta = np.ones(d), np.zeros(d)
    wrong: list = []

    def note(name, got, expected):
        if name not in wrong and own_wrong(name, got, expected, **tol):
            wrong.append(name)

    for step in range(steps):
        batch = x[step::steps] if steps > 1 else x
        p = f"own/train{step}/"
        if p + "mean" not in outputs:
            return wrong
        mean, var = outputs[p + "mean"], outputs[p + "var"]
        note(
            "batch_mean_var",
            {"mean": mean, "var": var},
            {"mean": batch.mean(axis=0), "var": batch.var(axis=0)},
        )
        if p + "out" not in outputs or "batch_mean_var" in wrong:
            return wrong
        note(
            "batchnorm_forward",
            {"out": outputs[p + "out"]},
            {"out": _bn(batch, mean, var, gamma, beta, 1e-3)},
        )
        note(
            "update_moving_stats",
            {"moving_mean": outputs[p + "moving_mean"], "moving_var": outputs[p + "moving_var"]},
            {
                "moving_mean": outputs[p + "old_mean"] * momentum + mean * (1 - momentum),
                "moving_var": outputs[p + "old_var"] * momentum + var * (1 - momentum),
            },
        )
    if "own/infer/out" in outputs:
        last = f"own/train{steps - 1}/"
        note(
            "batchnorm_inference",
            {"out": outputs["own/infer/out"]},
            {
                "out": _bn(
                    x,
                    outputs[last + "moving_mean"],
                    outputs[last + "moving_var"],
                    gamma,
                    beta,
                    1e-3,
                )
            },
        )
    return wrong


def _no_own(key):
    return None


@JUDGES.judge("layer_visible")
@JUDGES.judge("layer")
def _judge_layer(inputs, outputs):
    x, momentum, steps = inputs["x"], inputs["momentum"], int(inputs["steps"])
    d = x.shape[1]
    ref = _numpy_bn().BatchNorm(d, momentum=momentum, dtype=x.dtype)
    tol = {"rtol": 1e-5, "atol": 1e-6}
    wrong = _own_layer_wrong(outputs, x, momentum, steps, tol)
    if "raised" in outputs:
        raise_for(outputs["raised"], "BatchNorm1d", wrong)
    lines = []
    for attr in ("gamma", "beta", "moving_mean", "moving_var"):
        assert_close(
            f"the initial {attr}",
            outputs[f"init/{attr}"],
            getattr(ref, attr),
            rtol=0,
            atol=0,
            check_dtype=False,
        )
    lines.append("initial gamma = 1, beta = 0, moving_mean = 0, moving_var = 1: exact")

    def own(key):
        return outputs.get(f"own/{key}") if wrong else None

    if wrong and "own/infer/out" not in outputs:  # the composition stopped: nothing to carry
        own = _no_own

    for step in range(steps):
        batch = x[step::steps] if steps > 1 else x
        before = (ref.moving_mean.copy(), ref.moving_var.copy())
        expected = ref(batch, training=True)
        # the state first: a wrong update explains a wrong output, not the other way round
        for attr, old, stat in (
            ("moving_mean", before[0], batch.mean(axis=0)),
            ("moving_var", before[1], batch.var(axis=0)),
        ):
            lines.append(
                f"training call {step + 1}, {attr}: "
                + carried(
                    f"{attr} after call {step + 1}",
                    outputs[f"train{step}/{attr}"],
                    getattr(ref, attr),
                    own(f"train{step}/{attr}"),
                    wrong,
                    check_dtype=False,
                    hints=[
                        (REVERSED, old * (1 - momentum) + stat * momentum),
                        ("you do not update the moving statistics in training", old),
                    ],
                    **tol,
                )
            )
        lines.append(
            f"training call {step + 1}, out: "
            + carried(
                "out (training=True)",
                outputs[f"train{step}/out"],
                expected,
                own(f"train{step}/out"),
                wrong,
                check_dtype=False,
                **tol,
            )
        )
    expected = ref(x)
    mean, var = x.mean(axis=0), x.var(axis=0)
    last = f"train{steps - 1}/"
    for attr, stat in (("moving_mean", mean), ("moving_var", var)):
        carried(
            f"{attr} after inference",
            outputs[f"infer/{attr}"],
            getattr(ref, attr),
            own(last + attr),
            wrong,
            check_dtype=False,
            hints=[
                (
                    "inference updates the moving statistics; only training may",
                    getattr(ref, attr) * momentum + stat * (1 - momentum),
                )
            ],
            **tol,
        )
    lines.append(
        f"moving statistics unchanged by inference: {ref.moving_mean.shape} arrays as expected"
    )
    lines.append(
        "inference call, out: "
        + carried(
            "out (training=False)",
            outputs["infer/out"],
            expected,
            own("infer/out"),
            wrong,
            check_dtype=False,
            hints=[
                (
                    "inference normalises with the batch's statistics",
                    (x - mean) / np.sqrt(var + 1e-3),
                )
            ],
            **tol,
        )
    )
    return lines
