"""Producers of ps1-forward: the inputs of each check and the calls of the student's code."""

from __future__ import annotations

import numpy as np

from .calls import arrays, call, cases_of, off_centre
from .messages import student_frames
from .producers import ProducerRegistry

PRODUCERS = ProducerRegistry("ps1-forward")


def _params(seed: int, d: int, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return rng.uniform(0.5, 2.0, d).astype(dtype), rng.normal(0, 1, d).astype(dtype)


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


PRODUCERS.add("mean_var_visible", "batch_mean_var on a 3 x 2 example", _small, _produce_mean_var)
PRODUCERS.add(
    "mean_var",
    "batch_mean_var on off-centre float64 and float32 batches",
    _mean_var_cases,
    _produce_mean_var,
)


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
        "a/x": x,
        "a/gamma": gamma,
        "a/beta": beta,
        "a/epsilon": 1e-3,
        "b/x": x32,
        "b/gamma": gamma32,
        "b/beta": beta32,
        "b/epsilon": 1e-3,
        # a large epsilon next to a small variance shows where epsilon goes
        "c/x": off_centre(8, (10, 2), loc=1.0, scale=0.1),
        "c/gamma": np.ones(2),
        "c/beta": np.zeros(2),
        "c/epsilon": 0.5,
    }


def own_results(fn, labels: tuple, *args, **kwargs) -> dict | None:
    """What the student's earlier function ``fn`` returns for ``args`` (``{label: array}``),
    or None when it is missing, raises or returns something else than arrays: the judge
    then grades the later part against the reference alone."""
    if fn is None or not callable(fn):
        return None
    try:
        return arrays("", call("", fn, *args, **kwargs), labels)
    except Exception:  # any failure of an earlier part is that part's own to report
        return None


def or_raised(produce, *args) -> dict:
    """``produce(*args)``, or ``{"raised": ...}`` when the student's code raised (not a check's
    own AssertionError): the error as a string array, with its line, for the judge, which
    blames it on the student's wrong earlier functions when there are any."""
    try:
        return produce(*args)
    except AssertionError:
        raise
    except Exception as err:
        frames = student_frames(err)
        where = f" (line {frames[-1].lineno} of {frames[-1].name})" if frames else ""
        return {"raised": np.array(f"{type(err).__name__}: {err}"[:200] + where)}


def _produce_forward(fn, inputs, uses):
    out = {}
    for group, a in cases_of(inputs).items():
        stats = own_results(uses["batch_mean_var"], ("mean", "var"), a["x"])
        for k, v in (stats or {}).items():
            out[f"{group}/own_{k}"] = v
        got = or_raised(
            lambda a=a: {
                "out": arrays(
                    "batchnorm_forward",
                    call(
                        "batchnorm_forward", fn, a["x"], a["gamma"], a["beta"], epsilon=a["epsilon"]
                    ),
                    ("out",),
                )["out"]
            }
        )
        out.update({f"{group}/{k}": v for k, v in got.items()})
    return out


PRODUCERS.add(
    "forward_visible",
    "batchnorm_forward with gamma = 1 and beta = 0",
    _forward_visible,
    _produce_forward,
    depends=("batch_mean_var",),
)
PRODUCERS.add(
    "forward",
    "batchnorm_forward with learned gamma and beta, float32, epsilon",
    _forward_cases,
    _produce_forward,
    depends=("batch_mean_var",),
)


# ---------------------------------------------------------------- moving statistics


def _moving_visible():
    return {
        "a/moving_mean": np.zeros(3),
        "a/moving_var": np.ones(3),
        "a/mean": np.array([1.0, 2.0, 3.0]),
        "a/var": np.array([4.0, 0.5, 1.0]),
        "a/momentum": 0.9,
    }


def _moving_cases():
    rng = np.random.default_rng(9)
    cases = {}
    for name, momentum in (("a", 0.99), ("b", 0.0), ("c", 1.0), ("d", 0.75)):
        cases.update(
            {
                f"{name}/moving_mean": rng.normal(0, 1, 4),
                f"{name}/moving_var": rng.uniform(0.5, 2, 4),
                f"{name}/mean": rng.normal(3, 1, 4),
                f"{name}/var": rng.uniform(0.1, 5, 4),
                f"{name}/momentum": momentum,
            }
        )
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


PRODUCERS.add(
    "moving_visible", "update_moving_stats with momentum 0.9", _moving_visible, _produce_moving
)
PRODUCERS.add(
    "moving",
    "update_moving_stats with the default momentum, 0, 1 and 0.75",
    _moving_cases,
    _produce_moving,
)


# ---------------------------------------------------------------- inference mode


def _inference_visible():
    return {
        "x": np.array([[1.0, 2.0], [3.0, 6.0]]),
        "gamma": np.ones(2),
        "beta": np.zeros(2),
        "moving_mean": np.array([1.0, 2.0]),
        "moving_var": np.array([4.0, 16.0]),
        "epsilon": 1e-3,
    }


def _inference_cases():
    rng = np.random.default_rng(11)
    gamma, beta = _params(12, 6, np.float32)
    return {
        "a/x": off_centre(13, (20, 6), np.float32),
        "a/gamma": gamma,
        "a/beta": beta,
        "a/moving_mean": rng.normal(5, 1, 6).astype(np.float32),
        "a/moving_var": rng.uniform(50, 150, 6).astype(np.float32),
        "a/epsilon": 1e-3,
        # one sample: inference must work on a batch of one
        "b/x": off_centre(14, (1, 3)),
        "b/gamma": np.ones(3),
        "b/beta": np.zeros(3),
        "b/moving_mean": np.array([0.5, 1.0, -1.0]),
        "b/moving_var": np.array([0.01, 1.0, 2.0]),
        "b/epsilon": 0.05,
    }


def _produce_inference(fn, inputs):
    out = {}
    for group, a in cases_of(inputs).items():
        result = call(
            "batchnorm_inference",
            fn,
            a["x"],
            a["gamma"],
            a["beta"],
            a["moving_mean"],
            a["moving_var"],
            epsilon=a["epsilon"],
        )
        out[f"{group}/out"] = arrays("batchnorm_inference", result, ("out",))["out"]
    return out


PRODUCERS.add(
    "inference_visible",
    "batchnorm_inference on a 2 x 2 example",
    _inference_visible,
    _produce_inference,
)
PRODUCERS.add(
    "inference",
    "batchnorm_inference on float32 data and on a batch of one",
    _inference_cases,
    _produce_inference,
)


# ---------------------------------------------------------------- the layer with state


def _layer_visible():
    return {"x": off_centre(15, (6, 3)), "momentum": 0.99, "steps": 1}


def _layer_cases():
    return {"x": off_centre(16, (10, 4)), "momentum": 0.8, "steps": 3}


LAYER_USES = ("batch_mean_var", "update_moving_stats", "batchnorm_forward", "batchnorm_inference")


def _own_layer(uses, x, momentum, steps) -> dict:
    """The layer's calls composed from the student's own functions, as part 5 asks: what a
    BatchNorm1d built on them returns, as far as they run."""
    d = x.shape[1]
    gamma, beta = np.ones(d), np.zeros(d)
    moving_mean, moving_var = np.zeros(d), np.ones(d)
    out = {}
    for step in range(steps):
        batch = x[step::steps] if steps > 1 else x
        p = f"own/train{step}/"
        stats = own_results(uses["batch_mean_var"], ("mean", "var"), batch)
        if stats is None:
            return out
        out.update({p + "mean": stats["mean"], p + "var": stats["var"]})
        y = own_results(uses["batchnorm_forward"], ("out",), batch, gamma, beta)
        new = own_results(
            uses["update_moving_stats"],
            ("moving_mean", "moving_var"),
            moving_mean,
            moving_var,
            stats["mean"],
            stats["var"],
            momentum=momentum,
        )
        if y is None or new is None:
            return out
        out.update(
            {
                p + "out": y["out"],
                p + "old_mean": moving_mean,
                p + "old_var": moving_var,
                p + "moving_mean": new["moving_mean"],
                p + "moving_var": new["moving_var"],
            }
        )
        moving_mean, moving_var = new["moving_mean"], new["moving_var"]
    y = own_results(uses["batchnorm_inference"], ("out",), x, gamma, beta, moving_mean, moving_var)
    if y is not None:
        out["own/infer/out"] = y["out"]
    return out


def _produce_layer(cls, inputs, uses):
    if not isinstance(cls, type):
        raise AssertionError(f"BatchNorm1d: expected a class, got {type(cls).__name__}")
    x, momentum, steps = inputs["x"], inputs["momentum"], int(inputs["steps"])
    d = x.shape[1]
    layer = cls(d) if momentum == 0.99 else cls(d, momentum=momentum)
    out = {}
    for attr in ("gamma", "beta", "moving_mean", "moving_var"):
        if not hasattr(layer, attr):
            raise AssertionError(f"BatchNorm1d has no attribute {attr!r}")
        out[f"init/{attr}"] = np.copy(
            arrays(f"BatchNorm1d.{attr}", getattr(layer, attr), (attr,))[attr]
        )
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
    out.update(_own_layer(uses, x, momentum, steps))
    return out


def _produce_layer_or_error(cls, inputs, uses):
    """:func:`_produce_layer`, with an error of the student's layer handed to the judge
    (:func:`or_raised`) next to what the student's own functions give."""
    out = or_raised(_produce_layer, cls, inputs, uses)
    if "raised" in out:
        out.update(_own_layer(uses, inputs["x"], inputs["momentum"], int(inputs["steps"])))
    return out


def require_attr(layer, attr):
    """A layer's array attribute, checked to be a numeric array."""
    return arrays(f"BatchNorm1d.{attr}", getattr(layer, attr), (attr,))[attr]


PRODUCERS.add(
    "layer_visible",
    "BatchNorm1d: initial values and one training call",
    _layer_visible,
    _produce_layer_or_error,
    depends=LAYER_USES,
)
PRODUCERS.add(
    "layer",
    "BatchNorm1d: momentum, three training calls, then inference",
    _layer_cases,
    _produce_layer_or_error,
    depends=LAYER_USES,
)
