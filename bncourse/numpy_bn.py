"""Batch Normalization and its relatives in plain NumPy: the course's readable reference.

The conventions are those of ``keras.layers.BatchNormalization`` (Keras 3), stated once
for the whole course:

* statistics are taken over every axis of ``x`` except the feature axis ``axis``;
* the variance is the *biased* one (divide by N), computed in two passes,
  ``mean((x - mean)**2)``, never as ``E[x**2] - E[x]**2``;
* ``epsilon`` (default 1e-3) is added to the variance *inside* the square root;
* the moving statistics follow
  ``moving = moving * momentum + batch * (1 - momentum)`` with ``momentum=0.99``,
  ``moving_mean`` starting at 0 and ``moving_var`` at 1.

Training-mode forward, for a batch ``x`` with m values per feature::

    mean = sum(x) / m                                # per feature
    var  = sum((x - mean)**2) / m                    # biased, two passes
    xhat = (x - mean) / sqrt(var + epsilon)
    out  = gamma * xhat + beta

Every forward returns ``(out, cache)``; the matching backward takes the upstream gradient
``dout`` and that cache and returns the gradients of the inputs.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import numpy as np

from bncourse._checks import (
    check_epsilon,
    check_integer,
    check_momentum,
    check_positive_integer,
)

__all__ = [
    "BatchNorm",
    "batchnorm_backward",
    "batchnorm_backward_alt",
    "batchnorm_forward",
    "batchnorm_inference",
    "groupnorm_backward",
    "groupnorm_forward",
    "instancenorm_backward",
    "instancenorm_forward",
    "layernorm_backward",
    "layernorm_forward",
    "numerical_gradient",
    "rel_error",
]


# --------------------------------------------------------------------------- checks


def _check_x(x, *, name: str = "x", min_ndim: int = 2) -> np.ndarray:
    """Return ``x`` as a floating ndarray, or raise an error naming what is wrong."""
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(
            f"{name} must be a floating-point array (float16, float32 or float64), "
            f"got dtype {x.dtype}; convert it first, e.g. {name}.astype(np.float32)"
        )
    if x.ndim < min_ndim:
        raise ValueError(
            f"{name} must have at least {min_ndim} dimensions (a batch axis first), "
            f"got shape {x.shape}"
        )
    return x


def _check_axis(axis, ndim: int, *, batch_axis_allowed: bool = False) -> int:
    """Return ``axis`` as a non-negative index into an array of rank ``ndim``."""
    axis = check_integer(axis, "axis")
    if not -ndim <= axis < ndim:
        raise ValueError(
            f"axis={axis} is out of range for an input of rank {ndim}; "
            f"expected an integer in [{-ndim}, {ndim - 1}]"
        )
    axis %= ndim
    if axis == 0 and not batch_axis_allowed:
        raise ValueError(
            "axis=0 is the batch axis; the feature axis must be another one "
            "(-1 for channels-last, 1 for channels-first)"
        )
    return axis


def _check_param(p, name: str, num_features: int) -> np.ndarray:
    p = np.asarray(p)
    if p.shape != (num_features,):
        raise ValueError(
            f"{name} must have shape ({num_features},), one value per feature of x, "
            f"got shape {p.shape}"
        )
    if not np.issubdtype(p.dtype, np.floating):
        raise TypeError(f"{name} must be a floating-point array, got dtype {p.dtype}")
    return p


def _compute_dtype(x: np.ndarray) -> np.dtype:
    # Half precision is computed in float32, as Keras does, and cast back at the end.
    return np.dtype(np.float32) if x.dtype == np.float16 else x.dtype


def _broadcast_shape(ndim: int, axis: int, size: int) -> tuple[int, ...]:
    shape = [1] * ndim
    shape[axis] = size
    return tuple(shape)


# --------------------------------------------------------------------------- shared core


class _NormCache(NamedTuple):
    """What a normalisation forward keeps for its backward."""

    xhat: np.ndarray  # normalised input, in the layout of the reduction (see `view`)
    inv_std: np.ndarray  # 1 / sqrt(var + epsilon), broadcastable against xhat
    gamma: np.ndarray  # broadcastable against the output
    reduce_axes: tuple[int, ...]  # axes of the statistics, in xhat's layout
    param_axes: tuple[int, ...]  # axes summed for dgamma and dbeta, in x's layout
    shape: tuple[int, ...]  # shape of x
    dtype: np.dtype  # dtype of x


def _sum_of_products(a: np.ndarray, b: np.ndarray, reduce_axes: tuple[int, ...]) -> np.ndarray:
    """Sum of ``a * b`` over ``reduce_axes``, keeping them as axes of size 1.

    ``einsum`` multiplies and adds in one pass, without a temporary array of a's size.
    """
    letters = "abcdefghijklmnopqrstuvwxyz"[: a.ndim]  # mutation-equivalent: or upper case
    kept = "".join(c for i, c in enumerate(letters) if i not in reduce_axes)
    total = np.einsum(f"{letters},{letters}->{kept}", a, b)
    return np.expand_dims(total, reduce_axes)


def _normalize(x: np.ndarray, reduce_axes: tuple[int, ...], epsilon: float):
    """Two-pass normalisation of ``x`` over ``reduce_axes``.

    Returns ``(xhat, mean, var, std)``, the statistics with ``reduce_axes`` kept as axes
    of size 1. The variance is biased: ``mean((x - mean)**2)``.
    """
    m = x.size // math.prod(x.shape[i] for i in range(x.ndim) if i not in reduce_axes)
    # A float32 sum of thousands of values near 1e4 is off by about 0.03; accumulating in
    # float64 keeps the mean, and so the centring, accurate for off-centre data.
    mean = x.mean(axis=reduce_axes, keepdims=True, dtype=np.float64).astype(x.dtype)
    xhat = x - mean  # holds x - mean until it is scaled in place below
    var = _sum_of_products(xhat, xhat, reduce_axes) / m
    std = np.sqrt(var + epsilon)
    xhat /= std  # in place: one array of x's size fewer to allocate
    return xhat, mean, var, std


def _normalize_backward(dxhat: np.ndarray, xhat: np.ndarray, inv_std: np.ndarray, reduce_axes):
    """Closed-form gradient of ``xhat = (x - mean) * inv_std`` with respect to ``x``.

    dx = inv_std * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)), means over the
    reduction axes.
    """
    mean_dxhat = dxhat.mean(axis=reduce_axes, keepdims=True)
    mean_dxhat_xhat = np.mean(dxhat * xhat, axis=reduce_axes, keepdims=True)
    return inv_std * (dxhat - mean_dxhat - xhat * mean_dxhat_xhat)


def _check_dout(dout, cache: _NormCache) -> np.ndarray:
    dout = np.asarray(dout)
    if dout.shape != cache.shape:
        raise ValueError(
            f"dout must have the shape of the forward's input {cache.shape}, got {dout.shape}"
        )
    return dout.astype(cache.xhat.dtype, copy=False)


def _affine_backward(dout: np.ndarray, xhat_x: np.ndarray, cache: _NormCache):
    """dgamma, dbeta and dxhat for ``out = gamma * xhat + beta`` (xhat in x's layout)."""
    dbeta = dout.sum(axis=cache.param_axes)
    dgamma = np.sum(dout * xhat_x, axis=cache.param_axes)
    return dout * cache.gamma, dgamma, dbeta


# --------------------------------------------------------------------------- batch norm


def _bn_setup(x, gamma, beta, epsilon, axis):
    x = _check_x(x)
    axis = _check_axis(axis, x.ndim)
    num_features = x.shape[axis]
    gamma = _check_param(gamma, "gamma", num_features)
    beta = _check_param(beta, "beta", num_features)
    epsilon = check_epsilon(epsilon)
    reduce_axes = tuple(i for i in range(x.ndim) if i != axis)
    shape = _broadcast_shape(x.ndim, axis, num_features)
    dtype = _compute_dtype(x)
    return x, axis, reduce_axes, shape, dtype, gamma, beta, epsilon


def batchnorm_forward(x, gamma, beta, epsilon=1e-3, axis=-1):
    """Batch Normalization in training mode, using the statistics of this batch.

    Args:
        x: array of shape (N, D), or (N, H, W, C) for channels-last images; any rank >= 2
            works, with the statistics taken over every axis except ``axis``.
        gamma: array of shape (C,), the learned scale, C = x.shape[axis].
        beta: array of shape (C,), the learned shift.
        epsilon: small number > 0 added to the variance inside the square root.
        axis: the feature (channel) axis; -1 for channels-last, 1 for channels-first.

    Returns:
        ``(out, cache)``: ``out`` has the shape and dtype of ``x``; ``cache`` holds what
        :func:`batchnorm_backward` needs, including the batch ``mean`` and biased ``var``
        (``cache["mean"]``, ``cache["var"]``, each of shape (C,)) for the moving averages.

    Raises:
        ValueError: if a feature has a single value in the batch (N = 1 for (N, D) input).
            Its variance is then zero, so its output would be ``beta`` whatever ``x`` is
            and its gradient with respect to ``x`` zero: nothing would be learned. PyTorch
            refuses such a batch too.
    """
    x, axis, reduce_axes, shape, dtype, gamma, beta, epsilon = _bn_setup(
        x, gamma, beta, epsilon, axis
    )
    m = x.size // x.shape[axis]
    if m < 2:
        raise ValueError(
            f"Batch Normalization in training mode needs more than one value per feature, "
            f"got x of shape {x.shape} (one value per feature along axis {axis}): its "
            "batch variance would be 0 and the output just beta; use a larger batch or "
            "inference mode"
        )
    xhat, mean, var, std = _normalize(x.astype(dtype, copy=False), reduce_axes, epsilon)
    inv_std = 1.0 / std
    g = gamma.astype(dtype, copy=False).reshape(shape)
    out = xhat * g
    out += beta.astype(dtype, copy=False).reshape(shape)
    cache = {
        "x": x,
        "xhat": xhat,
        "mean": mean.reshape(-1),
        "var": var.reshape(-1),
        "std": std,
        "inv_std": inv_std,
        "gamma": g,
        "epsilon": epsilon,
        "axis": axis,
        "reduce_axes": reduce_axes,
    }
    return out.astype(x.dtype, copy=False), cache


def batchnorm_backward(dout, cache):
    """Gradient of :func:`batchnorm_forward`, staged node by node through its graph.

    The forward graph, per feature, over the m values of the batch::

        mean = sum(x) / m          xmu  = x - mean        sq = xmu**2
        var  = sum(sq) / m         std  = sqrt(var + eps) inv_std = 1 / std
        xhat = xmu * inv_std       out  = gamma * xhat + beta

    Each line below undoes one node, from ``out`` back to ``x``.

    Args:
        dout: array of the shape of the forward's ``x``, the upstream gradient.
        cache: the cache returned by :func:`batchnorm_forward`.

    Returns:
        ``(dx, dgamma, dbeta)`` with the shapes of ``x``, ``gamma`` and ``beta``.
    """
    dout, c = _bn_dout(dout, cache)
    axes, std, inv_std = c["reduce_axes"], c["std"], c["inv_std"]
    # The forward keeps xhat but not xmu, to save memory; recover xmu = xhat * std.
    xmu = c["xhat"] * std
    m = xmu.size // xmu.shape[c["axis"]]
    # out = gamma * xhat + beta
    dbeta = dout.sum(axis=axes)
    dgamma = np.sum(dout * c["xhat"], axis=axes)
    dxhat = dout * c["gamma"]
    # xhat = xmu * inv_std: xmu feeds xhat directly and, through var, inv_std
    dinv_std = np.sum(dxhat * xmu, axis=axes, keepdims=True)
    dxmu = dxhat * inv_std
    # inv_std = 1 / std
    dstd = -dinv_std / std**2
    # std = sqrt(var + eps)
    dvar = 0.5 * dstd / std
    # var = sum(sq) / m
    dsq = dvar / m
    # sq = xmu**2
    dxmu += 2.0 * xmu * dsq
    # xmu = x - mean
    dx = dxmu.copy()
    dmean = -np.sum(dxmu, axis=axes, keepdims=True)
    # mean = sum(x) / m
    dx += dmean / m
    return _bn_grads_out(dx, dgamma, dbeta, cache)


def batchnorm_backward_alt(dout, cache):
    """Gradient of :func:`batchnorm_forward` in closed form.

    Summing over the m values of each feature::

        dbeta  = sum(dout)
        dgamma = sum(dout * xhat)
        dx     = gamma * inv_std / m * (m * dout - dbeta - xhat * dgamma)

    It gives the same numbers as :func:`batchnorm_backward` with fewer passes over the data
    and fewer temporary arrays.

    Args:
        dout: array of the shape of the forward's ``x``, the upstream gradient.
        cache: the cache returned by :func:`batchnorm_forward`.

    Returns:
        ``(dx, dgamma, dbeta)`` with the shapes of ``x``, ``gamma`` and ``beta``.
    """
    dout, c = _bn_dout(dout, cache)
    axes, xhat = c["reduce_axes"], c["xhat"]
    m = xhat.size // xhat.shape[c["axis"]]
    dbeta = dout.sum(axis=axes, keepdims=True)
    dgamma = _sum_of_products(dout, xhat, axes)
    dx = xhat * (dgamma / -m)
    dx += dout
    dx -= dbeta / m
    dx *= c["gamma"] * c["inv_std"]
    return _bn_grads_out(dx, dgamma.reshape(-1), dbeta.reshape(-1), cache)


def _bn_dout(dout, cache):
    if not isinstance(cache, dict) or "xhat" not in cache:
        raise TypeError("cache must be the dict returned by batchnorm_forward")
    dout = np.asarray(dout)
    if dout.shape != cache["x"].shape:
        raise ValueError(
            f"dout must have the shape of the forward's input {cache['x'].shape}, got {dout.shape}"
        )
    return dout.astype(cache["xhat"].dtype, copy=False), cache


def _bn_grads_out(dx, dgamma, dbeta, cache):
    dtype = cache["x"].dtype
    return dx.astype(dtype, copy=False), dgamma.astype(dtype), dbeta.astype(dtype)


def batchnorm_inference(x, gamma, beta, moving_mean, moving_var, epsilon=1e-3, axis=-1):
    """Batch Normalization in inference mode, using the moving statistics.

    ``out = gamma * (x - moving_mean) / sqrt(moving_var + epsilon) + beta``: each sample is
    transformed on its own, so a batch of one works.

    Args:
        x: array of shape (N, D) or (N, H, W, C); any rank >= 2.
        gamma, beta: arrays of shape (C,), C = x.shape[axis].
        moving_mean, moving_var: arrays of shape (C,), collected during training.
        epsilon: number > 0 added to the variance inside the square root.
        axis: the feature axis.

    Returns:
        ``out``, of the shape and dtype of ``x``.
    """
    x, axis, _, shape, dtype, gamma, beta, epsilon = _bn_setup(x, gamma, beta, epsilon, axis)
    num_features = x.shape[axis]
    moving_mean = _check_param(moving_mean, "moving_mean", num_features)
    moving_var = _check_param(moving_var, "moving_var", num_features)
    if np.any(moving_var < 0):
        raise ValueError("moving_var must be >= 0 everywhere, got negative values")
    inv_std = (1.0 / np.sqrt(moving_var.astype(dtype) + epsilon)).reshape(shape)
    xhat = (x.astype(dtype, copy=False) - moving_mean.astype(dtype).reshape(shape)) * inv_std
    out = xhat * gamma.astype(dtype).reshape(shape) + beta.astype(dtype).reshape(shape)
    return out.astype(x.dtype, copy=False)


class BatchNorm:
    """A Batch Normalization layer with state, on top of the pure functions of this module.

    ``layer(x, training=True)`` normalises with the batch statistics and updates the moving
    ones::

        moving_mean = moving_mean * momentum + mean * (1 - momentum)
        moving_var  = moving_var  * momentum + var  * (1 - momentum)   # biased var

    ``layer(x)`` (``training=False``, the default) uses the moving statistics and changes
    nothing.

    Args:
        num_features: C, the size of the feature axis.
        axis: the feature axis of the inputs (-1 channels-last, 1 channels-first).
        momentum: weight of the old value in the moving averages, in [0, 1].
        epsilon: number > 0 added to the variance inside the square root.
        center: if False, there is no beta (it stays 0 and is not learned).
        scale: if False, there is no gamma (it stays 1 and is not learned).

    Attributes:
        gamma, beta, moving_mean, moving_var: float arrays of shape (num_features,), plain
        attributes that a user may read and assign. ``gamma`` and ``beta`` are None when
        ``scale`` / ``center`` is False.
    """

    def __init__(
        self,
        num_features,
        axis=-1,
        momentum=0.99,
        epsilon=1e-3,
        center=True,
        scale=True,
        dtype=np.float32,
    ):
        self.num_features = check_positive_integer(num_features, "num_features")
        self.axis = check_integer(axis, "axis")
        self.momentum = check_momentum(momentum)
        self.epsilon = check_epsilon(epsilon)
        self.center = bool(center)
        self.scale = bool(scale)
        self.dtype = np.dtype(dtype)
        self.gamma = np.ones(self.num_features, self.dtype) if self.scale else None
        self.beta = np.zeros(self.num_features, self.dtype) if self.center else None
        self.moving_mean = np.zeros(self.num_features, self.dtype)
        self.moving_var = np.ones(self.num_features, self.dtype)
        self._cache = None

    def _params(self):
        # mutation-equivalent: ones and zeros are exact in every dtype, and the forward
        # functions cast gamma and beta to the input's precision anyway.
        gamma = self.gamma if self.scale else np.ones(self.num_features, self.dtype)
        # mutation-equivalent: as above
        beta = self.beta if self.center else np.zeros(self.num_features, self.dtype)
        return gamma, beta

    def __call__(self, x, training=False):
        """Normalise ``x`` (shape (N, ..., C) along ``axis``); see the class docstring."""
        x = _check_x(x)
        axis = _check_axis(self.axis, x.ndim)
        if x.shape[axis] != self.num_features:
            raise ValueError(
                f"x has {x.shape[axis]} features along axis {self.axis}, "
                f"but this layer was built for num_features={self.num_features}"
            )
        gamma, beta = self._params()
        if not training:
            self._cache = None
            return batchnorm_inference(
                x, gamma, beta, self.moving_mean, self.moving_var, self.epsilon, self.axis
            )
        out, cache = batchnorm_forward(x, gamma, beta, self.epsilon, self.axis)
        m = self.momentum
        self.moving_mean = (self.moving_mean * m + cache["mean"] * (1 - m)).astype(self.dtype)
        self.moving_var = (self.moving_var * m + cache["var"] * (1 - m)).astype(self.dtype)
        self._cache = cache
        return out

    def backward(self, dout):
        """Gradients ``(dx, dgamma, dbeta)`` of the last training call, in closed form."""
        if self._cache is None:
            raise RuntimeError("backward needs a preceding call with training=True")
        return batchnorm_backward_alt(dout, self._cache)

    def __repr__(self):
        return (
            f"BatchNorm(num_features={self.num_features}, axis={self.axis}, "
            f"momentum={self.momentum}, epsilon={self.epsilon}, center={self.center}, "
            f"scale={self.scale})"
        )


# --------------------------------------------------------------------------- relatives
# Layer, group and instance norm normalise each sample on its own (no batch statistics,
# so training and inference are the same). Inputs are channels-last, (N, ..., C); gamma
# and beta have shape (C,) and act on the last axis.


def _per_sample_forward(x, gamma, beta, epsilon, groups, min_ndim):
    x = _check_x(x, min_ndim=min_ndim)
    num_channels = x.shape[-1]
    gamma = _check_param(gamma, "gamma", num_channels)
    beta = _check_param(beta, "beta", num_channels)
    epsilon = check_epsilon(epsilon)
    if num_channels % groups:
        raise ValueError(
            f"groups={groups} must divide the number of channels, x.shape[-1]={num_channels}"
        )
    dtype = _compute_dtype(x)
    # (N, ..., C) -> (N, ..., G, C // G); statistics over all but the batch and group axes.
    xg = x.astype(dtype, copy=False).reshape(x.shape[:-1] + (groups, num_channels // groups))
    reduce_axes = tuple(range(1, xg.ndim - 2)) + (xg.ndim - 1,)
    xhat, _, _, std = _normalize(xg, reduce_axes, epsilon)
    inv_std = 1.0 / std
    shape = _broadcast_shape(x.ndim, x.ndim - 1, num_channels)
    g = gamma.astype(dtype).reshape(shape)
    out = xhat.reshape(x.shape) * g + beta.astype(dtype).reshape(shape)
    cache = _NormCache(
        xhat=xhat,
        inv_std=inv_std,
        gamma=g,
        reduce_axes=reduce_axes,
        param_axes=tuple(range(x.ndim - 1)),
        shape=x.shape,
        dtype=x.dtype,
    )
    return out.astype(x.dtype, copy=False), cache


def _per_sample_backward(dout, cache):
    if not isinstance(cache, _NormCache):
        raise TypeError("cache must be the one returned by the matching *_forward function")
    dout = _check_dout(dout, cache)
    xhat = cache.xhat
    dxhat, dgamma, dbeta = _affine_backward(dout, xhat.reshape(cache.shape), cache)
    dx = _normalize_backward(dxhat.reshape(xhat.shape), xhat, cache.inv_std, cache.reduce_axes)
    dt = cache.dtype
    return dx.reshape(cache.shape).astype(dt, copy=False), dgamma.astype(dt), dbeta.astype(dt)


def layernorm_forward(x, gamma, beta, epsilon=1e-3):
    """Layer Normalization: each sample normalised over all its features.

    For x of shape (N, D) it equals ``keras.layers.LayerNormalization(axis=-1)``; for
    images (N, H, W, C) it normalises over (H, W, C) and equals group norm with one group.

    Args:
        x: array of shape (N, D) or (N, ..., C).
        gamma, beta: arrays of shape (C,), C = x.shape[-1].
        epsilon: number > 0 added to the variance inside the square root.

    Returns:
        ``(out, cache)``.
    """
    return _per_sample_forward(x, gamma, beta, epsilon, groups=1, min_ndim=2)


def layernorm_backward(dout, cache):
    """Gradients ``(dx, dgamma, dbeta)`` of :func:`layernorm_forward`."""
    return _per_sample_backward(dout, cache)


def groupnorm_forward(x, gamma, beta, groups, epsilon=1e-3):
    """Group Normalization (Wu & He 2018) on channels-last input.

    The C channels are split into ``groups`` groups of C // groups consecutive channels;
    each sample is normalised per group, over the spatial axes and the group's channels.
    It equals ``keras.layers.GroupNormalization(groups=groups)``.

    Args:
        x: array of shape (N, ..., C), e.g. (N, H, W, C).
        gamma, beta: arrays of shape (C,).
        groups: number of groups, a divisor of C. ``groups=1`` is layer norm,
            ``groups=C`` is instance norm.
        epsilon: number > 0 added to the variance inside the square root.

    Returns:
        ``(out, cache)``.
    """
    groups = check_positive_integer(groups, "groups")
    return _per_sample_forward(x, gamma, beta, epsilon, groups=groups, min_ndim=2)


def groupnorm_backward(dout, cache):
    """Gradients ``(dx, dgamma, dbeta)`` of :func:`groupnorm_forward`."""
    return _per_sample_backward(dout, cache)


def instancenorm_forward(x, gamma, beta, epsilon=1e-3):
    """Instance Normalization: each sample and channel normalised over the spatial axes.

    Args:
        x: array of shape (N, ..., C) with at least one spatial axis, e.g. (N, H, W, C).
        gamma, beta: arrays of shape (C,).
        epsilon: number > 0 added to the variance inside the square root.

    Returns:
        ``(out, cache)``.
    """
    x = _check_x(x, min_ndim=3)
    return _per_sample_forward(x, gamma, beta, epsilon, groups=x.shape[-1], min_ndim=3)


def instancenorm_backward(dout, cache):
    """Gradients ``(dx, dgamma, dbeta)`` of :func:`instancenorm_forward`."""
    return _per_sample_backward(dout, cache)


# --------------------------------------------------------------------------- gradient checks


def numerical_gradient(f: Callable[[np.ndarray], np.ndarray], x, dout, h=1e-5):
    """Centred finite-difference gradient of ``sum(f(x) * dout)`` with respect to ``x``.

    Each entry is ``(L(x + h e_i) - L(x - h e_i)) / (2 h)``; use float64 for a meaningful
    check. ``x`` is perturbed in place and restored before returning.

    Args:
        f: function of one array returning an array of the shape of ``dout``.
        x: float array, the point at which to differentiate.
        dout: array, the upstream gradient (weights of the outputs).
        h: step size.

    Returns:
        array of the shape of ``x``.
    """
    if not isinstance(x, np.ndarray) or not np.issubdtype(x.dtype, np.floating):
        raise TypeError("x must be a floating-point numpy array (it is perturbed in place)")
    dout = np.asarray(dout)
    grad = np.zeros_like(x)
    flat = x.reshape(-1)  # a view: writing to it perturbs x
    if not np.shares_memory(flat, x):
        raise ValueError("x must be contiguous, so that it can be perturbed in place")
    grad_flat = grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + h
        plus = np.array(f(x), copy=True)  # mutation-equivalent: without copy=, it copies too
        flat[i] = old - h
        minus = np.array(f(x), copy=True)  # mutation-equivalent: used before f runs again
        flat[i] = old
        # Differencing the outputs before weighting them by dout loses fewer digits
        # than differencing two large sums.
        grad_flat[i] = np.sum((plus - minus) * dout) / (2 * h)
    return grad


def rel_error(a, b) -> float:
    """Largest relative difference ``|a - b| / max(1e-8, |a| + |b|)``, element-wise."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape, got {a.shape} and {b.shape}")
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - b) / np.maximum(1e-8, np.abs(a) + np.abs(b))))
