"""What the experiments share: data subsets, progress callbacks, grouping runs by seed,
and recomputing BN's statistics."""

from __future__ import annotations

import time

import numpy as np

from bncourse import data
from bncourse.experiments.registry import MissingRuns
from bncourse.stats import mean_std

__all__ = [
    "by_variant",
    "fashion_subset",
    "fmt",
    "paired",
    "per_seed",
    "progress_callbacks",
    "recompute_bn_statistics",
    "require",
    "steady_epoch_seconds",
]


def fmt(values, digits=4) -> str:
    """'mean ± std' of values over seeds."""
    mean, std = mean_std(values)
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def by_variant(records, key="variant") -> dict:
    """{variant: [records]}."""
    out = {}
    for r in records:
        out.setdefault(r["config"][key], []).append(r)
    return out


def require(groups: dict, needed, what: str):
    """Raise :class:`MissingRuns` naming what is missing unless every key is in ``groups``."""
    missing = [k for k in needed if not groups.get(k)]
    if missing:
        raise MissingRuns(f"{what}: no runs of {', '.join(map(str, missing))}")


def per_seed(records, value) -> dict:
    """{seed: value(record)}, one record per seed."""
    out = {}
    for r in records:
        seed = r["config"]["seed"]
        if seed in out:
            raise ValueError(
                f"two runs with seed {seed} in one group ({r['config']['experiment']})"
            )
        out[seed] = value(r)
    return out


def paired(a, b, value=None, *, what="paired runs") -> list:
    """value(a) - value(b) seed by seed, over the seeds both have (in seed order).

    ``a`` and ``b`` are lists of records (then ``value`` reads a number from each) or
    ``{seed: number}`` dicts."""
    if value is not None:
        a, b = per_seed(a, value), per_seed(b, value)
    seeds = sorted(set(a) & set(b))
    if not seeds:
        raise MissingRuns(f"{what}: no seed was run in both")
    return [a[s] - b[s] for s in seeds]


def steady_epoch_seconds(record) -> list:
    """Seconds of each training epoch but the first, which also compiles the training step."""
    seconds = record["epoch_seconds"]
    return seconds[1:] if len(seconds) > 1 else seconds


def progress_callbacks(on_epoch) -> list:
    """Keras callbacks reporting each epoch and its seconds to ``on_epoch`` (progress)."""
    if on_epoch is None:
        return []
    import keras

    clock = {}
    return [
        keras.callbacks.LambdaCallback(
            on_epoch_begin=lambda epoch, logs: clock.update(start=time.perf_counter()),
            on_epoch_end=lambda epoch, logs: on_epoch(
                epoch, dict(logs or {}), time.perf_counter() - clock["start"]
            ),
        )
    ]


def fashion_subset(n_train, n_test):
    """The first ``n_train`` training and ``n_test`` test images of Fashion-MNIST, scaled."""
    (x_train, y_train), (x_test, y_test) = data.load_dataset("fashion_mnist")
    return (
        (data.scale_images(x_train[:n_train]), y_train[:n_train]),
        (data.scale_images(x_test[:n_test]), y_test[:n_test]),
    )


def recompute_bn_statistics(model, x, batch_size=500):
    """Replace every BN layer's moving statistics by the exact mean and (biased) variance of
    its inputs over ``x``, with all weights frozen ("precise BN", Wu & Johnson 2021).

    Layers are done in order, each with the statistics of the earlier ones already replaced,
    so every BN sees the inputs it will see in inference.
    """
    import keras

    from bncourse.keras_bn import BatchNorm

    for index, layer in enumerate(model.layers):
        if not isinstance(layer, (keras.layers.BatchNormalization, BatchNorm)):
            continue
        before = keras.Sequential([keras.Input(model.input_shape[1:]), *model.layers[:index]])
        total, total_sq, count = 0.0, 0.0, 0
        for start in range(0, len(x), batch_size):
            h = keras.ops.convert_to_numpy(before(x[start : start + batch_size], training=False))
            h = h.reshape(-1, h.shape[-1]).astype(np.float64)
            total = total + h.sum(axis=0)
            count += len(h)
        mean = total / count
        for start in range(0, len(x), batch_size):
            h = keras.ops.convert_to_numpy(before(x[start : start + batch_size], training=False))
            h = h.reshape(-1, h.shape[-1]).astype(np.float64)
            total_sq = total_sq + ((h - mean) ** 2).sum(axis=0)  # two passes, as BN does
        layer.moving_mean.assign(mean.astype("float32"))
        layer.moving_variance.assign((total_sq / count).astype("float32"))
