"""The noise of BN's batch statistics, and ghost batch normalisation.

In training mode an example's normalised value depends on the other examples of its batch.
Held fixed while its batch-mates are drawn at random, it is a random variable; this module
measures its spread (:func:`batch_output_samples`, :func:`output_spread`) with the course's
NumPy reference, and gives the leading-order prediction derived in the book
(:func:`predicted_spread`): for batch-mates drawn independently from a distribution with
mean ``mu``, standard deviation ``sigma``, skewness ``g`` and kurtosis ``k``, and an example
at ``z = (x - mu) / sigma``::

    Var(batch mean) / sigma**2 = (B - 1) / B**2                       (exact)
    Var(normalised value)     ~= (1 + z * g + z**2 * (k - 1) / 4) / B  (to first order)

Ghost batch normalisation (Hoffer, Hubara and Soudry, 2017) normalises each block of
``virtual_batch_size`` consecutive examples of a batch with that block's own statistics:
:func:`ghost_batchnorm_forward` in NumPy, :class:`GhostBatchNorm` as a Keras 3 layer (Keras 3
has no ``virtual_batch_size``; Keras 2 had it, see the class).
"""

from __future__ import annotations

import numbers

import keras
import numpy as np
from keras import ops

from bncourse._checks import check_positive_integer
from bncourse.keras_bn import BatchNorm
from bncourse.numpy_bn import batchnorm_forward

__all__ = [
    "GhostBatchNorm",
    "batch_output_samples",
    "expected_batch_statistics",
    "ghost_batchnorm_forward",
    "mean_noise_variance",
    "output_spread",
    "predicted_spread",
    "standardised_moments",
]


def _check_batch_size(batch_size, name="batch_size") -> int:
    batch_size = check_positive_integer(batch_size, name)
    if batch_size < 2:
        raise ValueError(
            f"{name} must be at least 2 (a batch of one has no variance to normalise with), "
            f"got {batch_size}"
        )
    return batch_size


def _check_example(example, population):
    example = np.asarray(example)
    population = np.asarray(population)
    for name, a in (("example", example), ("population", population)):
        if not np.issubdtype(a.dtype, np.floating):
            raise TypeError(f"{name} must be a floating-point array, got dtype {a.dtype}")
    if example.ndim != 1:
        raise ValueError(f"example must have shape (D,), got shape {example.shape}")
    if population.ndim != 2 or population.shape[1] != example.shape[0]:
        raise ValueError(
            f"population must have shape (N, {example.shape[0]}) to match example, got "
            f"shape {population.shape}"
        )
    if len(population) < 1:
        raise ValueError("population must hold at least one row to draw batch-mates from")
    return example, population


def batch_output_samples(example, population, batch_size, draws, *, rng, epsilon=1e-3):
    """BN's training-mode output for one fixed example in ``draws`` random batches.

    Each batch is ``example`` and ``batch_size - 1`` rows of ``population`` drawn
    independently (with replacement), normalised by
    :func:`bncourse.numpy_bn.batchnorm_forward` with gamma = 1 and beta = 0.

    Args:
        example: array of shape (D,), the example followed.
        population: array of shape (N, D), where its batch-mates come from.
        batch_size: B >= 2, the examples per batch, ``example`` included.
        draws: how many batches to draw.
        rng: a ``numpy.random.Generator``.
        epsilon: added to the batch variance, as in BN.

    Returns:
        array of shape (draws, D): the example's normalised value in each batch.
    """
    example, population = _check_example(example, population)
    batch_size = _check_batch_size(batch_size)
    draws = check_positive_integer(draws, "draws")
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    d = example.shape[0]
    mates = population[rng.integers(0, len(population), size=(batch_size - 1, draws))]
    batch = np.concatenate([np.broadcast_to(example, (1, draws, d)), mates], axis=0)
    # One column per (draw, feature): a single call normalises every batch at once.
    columns = batch.reshape(batch_size, draws * d)
    ones = np.ones(draws * d, dtype=columns.dtype)
    out, _ = batchnorm_forward(columns, ones, np.zeros_like(ones), epsilon)
    return out[0].reshape(draws, d)


def output_spread(example, population, batch_sizes, draws, *, rng, epsilon=1e-3):
    """The standard deviation, over random batch-mates, of one example's BN output.

    Args:
        example, population, draws, rng, epsilon: as in :func:`batch_output_samples`.
        batch_sizes: the batch sizes B to measure at, each >= 2.

    Returns:
        array of shape (len(batch_sizes), D): for each B and feature, the standard
        deviation (``ddof=1``) of the example's normalised value over ``draws`` batches.
    """
    sizes = [_check_batch_size(b, "batch_sizes") for b in batch_sizes]
    if check_positive_integer(draws, "draws") < 2:
        raise ValueError(f"draws must be at least 2 to measure a spread, got {draws}")
    return np.stack(
        [
            batch_output_samples(example, population, b, draws, rng=rng, epsilon=epsilon).std(
                axis=0, ddof=1
            )
            for b in sizes
        ]
    )


def mean_noise_variance(batch_size):
    """Variance of the batch mean over random batch-mates, in units of sigma**2, for one
    fixed example and ``B - 1`` independent batch-mates: ``(B - 1) / B**2`` (exact)."""
    b = np.asarray(batch_size, dtype=np.float64)
    if np.any(b < 1) or np.any(b != np.round(b)):
        raise ValueError(f"batch_size must be a positive integer (or array of them), got {b}")
    return (b - 1.0) / b**2


def standardised_moments(values):
    """Mean, standard deviation, skewness and kurtosis (not excess) of ``values`` along
    axis 0, population-style (divide by N).

    Args:
        values: array of shape (N,) or (N, D).

    Returns:
        ``(mean, std, skewness, kurtosis)``, each a float or an array of shape (D,).
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim not in (1, 2) or len(v) < 2:
        raise ValueError(f"values must have shape (N,) or (N, D) with N >= 2, got {v.shape}")
    mean = v.mean(axis=0)
    centred = v - mean
    var = np.mean(centred**2, axis=0)
    if np.any(var == 0):
        raise ValueError("values must not be constant: a constant feature has no skewness")
    std = np.sqrt(var)
    return mean, std, np.mean(centred**3, axis=0) / std**3, np.mean(centred**4, axis=0) / var**2


def predicted_spread(z, batch_size, *, skewness=0.0, kurtosis=3.0):
    """Leading-order standard deviation of BN's output for an example at ``z`` standard
    deviations from the mean, over ``batch_size - 1`` random batch-mates:
    ``sqrt((1 + z * skewness + z**2 * (kurtosis - 1) / 4) / B)``.

    The defaults are those of a normal distribution. First order in the fluctuations of the
    batch statistics; epsilon and terms of order 1/B**2 are left out (see the book).
    """
    b = np.asarray(batch_size, dtype=np.float64)
    if np.any(b < 2):
        raise ValueError(f"batch_size must be at least 2, got {batch_size!r}")
    k = np.asarray(kurtosis, dtype=np.float64)
    if np.any(k < 1):
        raise ValueError(f"kurtosis must be >= 1 (it is for every distribution), got {kurtosis!r}")
    z = np.asarray(z, dtype=np.float64)
    factor = 1.0 + z * skewness + z**2 * (k - 1.0) / 4.0
    return np.sqrt(np.maximum(factor, 0.0) / b)


def ghost_batchnorm_forward(x, gamma, beta, virtual_batch_size, epsilon=1e-3, axis=-1):
    """Ghost BN in training mode: each block of ``virtual_batch_size`` consecutive rows of
    ``x`` is normalised with its own mean and biased variance.

    Args:
        x: array of shape (N, ...), the batch axis first; N must be a multiple of
            ``virtual_batch_size``.
        gamma, beta: arrays of shape (C,), C = x.shape[axis].
        virtual_batch_size: rows per ghost batch, >= 2 (N itself gives plain BN).
        epsilon: added to each ghost batch's variance.
        axis: the feature axis, as in :func:`bncourse.numpy_bn.batchnorm_forward`.

    Returns:
        ``(out, mean, var)``: ``out`` of x's shape; ``mean`` and ``var`` of shape
        (N // virtual_batch_size, C), the statistics of each ghost batch.
    """
    x = np.asarray(x)
    if x.ndim < 2:
        raise ValueError(f"x must have at least 2 dimensions (a batch axis first), got {x.shape}")
    v = _check_batch_size(virtual_batch_size, "virtual_batch_size")
    if len(x) % v:
        raise ValueError(
            f"virtual_batch_size={v} must divide the batch size, got a batch of {len(x)}"
        )
    outs, means, variances = [], [], []
    for start in range(0, len(x), v):
        out, cache = batchnorm_forward(x[start : start + v], gamma, beta, epsilon, axis)
        outs.append(out)
        means.append(cache["mean"])
        variances.append(cache["var"])
    return np.concatenate(outs), np.stack(means), np.stack(variances)


def expected_batch_statistics(model, x, batch_size, *, seed=0, chunk=2048):
    """Set the moving statistics of every BN layer of a Sequential ``model`` to the average,
    over random batches of ``batch_size`` examples of ``x``, of the batch mean and biased
    variance that layer's input has with the current weights.

    This is what the moving averages estimate (``batch_size`` is the virtual batch size for
    ghost BN), without their lag behind the weights or their noise: the value they would
    settle at if the weights stopped changing. Unlike recomputing the statistics of the
    whole set (``bncourse.experiments.common.recompute_bn_statistics``), it keeps the
    average batch variance, which is ``(B - 1) / B`` times the whole set's. Layers are done
    in order, each seeing the inputs it sees in inference. Features on the last axis.

    Args:
        model: a Sequential Keras model; its BN layers are ``keras.layers.BatchNormalization``
            or :class:`bncourse.keras_bn.BatchNorm` (and so :class:`GhostBatchNorm`).
        x: array of shape (N, ...), the examples (training images); N is cut to a multiple
            of ``batch_size``.
        batch_size: B >= 2, the examples per batch the statistics are taken over.
        seed: seeds the random division of ``x`` into batches.
        chunk: how many examples go through a layer at once.
    """
    batch_size = _check_batch_size(batch_size)
    if len(x) < batch_size:
        raise ValueError(f"x must hold at least batch_size={batch_size} examples, got {len(x)}")
    order = np.random.default_rng(seed).permutation(len(x))[: len(x) // batch_size * batch_size]
    h = np.asarray(x)[order]
    for layer in model.layers:
        if isinstance(layer, (keras.layers.BatchNormalization, BatchNorm)):
            flat = h.reshape(-1, batch_size, int(np.prod(h.shape[1:-1])), h.shape[-1])
            flat = flat.reshape(flat.shape[0], -1, h.shape[-1]).astype(np.float64)
            mean = flat.mean(axis=1)  # per batch and feature
            var = np.mean((flat - mean[:, None, :]) ** 2, axis=1)  # two passes, biased
            layer.moving_mean.assign(mean.mean(axis=0).astype("float32"))
            layer.moving_variance.assign(var.mean(axis=0).astype("float32"))
        h = np.concatenate(
            [
                keras.ops.convert_to_numpy(layer(h[i : i + chunk], training=False))
                for i in range(0, len(h), chunk)
            ]
        )


@keras.saving.register_keras_serializable(package="bncourse")
class GhostBatchNorm(BatchNorm):
    """Ghost batch normalisation: :class:`bncourse.keras_bn.BatchNorm` whose training-mode
    statistics come from blocks of ``virtual_batch_size`` consecutive examples.

    In training (``training=True`` and ``layer.trainable``) the batch of N examples is cut
    into N / v ghost batches of v examples; each is normalised with its own mean and biased
    variance, and gamma and beta are shared. The moving statistics are updated once per
    call, with the average over the ghost batches of their means and of their variances::

        moving_mean     = moving_mean * momentum     + mean(ghost means)     * (1 - momentum)
        moving_variance = moving_variance * momentum + mean(ghost variances) * (1 - momentum)

    This is what Keras 2's ``BatchNormalization(virtual_batch_size=v)`` did (its source says
    that updating once per ghost batch, in sequence, would be the exact rule). Keras 2 took
    every (N / v)-th example into one ghost batch rather than consecutive ones; with
    shuffled batches the two are the same in distribution. In inference it is plain BN with
    the moving statistics.

    Args:
        virtual_batch_size: v >= 2, the examples per ghost batch; it must divide the size
            of every training batch (so make the training set a multiple of the batch size).
        **kwargs: those of :class:`bncourse.keras_bn.BatchNorm`. Masks are not supported.
    """

    def __init__(self, virtual_batch_size, **kwargs):
        super().__init__(**kwargs)
        self.virtual_batch_size = _check_batch_size(virtual_batch_size, "virtual_batch_size")

    def call(self, inputs, training=None, mask=None):
        if not (training and self.trainable):
            return super().call(inputs, training=training, mask=mask)
        if mask is not None:
            raise ValueError("GhostBatchNorm does not support masks; got a mask in training")
        v = self.virtual_batch_size
        n = inputs.shape[0]
        if isinstance(n, numbers.Integral) and n % v:
            raise ValueError(
                f"virtual_batch_size={v} must divide the batch size, got a batch of {n} "
                "(make the training set a multiple of the batch size)"
            )
        compute = (
            "float64" if keras.backend.standardize_dtype(inputs.dtype) == "float64" else "float32"
        )
        x = ops.cast(inputs, compute)
        ghosts = ops.reshape(x, (-1, v, *x.shape[1:]))  # (N / v, v, ...)
        axes = tuple(a + 1 for a in self._reduction_axes)  # not over the ghost axis 0
        mean = ops.mean(ghosts, axis=axes, keepdims=True)
        var = ops.mean(ops.square(ghosts - mean), axis=axes, keepdims=True)
        m = self.momentum
        self.moving_mean.assign(
            ops.cast(self.moving_mean, compute) * m
            + ops.reshape(ops.mean(mean, axis=0), (-1,)) * (1.0 - m)
        )
        self.moving_variance.assign(
            ops.cast(self.moving_variance, compute) * m
            + ops.reshape(ops.mean(var, axis=0), (-1,)) * (1.0 - m)
        )
        shape = (1, *self._broadcast_shape)
        inv_std = ops.rsqrt(var + self.epsilon)
        if self.scale:
            inv_std = inv_std * ops.reshape(ops.cast(self.gamma, compute), shape)
        out = (ghosts - mean) * inv_std
        if self.center:
            out = out + ops.reshape(ops.cast(self.beta, compute), shape)
        return ops.cast(ops.reshape(out, ops.shape(x)), self.compute_dtype)

    def get_config(self):
        return {**super().get_config(), "virtual_batch_size": self.virtual_batch_size}
