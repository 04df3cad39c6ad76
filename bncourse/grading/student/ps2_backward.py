"""Producers of ps2-backward: the inputs of each check and the calls of the student's code.

Every case is seeded; an input ``h`` of -1 means "leave ``h`` at its default", and an
``epsilon`` of 1e-3 is not passed, so that the defaults are checked too.
"""

from __future__ import annotations

import numpy as np

from .calls import arrays, call, cases_of, flatten_cases
from .producers import ProducerRegistry

PRODUCERS = ProducerRegistry("ps2-backward")

DEFAULT_EPSILON = 1e-3


# ---------------------------------------------------------------- inputs


def _case(
    seed: int, shape, *, loc=0.0, scale=1.0, epsilon=DEFAULT_EPSILON, dtype=np.float64
) -> dict:
    """x and dout of ``shape``, gamma and beta with one value per feature (the last axis)."""
    rng = np.random.default_rng(seed)
    d = shape[-1]
    return {
        "x": rng.normal(loc, scale, size=shape).astype(dtype),
        "gamma": rng.uniform(0.5, 2.0, d).astype(dtype),
        "beta": rng.normal(0.0, 1.0, d).astype(dtype),
        "dout": rng.normal(0.0, 1.0, size=shape).astype(dtype),
        "epsilon": epsilon,
    }


def _visible_2d():
    return flatten_cases({"a": _case(21, (6, 3), loc=1.0, scale=2.0)})


def _hidden_2d():
    return flatten_cases(
        {
            # off-centre data, as Keras's tests use
            "a": _case(22, (32, 5), loc=5.0, scale=10.0),
            # a large epsilon next to a small variance shows whether epsilon is used
            "b": _case(23, (10, 2), loc=1.0, scale=0.1, epsilon=0.5),
            # the smallest batch that BN accepts
            "c": _case(24, (2, 4), loc=-3.0, scale=4.0),
        }
    )


def _closed_cases():
    return flatten_cases(
        {
            "a": _case(25, (32, 5), loc=5.0, scale=10.0),
            "b": _case(26, (10, 2), loc=1.0, scale=0.1, epsilon=0.5),
            # float32 in, float32 out
            "c": _case(27, (64, 3), loc=5.0, scale=10.0, dtype=np.float32),
        }
    )


def _call_with_epsilon(name, fn, args, epsilon):
    """``fn(*args)``, passing ``epsilon`` only when it is not 1e-3, so that the default is
    checked too."""
    if epsilon == DEFAULT_EPSILON:
        return call(name, fn, *args)
    return call(name, fn, *args, epsilon=epsilon)


# ---------------------------------------------------------------- the staged backward


def _produce_staged(keys, upstream=()):
    """A ``produce`` that keeps only ``keys`` of the dict the staged backward returns, and
    the ``upstream`` nodes they are computed from (as ``own_<node>``), when they are arrays:
    the judge grades a node on the student's own upstream nodes (error carried forward)."""

    def produce(fn, inputs):
        out = {}
        for group, a in cases_of(inputs).items():
            result = _call_with_epsilon(
                "batchnorm_backward_staged", fn, (a["dout"], a["x"], a["gamma"]), a["epsilon"]
            )
            if type(result) is not dict:
                raise AssertionError(
                    "batchnorm_backward_staged: expected a dict of gradients such as "
                    f"{{'dx': ..., 'dgamma': ...}}, got {type(result).__name__}"
                )
            for key in keys:
                if key not in result:
                    raise AssertionError(
                        f"the dict returned by batchnorm_backward_staged has no key {key!r}; "
                        f"its keys are {sorted(map(str, result))}"
                    )
                out[f"{group}/{key}"] = arrays("batchnorm_backward_staged", result[key], (key,))[
                    key
                ]
            for key in upstream:
                if type(result.get(key)) is np.ndarray and result[key].dtype.kind == "f":
                    out[f"{group}/own_{key}"] = np.copy(result[key])
        return out

    return produce


for _name, _keys, _upstream, _what in (
    ("staged_params", ("dbeta", "dgamma"), (), "dbeta and dgamma"),
    ("staged_dxhat", ("dxhat",), (), "dxhat"),
    ("staged_dvar", ("dvar",), ("dxhat",), "dvar"),
    ("staged_dmean", ("dmean",), ("dxhat", "dvar"), "dmean"),
    ("staged_dx", ("dx",), ("dxhat", "dvar", "dmean"), "dx"),
):
    PRODUCERS.add(
        f"{_name}_visible",
        f"batchnorm_backward_staged: {_what} on a 6 x 3 batch",
        _visible_2d,
        _produce_staged(_keys, _upstream),
    )
    PRODUCERS.add(
        _name,
        f"batchnorm_backward_staged: {_what} on off-centre data, with a "
        "large epsilon, and on a batch of 2",
        _hidden_2d,
        _produce_staged(_keys, _upstream),
    )


# ---------------------------------------------------------------- the closed form


def _produce_grads(name):
    """A ``produce`` for functions that return ``(dx, dgamma, dbeta)``."""

    def produce(fn, inputs):
        out = {}
        for group, a in cases_of(inputs).items():
            result = _call_with_epsilon(name, fn, (a["dout"], a["x"], a["gamma"]), a["epsilon"])
            got = arrays(name, result, ("dx", "dgamma", "dbeta"))
            out.update({f"{group}/{k}": v for k, v in got.items()})
        return out

    return produce


PRODUCERS.add(
    "closed_visible",
    "batchnorm_backward_closed: dx, dgamma and dbeta on a 6 x 3 batch",
    _visible_2d,
    _produce_grads("batchnorm_backward_closed"),
)
PRODUCERS.add(
    "closed",
    "batchnorm_backward_closed on off-centre data, with a large epsilon, and in float32",
    _closed_cases,
    _produce_grads("batchnorm_backward_closed"),
)


# ---------------------------------------------------------------- finite differences


def _numgrad_visible():
    rng = np.random.default_rng(31)
    return {
        "cube/x": rng.normal(0.0, 1.0, (3, 2)),
        "cube/dout": rng.normal(0.0, 1.0, (3, 2)),
        "cube/h": -1.0,
    }


def _numgrad_cases():
    rng = np.random.default_rng(32)
    return {
        "cube/x": rng.normal(0.0, 1.5, (4, 3)),
        "cube/dout": rng.normal(0.0, 1.0, (4, 3)),
        "cube/h": -1.0,
        "tanh/x": rng.normal(0.0, 1.0, (3, 4)),
        "tanh/W": rng.normal(0.0, 0.7, (4, 2)),
        "tanh/dout": rng.normal(0.0, 1.0, (3, 2)),
        "tanh/h": -1.0,
        "cube_h/x": rng.normal(1.0, 1.0, (2, 3)),
        "cube_h/dout": rng.normal(0.0, 1.0, (2, 3)),
        "cube_h/h": 0.1,
    }


def numgrad_function(kind: str, a: dict):
    """The function whose gradient case ``kind`` asks for: x**3, or tanh(x @ W) with ``a``'s W."""
    if kind.startswith("cube"):
        return lambda x: x**3
    w = a["W"]
    return lambda x: np.tanh(x @ w)


def _produce_numgrad(fn, inputs):
    out = {}
    for kind, a in cases_of(inputs).items():
        f = numgrad_function(kind, a)
        h = float(a["h"])
        if h < 0:
            result = call("numerical_gradient", fn, f, a["x"], a["dout"])
        else:
            result = call("numerical_gradient", fn, f, a["x"], a["dout"], h=h)
        out[f"{kind}/grad"] = arrays("numerical_gradient", result, ("grad",))["grad"]
    return out


PRODUCERS.add(
    "numgrad_visible",
    "numerical_gradient of f(x) = x**3 on a 3 x 2 array",
    _numgrad_visible,
    _produce_numgrad,
)
PRODUCERS.add(
    "numgrad",
    "numerical_gradient of x**3 and of tanh(x @ W), and its h argument",
    _numgrad_cases,
    _produce_numgrad,
)


# ---------------------------------------------------------------- channels-last (N, H, W, C)


def _nhwc_visible():
    return flatten_cases({"a": _case(41, (3, 2, 4, 2), loc=1.0, scale=2.0)})


def _nhwc_cases():
    return flatten_cases(
        {
            "a": _case(42, (4, 5, 3, 3), loc=5.0, scale=10.0),
            "b": _case(43, (2, 2, 4, 3), loc=1.0, scale=0.1, epsilon=0.5),
            "c": _case(44, (3, 1, 2, 5), loc=-2.0, scale=3.0),
        }
    )


def _produce_nhwc_forward(fn, inputs):
    out = {}
    for group, a in cases_of(inputs).items():
        result = _call_with_epsilon(
            "batchnorm_forward_nhwc", fn, (a["x"], a["gamma"], a["beta"]), a["epsilon"]
        )
        out[f"{group}/out"] = arrays("batchnorm_forward_nhwc", result, ("out",))["out"]
    return out


PRODUCERS.add(
    "nhwc_forward_visible",
    "batchnorm_forward_nhwc on a (3, 2, 4, 2) batch",
    _nhwc_visible,
    _produce_nhwc_forward,
)
PRODUCERS.add(
    "nhwc_forward",
    "batchnorm_forward_nhwc on off-centre data, with a large epsilon, and with H = 1",
    _nhwc_cases,
    _produce_nhwc_forward,
)
PRODUCERS.add(
    "nhwc_backward_visible",
    "batchnorm_backward_nhwc on a (3, 2, 4, 2) batch",
    _nhwc_visible,
    _produce_grads("batchnorm_backward_nhwc"),
)
PRODUCERS.add(
    "nhwc_backward",
    "batchnorm_backward_nhwc on off-centre data, with a large epsilon, and with H = 1",
    _nhwc_cases,
    _produce_grads("batchnorm_backward_nhwc"),
)
