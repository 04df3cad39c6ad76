"""Judges of ps2-backward: BN's backward pass in NumPy, staged and in closed form, a
finite-difference gradient, and channels-last (N, H, W, C) inputs.

The inputs and the calls of the student's code are in
:mod:`bncourse.grading.student.ps2_backward`. The staged backward is graded node by node.
For a batch ``x`` of shape (N, D) the forward graph, per feature, is::

    mean = sum(x) / N            xmu  = x - mean          var = sum(xmu**2) / N
    std  = sqrt(var + epsilon)   xhat = xmu / std         out = gamma * xhat + beta

and the gradients the student returns, with ``dxhat = dout * gamma``, are (sums over the
batch axis)::

    dbeta  = sum(dout)                       dgamma = sum(dout * xhat)
    dvar   = -1/2 * sum(dxhat * xmu) * (var + epsilon)**(-3/2)
    dmean  = -sum(dxhat) / std + dvar * (-2/N) * sum(xmu)          # the last sum is 0
    dx     = dxhat / std + dvar * 2 * xmu / N + dmean / N

The judges take ``dx``, ``dgamma`` and ``dbeta`` from ``bncourse.numpy_bn`` and derive the
inner nodes from its forward's statistics, so that the two cannot drift apart.
"""

from __future__ import annotations

from functools import partial

import numpy as np

from .compare import assert_close, carried_forward, own_wrong
from .registry import JudgeRegistry, reference
from .student.calls import cases_of
from .student.messages import CheckFailed, as_failure
from .student.ps2_backward import DEFAULT_EPSILON, numgrad_function

JUDGES = JudgeRegistry("ps2-backward")


def _numpy_bn():
    return reference("bncourse.numpy_bn")


def _label(a) -> str:
    """The inputs of a case, in a few words, for messages."""
    return f"x {a['x'].shape} {a['x'].dtype}, eps {a['epsilon']:g}"


# ---------------------------------------------------------------- comparison


def _tol(expected: np.ndarray) -> dict:
    """Tolerances for gradients, scaled by their size (they range over orders of magnitude)."""
    scale = float(np.max(np.abs(expected))) if expected.size else 0.0
    if expected.dtype == np.float32:
        return {"rtol": 1e-4, "atol": 1e-4 * scale}
    return {"rtol": 1e-6, "atol": 1e-9 * scale}


def _compare(
    name: str, actual, expected: np.ndarray, *, case: str, hints=(), shapes=(), tol=None
) -> str:
    """``assert_close`` that names the case and, for a wrong shape, what it suggests.

    Args:
        name: what is compared, as the student knows it ("dx").
        actual, expected: the student's array and the reference.
        case: the inputs, in words, shown first in a failure message so that a student
            knows which (hidden) case failed.
        hints: ``(description, wrong_array)`` pairs, as in ``assert_close``.
        shapes: ``(shape, explanation)`` pairs: a wrong shape the student's array may
            have, and the mistake it usually comes from.
        tol: ``{"rtol": ..., "atol": ...}``; by default :func:`_tol` of ``expected``.

    Returns:
        The line to print, ``"<name> for <case>: exact"`` or the like.
    """
    if type(actual) is np.ndarray and actual.shape != expected.shape:
        for shape, why in shapes:
            if actual.shape == tuple(shape):
                raise CheckFailed(
                    f"{name}: wrong shape",
                    (f" {actual.shape}, expected {expected.shape}", f" for {case}"),
                    why,
                )
    try:
        how = assert_close(
            name, actual, expected, hints=hints, **(_tol(expected) if tol is None else tol)
        )
    except AssertionError as err:
        err = as_failure(err)
        raise CheckFailed(
            err.what, (*err.detail[:1], f" for {case}", *err.detail[1:]), err.hint
        ) from None
    return f"{name} for {case}: {how}"


def _param_shapes(n: int, d: int) -> list:
    """Wrong shapes of dgamma, dbeta, dvar or dmean for x of shape (n, d), and their causes."""
    return [
        ((n,), "you sum over axis 1 (the features); sum over axis 0, the batch"),
        ((1, d), "you keep the summed axis (keepdims=True); return shape (D,)"),
        ((), "you sum over every axis; sum over axis 0 only, one value per feature"),
    ]


SUM_NOT_MEAN = "you average over the batch (a 1/N factor too many); {} is a sum"
DOUT_NOT_DXHAT = "you use dout instead of dxhat = dout * gamma"
SWAPPED = "you return (dx, dbeta, dgamma); the order is (dx, dgamma, dbeta)"
IGNORES_EPSILON = "you ignore the epsilon argument and use 1e-3"
UNBIASED = "you normalise with the unbiased variance (divide by N - 1); BN divides by N"


# ---------------------------------------------------------------- the staged backward


def _wrong_upstream(outputs, group, g, nodes) -> tuple[list, dict]:
    """The student's own upstream nodes that are wrong, and all of them (``{node: array}``);
    ``([], {})`` when the student's dict did not hold them all as arrays."""
    own = {node: outputs.get(f"{group}/own_{node}") for node in nodes}
    if any(v is None for v in own.values()):
        return [], {}
    tol = _tol(g["dx"])
    wrong = [n for n in nodes if own_wrong(n, {n: own[n]}, {n: g[n]}, **tol)]
    if any(own[n].shape != g[n].shape for n in nodes):
        return wrong, {}  # nothing to carry forward from arrays of the wrong shape
    return wrong, own


def _carried_node(name, outputs, group, a, g, own_expected, wrong, hints, shapes=()):
    """A staged node judged on the reference and, when an upstream node is wrong, on
    ``own_expected``: what the student's own upstream nodes give."""
    actual = outputs[f"{group}/{name}"]
    return carried_forward(
        name,
        partial(_compare, name, actual, g[name], case=_label(a), shapes=shapes, hints=hints),
        partial(_compare, name, actual, own_expected, case=_label(a))
        if wrong and isinstance(own_expected, np.ndarray)
        else None,
        wrong,
    )


def _graph(x, gamma, dout, epsilon) -> dict:
    """Every node gradient of the staged backward for one (N, D) case, and the forward's
    statistics."""
    nb = _numpy_bn()
    _, cache = nb.batchnorm_forward(x, gamma, np.zeros_like(gamma), epsilon)
    dx, dgamma, dbeta = nb.batchnorm_backward(dout, cache)
    n = x.shape[0]
    mean, var = cache["mean"], cache["var"]
    xmu = x - mean
    std = np.sqrt(var + epsilon)
    dxhat = dout * gamma
    dvar = -0.5 * np.sum(dxhat * xmu, axis=0) * (var + epsilon) ** -1.5
    dmean = -np.sum(dxhat, axis=0) / std + dvar * (-2.0 / n) * np.sum(xmu, axis=0)
    return {
        "n": n,
        "var": var,
        "std": std,
        "xmu": xmu,
        "xhat": cache["xhat"],
        "dbeta": dbeta,
        "dgamma": dgamma,
        "dxhat": dxhat,
        "dvar": dvar,
        "dmean": dmean,
        "dx": dx,
    }


def _hints_common(a, node, g) -> list:
    """Hints that apply to every node below dxhat: dout for dxhat, and a fixed epsilon."""
    no_gamma = _graph(a["x"], np.ones_like(a["gamma"]), a["dout"], a["epsilon"])
    hints = [(DOUT_NOT_DXHAT, no_gamma[node])]
    if a["epsilon"] != DEFAULT_EPSILON:
        hints.append(
            (IGNORES_EPSILON, _graph(a["x"], a["gamma"], a["dout"], DEFAULT_EPSILON)[node])
        )
    return hints


@JUDGES.judge("staged_params_visible")
@JUDGES.judge("staged_params")
def _judge_params(inputs, outputs):
    lines = []
    for group, a in cases_of(inputs).items():
        x, dout, eps = a["x"], a["dout"], a["epsilon"]
        g = _graph(x, a["gamma"], dout, eps)
        n, d = x.shape
        xhat_unbiased = g["xmu"] / np.sqrt(g["var"] * n / (n - 1) + eps)
        lines.append(
            _compare(
                "dbeta",
                outputs[f"{group}/dbeta"],
                g["dbeta"],
                case=_label(a),
                shapes=_param_shapes(n, d),
                hints=[
                    (SUM_NOT_MEAN.format("dbeta"), g["dbeta"] / n),
                    ("you swap dgamma and dbeta", g["dgamma"]),
                ],
            )
        )
        hints = [
            (SUM_NOT_MEAN.format("dgamma"), g["dgamma"] / n),
            ("you multiply dout by x instead of the normalised xhat", np.sum(dout * x, axis=0)),
            (
                "you multiply dout by x - mean instead of xhat = (x - mean) / std",
                np.sum(dout * g["xmu"], axis=0),
            ),
            (UNBIASED, np.sum(dout * xhat_unbiased, axis=0)),
            ("you swap dgamma and dbeta", g["dbeta"]),
        ]
        if eps != DEFAULT_EPSILON:
            hints.append((IGNORES_EPSILON, _graph(x, a["gamma"], dout, DEFAULT_EPSILON)["dgamma"]))
        lines.append(
            _compare(
                "dgamma",
                outputs[f"{group}/dgamma"],
                g["dgamma"],
                case=_label(a),
                shapes=_param_shapes(n, d),
                hints=hints,
            )
        )
    return lines


@JUDGES.judge("staged_dxhat_visible")
@JUDGES.judge("staged_dxhat")
def _judge_dxhat(inputs, outputs):
    lines = []
    for group, a in cases_of(inputs).items():
        g = _graph(a["x"], a["gamma"], a["dout"], a["epsilon"])
        d = a["x"].shape[1]
        dout = a["dout"]
        lines.append(
            _compare(
                "dxhat",
                outputs[f"{group}/dxhat"],
                g["dxhat"],
                case=_label(a),
                shapes=[((d,), "you sum over the batch; dxhat has the shape of x, (N, D)")],
                hints=[
                    (
                        "you use dout itself; out = gamma * xhat + beta, so dxhat = dout * gamma",
                        dout,
                    ),
                    (
                        "you multiply dout by xhat (that is the term summed in dgamma)",
                        dout * g["xhat"],
                    ),
                    (
                        "you divide dout by gamma; out = gamma * xhat + beta, so multiply",
                        dout / a["gamma"],
                    ),
                ],
            )
        )
    return lines


@JUDGES.judge("staged_dvar_visible")
@JUDGES.judge("staged_dvar")
def _judge_dvar(inputs, outputs):
    lines = []
    for group, a in cases_of(inputs).items():
        g = _graph(a["x"], a["gamma"], a["dout"], a["epsilon"])
        n, d = a["x"].shape
        dvar, power = g["dvar"], (g["var"] + a["epsilon"]) ** -1.5
        hints = [
            ("you leave out the factor -1/2 of d/dvar (var + epsilon)**(-1/2)", -2.0 * dvar),
            (
                "you have the sign wrong: the derivative of (var + epsilon)**(-1/2) is negative",
                -dvar,
            ),
            (
                "you use the power -1/2 instead of -3/2 of (var + epsilon)",
                dvar * (g["var"] + a["epsilon"]),
            ),
            (
                "you multiply dxhat by xhat instead of x - mean",
                -0.5 * np.sum(g["dxhat"] * g["xhat"], axis=0) * power,
            ),
            (SUM_NOT_MEAN.format("dvar"), dvar / n),
        ]
        wrong, own = _wrong_upstream(outputs, group, g, ("dxhat",))
        lines.append(
            _carried_node(
                "dvar",
                outputs,
                group,
                a,
                g,
                wrong and own and -0.5 * np.sum(own["dxhat"] * g["xmu"], axis=0) * power,
                wrong,
                _hints_common(a, "dvar", g) + hints,
                _param_shapes(n, d),
            )
        )
    return lines


@JUDGES.judge("staged_dmean_visible")
@JUDGES.judge("staged_dmean")
def _judge_dmean(inputs, outputs):
    lines = []
    for group, a in cases_of(inputs).items():
        g = _graph(a["x"], a["gamma"], a["dout"], a["epsilon"])
        n, d = a["x"].shape
        dmean = g["dmean"]
        hints = [
            ("you have the sign wrong: xmu = x - mean, so d xmu / d mean = -1", -dmean),
            ("you leave out the factor 1 / sqrt(var + epsilon)", -np.sum(g["dxhat"], axis=0)),
            (SUM_NOT_MEAN.format("dmean"), dmean / n),
        ]
        wrong, own = _wrong_upstream(outputs, group, g, ("dxhat", "dvar"))
        lines.append(
            _carried_node(
                "dmean",
                outputs,
                group,
                a,
                g,
                wrong
                and own
                and (
                    -np.sum(own["dxhat"], axis=0) / g["std"]
                    + own["dvar"] * (-2.0 / n) * np.sum(g["xmu"], axis=0)
                ),
                wrong,
                _hints_common(a, "dmean", g) + hints,
                _param_shapes(n, d),
            )
        )
    return lines


@JUDGES.judge("staged_dx_visible")
@JUDGES.judge("staged_dx")
def _judge_dx(inputs, outputs):
    lines = []
    for group, a in cases_of(inputs).items():
        g = _graph(a["x"], a["gamma"], a["dout"], a["epsilon"])
        n = g["n"]
        direct = g["dxhat"] / g["std"]
        via_var = g["dvar"] * 2 * g["xmu"] / n
        via_mean = g["dmean"] / n
        hints = [
            (
                "you leave out the path through the variance, dvar * 2 * (x - mean) / N",
                direct + via_mean,
            ),
            ("you leave out the path through the mean, dmean / N", direct + via_var),
            ("you treat the mean and the variance as constants (dx = dxhat / std)", direct),
            ("you leave out the 1/N of the mean's path, dmean / N", direct + via_var + g["dmean"]),
            (
                "you leave out the 1/N of the variance's path, dvar * 2 * (x - mean) / N",
                direct + via_var * n + via_mean,
            ),
            (
                "you divide by N - 1 in the variance's path; BN's variance divides by N",
                direct + via_var * n / (n - 1) + via_mean,
            ),
        ]
        wrong, own = _wrong_upstream(outputs, group, g, ("dxhat", "dvar", "dmean"))
        lines.append(
            _carried_node(
                "dx",
                outputs,
                group,
                a,
                g,
                wrong
                and own
                and (own["dxhat"] / g["std"] + own["dvar"] * 2 * g["xmu"] / n + own["dmean"] / n),
                wrong,
                _hints_common(a, "dx", g) + hints,
            )
        )
    return lines


# ---------------------------------------------------------------- the closed form


def _compare_grads(outputs, group, expected, *, case, hints, shapes) -> list:
    """Compare a case's (dx, dgamma, dbeta); ``hints`` are dx's, ``shapes`` the parameters'."""
    dx, dgamma, dbeta = expected
    return [
        _compare("dx", outputs[f"{group}/dx"], dx, case=case, hints=hints),
        _compare(
            "dgamma",
            outputs[f"{group}/dgamma"],
            dgamma,
            case=case,
            shapes=shapes,
            hints=[(SWAPPED, dbeta)],
        ),
        _compare(
            "dbeta",
            outputs[f"{group}/dbeta"],
            dbeta,
            case=case,
            shapes=shapes,
            hints=[(SWAPPED, dgamma)],
        ),
    ]


def _reference_grads(x, gamma, dout, epsilon):
    """numpy_bn's closed-form (dx, dgamma, dbeta), and its forward cache."""
    nb = _numpy_bn()
    _, cache = nb.batchnorm_forward(x, gamma, np.zeros_like(gamma), epsilon)
    return nb.batchnorm_backward_alt(dout, cache), cache


@JUDGES.judge("closed_visible")
@JUDGES.judge("closed")
def _judge_closed(inputs, outputs):
    lines = []
    for group, a in cases_of(inputs).items():
        x, gamma, dout, eps = a["x"], a["gamma"], a["dout"], a["epsilon"]
        (dx, dgamma, dbeta), cache = _reference_grads(x, gamma, dout, eps)
        n, d = x.shape
        # the wrong answers, in float64 whatever the case's dtype
        xhat, db, dg = (v.astype(np.float64) for v in (cache["xhat"], dbeta, dgamma))
        inv_std = 1.0 / np.sqrt(cache["var"].astype(np.float64) + eps)
        bracket = n * dout.astype(np.float64) - db - xhat * dg
        hints = [
            ("you leave out the 1/N in front of the bracket", gamma * inv_std * bracket),
            (
                "you leave out the term xhat * dgamma (the path through the variance)",
                gamma * inv_std / n * (bracket + xhat * dg),
            ),
            (
                "you leave out the term dbeta (the path through the mean)",
                gamma * inv_std / n * (bracket + db),
            ),
            ("you use dout instead of dout * gamma (gamma is missing)", inv_std / n * bracket),
        ]
        if eps != DEFAULT_EPSILON:
            wrong_eps = _reference_grads(x, gamma, dout, DEFAULT_EPSILON)[0][0]
            hints.append((IGNORES_EPSILON, wrong_eps))
        lines += _compare_grads(
            outputs,
            group,
            (dx, dgamma, dbeta),
            case=_label(a),
            hints=hints,
            shapes=_param_shapes(n, d),
        )
    return lines


# ---------------------------------------------------------------- finite differences
# Two functions with known gradients: the cube, element-wise, and tanh(x @ W), where each
# output depends on a whole row of x. For the cube the centred difference is exact up to
# rounding, ((x + h)**3 - (x - h)**3) / (2 h) = 3 x**2 + h**2, so a large h shows whether
# the h argument is used. An "h" of -1 in the inputs means "leave h at its default".


ONE_SIDED = "you use the one-sided difference; the centred one is (L(x+h) - L(x-h)) / 2h"


def _one_sided(f, x, dout, h):
    """The forward-difference gradient, (L(x + h e_j) - L(x)) / h with L = sum(f(x) * dout)."""
    grad = np.zeros_like(x)
    base = np.sum(f(x) * dout)
    for index in np.ndindex(x.shape):
        shifted = x.copy()
        shifted[index] += h
        grad[index] = (np.sum(f(shifted) * dout) - base) / h
    return grad


@JUDGES.judge("numgrad_visible")
@JUDGES.judge("numgrad")
def _judge_numgrad(inputs, outputs):
    lines = []
    for kind, a in cases_of(inputs).items():
        x, dout = a["x"], a["dout"]
        given_h = float(a["h"]) > 0
        h = float(a["h"]) if given_h else 1e-5
        f = numgrad_function(kind, a)
        if kind.startswith("cube"):
            expected = dout * (3 * x**2 + h**2)
            analytic = dout * 3 * x**2
            unweighted = 3 * x**2 + h**2
            what = "f(x) = x**3"
        else:
            t = np.tanh(x @ a["W"])
            expected = analytic = ((1 - t**2) * dout) @ a["W"].T
            unweighted = (1 - t**2) @ a["W"].T
            what = "f(x) = tanh(x @ W)"
        hints = [
            (ONE_SIDED, _one_sided(f, x, dout, h)),
            ("you divide by h instead of 2 h", 2 * expected),
            ("you leave out dout: the gradient is that of sum(f(x) * dout)", unweighted),
        ]
        if given_h:
            hints.append(("you ignore the h argument and use 1e-5", analytic))
        case = f"{what}, x of shape {x.shape}" + (f", h={h:g}" if given_h else "")
        lines.append(
            _compare(
                "gradient",
                outputs[f"{kind}/grad"],
                expected,
                case=case,
                hints=hints,
                tol={"rtol": 1e-6, "atol": 1e-7},
            )
        )
    return lines


# ---------------------------------------------------------------- channels-last (N, H, W, C)


PER_POSITION = "you take statistics over the batch axis only; BN's are over N, H and W"
PER_SAMPLE_HW = "per sample over H and W is instance normalisation; BN uses N, H and W"
PER_SAMPLE_HWC = "per sample over H, W and C is layer normalisation; BN uses N, H and W"
RESHAPE_C_FIRST = "you reshape x to (C, -1); the channel is the last axis: reshape to (-1, C)"
RESHAPE_N_FIRST = "you sum over axis 0 of x.reshape(N, -1); reshape to (-1, C) instead"
COUNT_N = "you use N (the batch size) as the count; each channel averages N * H * W values"


def _per_position(x, gamma, beta, epsilon):
    """numpy_bn's forward with statistics over N only: every (h, w, c) its own feature."""
    n, hw = x.shape[0], x.shape[1] * x.shape[2]
    return _numpy_bn().batchnorm_forward(
        x.reshape(n, -1), np.tile(gamma, hw), np.tile(beta, hw), epsilon
    )


def _reshape_channels_first(x, gamma, beta, epsilon):
    """BN of x.reshape(C, -1).T, a reshape that mixes the channels up."""
    c = x.shape[-1]
    out, _ = _numpy_bn().batchnorm_forward(x.reshape(c, -1).T, gamma, beta, epsilon)
    return out.T.reshape(x.shape)


@JUDGES.judge("nhwc_forward_visible")
@JUDGES.judge("nhwc_forward")
def _judge_nhwc_forward(inputs, outputs):
    lines = []
    nb = _numpy_bn()
    for group, a in cases_of(inputs).items():
        x, gamma, beta, eps = a["x"], a["gamma"], a["beta"], a["epsilon"]
        expected, _ = nb.batchnorm_forward(x, gamma, beta, eps)
        hints = [
            (PER_POSITION, _per_position(x, gamma, beta, eps)[0].reshape(x.shape)),
            (PER_SAMPLE_HW, nb.instancenorm_forward(x, gamma, beta, eps)[0]),
            (PER_SAMPLE_HWC, nb.layernorm_forward(x, gamma, beta, eps)[0]),
            (RESHAPE_C_FIRST, _reshape_channels_first(x, gamma, beta, eps)),
        ]
        if eps != DEFAULT_EPSILON:
            hints.append((IGNORES_EPSILON, nb.batchnorm_forward(x, gamma, beta)[0]))
        lines.append(
            _compare(
                "out",
                outputs[f"{group}/out"],
                expected,
                case=_label(a),
                hints=hints,
                tol={"rtol": 1e-7, "atol": 1e-9},
            )
        )
    return lines


def _nhwc_shapes(x) -> list:
    """Wrong shapes of dgamma or dbeta for x of shape (N, H, W, C), and their causes."""
    n, h, w, c = x.shape
    return [
        ((h, w, c), "you sum over the batch axis only; sum over N, H and W, axis=(0, 1, 2)"),
        ((1, 1, 1, c), "you keep the summed axes (keepdims=True); return shape (C,)"),
        ((n,), "you sum over H, W and C; sum over N, H and W, axis=(0, 1, 2)"),
        ((h * w * c,), RESHAPE_N_FIRST),
    ]


@JUDGES.judge("nhwc_backward_visible")
@JUDGES.judge("nhwc_backward")
def _judge_nhwc_backward(inputs, outputs):
    lines = []
    nb = _numpy_bn()
    for group, a in cases_of(inputs).items():
        x, gamma, dout, eps = a["x"], a["gamma"], a["dout"], a["epsilon"]
        zeros = np.zeros_like(gamma)
        (dx, dgamma, dbeta), cache = _reference_grads(x, gamma, dout, eps)
        n = x.shape[0]
        scale = gamma / np.sqrt(cache["var"] + eps)
        _, per_position = _per_position(x, gamma, zeros, eps)
        _, per_sample = nb.instancenorm_forward(x, gamma, zeros, eps)
        hints = [
            (COUNT_N, scale / n * (n * dout - dbeta - cache["xhat"] * dgamma)),
            (
                PER_POSITION,
                nb.batchnorm_backward_alt(dout.reshape(n, -1), per_position)[0].reshape(x.shape),
            ),
            (PER_SAMPLE_HW, nb.instancenorm_backward(dout, per_sample)[0]),
        ]
        if eps != DEFAULT_EPSILON:
            wrong_eps = _reference_grads(x, gamma, dout, DEFAULT_EPSILON)[0][0]
            hints.append((IGNORES_EPSILON, wrong_eps))
        lines += _compare_grads(
            outputs, group, (dx, dgamma, dbeta), case=_label(a), hints=hints, shapes=_nhwc_shapes(x)
        )
    return lines
