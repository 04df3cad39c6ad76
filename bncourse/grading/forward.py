"""Checks of ps1-forward: BN's forward pass in NumPy, the moving statistics, inference."""

from __future__ import annotations

import numpy as np

from .calls import arrays, call, cases_of, off_centre
from .compare import assert_close
from .registry import CheckRegistry, reference

CHECKS = CheckRegistry("ps1-forward")


def _numpy_bn():
    return reference("bncourse.numpy_bn")


def _params(seed: int, d: int, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return rng.uniform(0.5, 2.0, d).astype(dtype), rng.normal(0, 1, d).astype(dtype)


def _mean_var(x):
    """Reference batch statistics, in x's dtype (biased variance)."""
    _, cache = _numpy_bn().batchnorm_forward(x, np.ones(x.shape[1]), np.zeros(x.shape[1]))
    return cache["mean"].astype(x.dtype), cache["var"].astype(x.dtype)


def _tol(dtype):
    return {"rtol": 1e-4, "atol": 1e-4} if dtype == np.float32 else {"rtol": 1e-7, "atol": 1e-9}


# ---------------------------------------------------------------- batch mean and variance

def _small():
    return {"x": np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 9.0]])}


def _mean_var_cases():
    return {
        "x64": off_centre(1, (64, 7)),
        "x32": off_centre(2, (50, 3), np.float32),
        "x2": np.array([[1.0, -4.0], [3.0, 4.0]]),
    }


def _produce_mean_var(fn, inputs):
    out = {}
    for key, x in inputs.items():
        got = arrays("batch_mean_var", call("batch_mean_var", fn, x), ("mean", "var"))
        out.update({f"{key}/{k}": v for k, v in got.items()})
    return out


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


CHECKS.add("mean_var_visible", "batch_mean_var on a 3 x 2 example",
           _small, _produce_mean_var)(_judge_mean_var)
CHECKS.add("mean_var", "batch_mean_var on off-centre float64 and float32 batches",
           _mean_var_cases, _produce_mean_var)(_judge_mean_var)


# ---------------------------------------------------------------- training-mode forward

def _forward_visible():
    x = off_centre(3, (8, 4), loc=0.0, scale=1.0)
    return {"x": x, "gamma": np.ones(4), "beta": np.zeros(4), "epsilon": 1e-3}


def _forward_cases():
    x = off_centre(4, (32, 5))
    gamma, beta = _params(5, 5)
    x32 = off_centre(6, (16, 3), np.float32)
    gamma32, beta32 = _params(7, 3, np.float32)
    return {
        "a/x": x, "a/gamma": gamma, "a/beta": beta, "a/epsilon": 1e-3,
        "b/x": x32, "b/gamma": gamma32, "b/beta": beta32, "b/epsilon": 1e-3,
        # a large epsilon next to a small variance shows where epsilon goes
        "c/x": off_centre(8, (10, 2), loc=1.0, scale=0.1), "c/gamma": np.ones(2),
        "c/beta": np.zeros(2), "c/epsilon": 0.5,
    }


def _produce_forward(fn, inputs):
    out = {}
    for group, a in cases_of(inputs).items():
        result = call("batchnorm_forward", fn, a["x"], a["gamma"], a["beta"],
                      epsilon=a["epsilon"])
        out[f"{group}/out"] = arrays("batchnorm_forward", result, ("out",))["out"]
    return out


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


CHECKS.add("forward_visible", "batchnorm_forward with gamma = 1 and beta = 0",
           _forward_visible, _produce_forward)(_judge_forward)
CHECKS.add("forward", "batchnorm_forward with learned gamma and beta, float32, epsilon",
           _forward_cases, _produce_forward)(_judge_forward)


# ---------------------------------------------------------------- moving statistics

def _moving_visible():
    return {"a/moving_mean": np.zeros(3), "a/moving_var": np.ones(3),
            "a/mean": np.array([1.0, 2.0, 3.0]), "a/var": np.array([4.0, 0.5, 1.0]),
            "a/momentum": 0.9}


def _moving_cases():
    rng = np.random.default_rng(9)
    cases = {}
    for name, momentum in (("a", 0.99), ("b", 0.0), ("c", 1.0), ("d", 0.75)):
        cases.update({
            f"{name}/moving_mean": rng.normal(0, 1, 4), f"{name}/moving_var": rng.uniform(0.5, 2, 4),
            f"{name}/mean": rng.normal(3, 1, 4), f"{name}/var": rng.uniform(0.1, 5, 4),
            f"{name}/momentum": momentum,
        })
    return cases


def _produce_moving(fn, inputs):
    out = {}
    for group, a in cases_of(inputs).items():
        args = (a["moving_mean"], a["moving_var"], a["mean"], a["var"])
        if a["momentum"] == 0.99:  # the default must be Keras's 0.99
            result = call("update_moving_stats", fn, *args)
        else:
            result = call("update_moving_stats", fn, *args, momentum=a["momentum"])
        got = arrays("update_moving_stats", result, ("moving_mean", "moving_var"))
        out.update({f"{group}/{k}": v for k, v in got.items()})
    return out


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


CHECKS.add("moving_visible", "update_moving_stats with momentum 0.9",
           _moving_visible, _produce_moving)(_judge_moving)
CHECKS.add("moving", "update_moving_stats with the default momentum, 0, 1 and 0.75",
           _moving_cases, _produce_moving)(_judge_moving)


# ---------------------------------------------------------------- inference mode

def _inference_visible():
    return {"x": np.array([[1.0, 2.0], [3.0, 6.0]]), "gamma": np.ones(2), "beta": np.zeros(2),
            "moving_mean": np.array([1.0, 2.0]), "moving_var": np.array([4.0, 16.0]),
            "epsilon": 1e-3}


def _inference_cases():
    rng = np.random.default_rng(11)
    gamma, beta = _params(12, 6, np.float32)
    return {
        "a/x": off_centre(13, (20, 6), np.float32), "a/gamma": gamma, "a/beta": beta,
        "a/moving_mean": rng.normal(5, 1, 6).astype(np.float32),
        "a/moving_var": rng.uniform(50, 150, 6).astype(np.float32), "a/epsilon": 1e-3,
        # one sample: inference must work on a batch of one
        "b/x": off_centre(14, (1, 3)), "b/gamma": np.ones(3), "b/beta": np.zeros(3),
        "b/moving_mean": np.array([0.5, 1.0, -1.0]), "b/moving_var": np.array([0.01, 1.0, 2.0]),
        "b/epsilon": 0.05,
    }


def _produce_inference(fn, inputs):
    out = {}
    for group, a in cases_of(inputs).items():
        result = call("batchnorm_inference", fn, a["x"], a["gamma"], a["beta"],
                      a["moving_mean"], a["moving_var"], epsilon=a["epsilon"])
        out[f"{group}/out"] = arrays("batchnorm_inference", result, ("out",))["out"]
    return out


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


CHECKS.add("inference_visible", "batchnorm_inference on a 2 x 2 example",
           _inference_visible, _produce_inference)(_judge_inference)
CHECKS.add("inference", "batchnorm_inference on float32 data and on a batch of one",
           _inference_cases, _produce_inference)(_judge_inference)


# ---------------------------------------------------------------- the layer with state

def _layer_visible():
    return {"x": off_centre(15, (6, 3)), "momentum": 0.99, "steps": 1}


def _layer_cases():
    return {"x": off_centre(16, (10, 4)), "momentum": 0.8, "steps": 3}


def _produce_layer(cls, inputs):
    if not isinstance(cls, type):
        raise AssertionError(f"BatchNorm1d: expected a class, got {type(cls).__name__}")
    x, momentum, steps = inputs["x"], inputs["momentum"], int(inputs["steps"])
    d = x.shape[1]
    layer = cls(d) if momentum == 0.99 else cls(d, momentum=momentum)
    out = {}
    for attr in ("gamma", "beta", "moving_mean", "moving_var"):
        if not hasattr(layer, attr):
            raise AssertionError(f"BatchNorm1d has no attribute {attr!r}")
        out[f"init/{attr}"] = np.copy(arrays(f"BatchNorm1d.{attr}", getattr(layer, attr),
                                             (attr,))[attr])
    for step in range(steps):
        batch = x[step::steps] if steps > 1 else x
        y = call("BatchNorm1d.__call__", layer, batch, training=True)
        out[f"train{step}/out"] = arrays("BatchNorm1d(x, training=True)", y, ("out",))["out"]
        for attr in ("moving_mean", "moving_var"):
            out[f"train{step}/{attr}"] = np.copy(require_attr(layer, attr))
    y = call("BatchNorm1d.__call__", layer, x)
    out["infer/out"] = arrays("BatchNorm1d(x)", y, ("out",))["out"]
    for attr in ("moving_mean", "moving_var"):
        out[f"infer/{attr}"] = np.copy(require_attr(layer, attr))
    return out


def require_attr(layer, attr):
    """A layer's array attribute, checked to be a numeric array."""
    return arrays(f"BatchNorm1d.{attr}", getattr(layer, attr), (attr,))[attr]


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


CHECKS.add("layer_visible", "BatchNorm1d: initial values and one training call",
           _layer_visible, _produce_layer)(_judge_layer)
CHECKS.add("layer", "BatchNorm1d: momentum, three training calls, then inference",
           _layer_cases, _produce_layer)(_judge_layer)
