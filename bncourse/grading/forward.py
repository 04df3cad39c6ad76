"""Judges of ps1-forward: BN's forward pass in NumPy, the moving statistics, inference.

The inputs and the calls of the student's code are in
:mod:`bncourse.grading.student.ps1_forward`; the judges here compare what those calls
returned with :mod:`bncourse.numpy_bn`.
"""

from __future__ import annotations

import numpy as np

from .compare import assert_close
from .registry import JudgeRegistry, reference
from .student.calls import cases_of

JUDGES = JudgeRegistry("ps1-forward")


def _numpy_bn():
    return reference("bncourse.numpy_bn")


def _mean_var(x):
    """Reference batch statistics, in x's dtype (biased variance)."""
    _, cache = _numpy_bn().batchnorm_forward(x, np.ones(x.shape[1]), np.zeros(x.shape[1]))
    return cache["mean"].astype(x.dtype), cache["var"].astype(x.dtype)


def _tol(dtype):
    return {"rtol": 1e-4, "atol": 1e-4} if dtype == np.float32 else {"rtol": 1e-7, "atol": 1e-9}


# ---------------------------------------------------------------- batch mean and variance

@JUDGES.judge("mean_var_visible")
@JUDGES.judge("mean_var")
def _judge_mean_var(inputs, outputs):
    lines = []
    for key, x in inputs.items():
        mean, var = _mean_var(x)
        n = x.shape[0]
        tol = _tol(x.dtype)
        lines.append(f"mean of x {x.shape} {x.dtype}: "
                     + assert_close("mean", outputs[f"{key}/mean"], mean, **tol))
        lines.append(f"var of x {x.shape} {x.dtype}: " + assert_close(
            "var", outputs[f"{key}/var"], var, **tol,
            hints=[("you divide by N - 1 (the unbiased variance); BN divides by N",
                    var * n / (n - 1)),
                   ("you return the standard deviation instead of the variance",
                    np.sqrt(var)),
                   ("you compute the statistics per sample (axis=1) instead of per feature",
                    x.var(axis=1))]))
    return lines


# ---------------------------------------------------------------- training-mode forward

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
            ("you leave out gamma and beta (return x_hat, not gamma * x_hat + beta)",
             xhat.astype(x.dtype)),
            ("you add epsilon outside the square root: sqrt(var) + epsilon",
             (gamma * (x - mean) / (np.sqrt(var) + eps) + beta).astype(x.dtype)),
            ("you use the unbiased variance (divide by N - 1)",
             (gamma * (x - mean) / np.sqrt(var * n / (n - 1) + eps) + beta).astype(x.dtype)),
            ("you swap gamma and beta", (beta * xhat + gamma).astype(x.dtype)),
            ("you ignore the epsilon argument and use 1e-3",
             (gamma * (x - mean) / np.sqrt(var + 1e-3) + beta).astype(x.dtype)),
        ]
        if eps == 1e-3:
            hints.pop()
        lines.append(f"out for x {x.shape} {x.dtype}, epsilon={eps:g}: " + assert_close(
            "out", outputs[f"{group}/out"], expected, **_tol(x.dtype), hints=hints))
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
            lines.append(f"{stat}, momentum={m:g}: " + assert_close(
                stat, outputs[f"{group}/{stat}"], expected, rtol=1e-7, atol=1e-9,
                hints=[("you apply momentum the wrong way round (PyTorch's convention: "
                        "old * (1 - momentum) + batch * momentum); this course follows Keras",
                        old * (1 - m) + batch * m),
                       ("you use momentum 0.9 rather than the default 0.99",
                        old * 0.9 + batch * 0.1)] if m == 0.99 else
                [("you apply momentum the wrong way round (PyTorch's convention: "
                  "old * (1 - momentum) + batch * momentum); this course follows Keras",
                  old * (1 - m) + batch * m)]))
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
        hints = [("you add epsilon outside the square root",
                  (gamma * (x - mm) / (np.sqrt(mv) + eps) + beta).astype(x.dtype))]
        if x.shape[0] > 1:
            bm, bv = x.mean(axis=0), x.var(axis=0)
            hints.append(("you normalise with the batch's statistics; inference uses the "
                          "moving ones", (gamma * (x - bm) / np.sqrt(bv + eps) + beta)
                          .astype(x.dtype)))
        lines.append(f"out for x {x.shape} {x.dtype}: " + assert_close(
            "out", outputs[f"{group}/out"], expected, **_tol(x.dtype), hints=hints))
    return lines


# ---------------------------------------------------------------- the layer with state

@JUDGES.judge("layer_visible")
@JUDGES.judge("layer")
def _judge_layer(inputs, outputs):
    x, momentum, steps = inputs["x"], inputs["momentum"], int(inputs["steps"])
    d = x.shape[1]
    ref = _numpy_bn().BatchNorm(d, momentum=momentum, dtype=x.dtype)
    lines = []
    for attr in ("gamma", "beta", "moving_mean", "moving_var"):
        assert_close(f"the initial {attr}", outputs[f"init/{attr}"], getattr(ref, attr),
                     rtol=0, atol=0, check_dtype=False)
    lines.append("initial gamma = 1, beta = 0, moving_mean = 0, moving_var = 1: exact")
    for step in range(steps):
        batch = x[step::steps] if steps > 1 else x
        before = (ref.moving_mean.copy(), ref.moving_var.copy())
        expected = ref(batch, training=True)
        lines.append(f"training call {step + 1}, out: " + assert_close(
            "out (training=True)", outputs[f"train{step}/out"], expected))
        for attr, old, stat in (("moving_mean", before[0], batch.mean(axis=0)),
                                ("moving_var", before[1], batch.var(axis=0))):
            lines.append(f"training call {step + 1}, {attr}: " + assert_close(
                f"{attr} after training call {step + 1}", outputs[f"train{step}/{attr}"],
                getattr(ref, attr), check_dtype=False,
                hints=[("you apply momentum the wrong way round",
                        old * (1 - momentum) + stat * momentum),
                       ("you do not update the moving statistics in training", old)]))
    expected = ref(x)
    last_mean, last_var = ref.moving_mean, ref.moving_var
    mean, var = x.mean(axis=0), x.var(axis=0)
    lines.append("inference call, out: " + assert_close(
        "out (training=False)", outputs["infer/out"], expected,
        hints=[("you normalise with the batch's statistics at inference",
                (x - mean) / np.sqrt(var + 1e-3))]))
    for attr, stat in (("moving_mean", mean), ("moving_var", var)):
        assert_close(
            f"{attr} after an inference call", outputs[f"infer/{attr}"], getattr(ref, attr),
            check_dtype=False,
            hints=[("you update the moving statistics at inference too; they must change "
                    "only in training", getattr(ref, attr) * momentum + stat * (1 - momentum))])
    lines.append(f"moving statistics unchanged by inference: {last_mean.shape} "
                 f"and {last_var.shape} arrays as expected")
    return lines
