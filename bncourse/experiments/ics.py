"""Claim 1, in two parts (after Santurkar et al. 2018): (1a) BN reduces the measured drift of a
layer's input distribution during training; (1b) reduced drift is why BN helps. Three
hidden layers of 100 sigmoid units, as in Ioffe & Szegedy's figure 1, without BN, with BN,
and with BN followed by per-step random noise that puts the drift back ("noisy BN")."""

from __future__ import annotations

import math
import time

import numpy as np

from bncourse.experiments.common import by_variant, fashion_subset, fmt, paired, require
from bncourse.experiments.registry import Experiment, settings_configs
from bncourse.stats import t_interval
from bncourse.verdicts import effect, verdict

NAME = "ics"
ICS_PERCENTILES = (15, 50, 85)
# Ioffe & Szegedy's figure 1 network: three hidden layers of 100 sigmoid units.
HIDDEN_UNITS = (100, 100, 100)
# The share of the probes, from the start of training, that the drift leaves out: it judges
# the settled behaviour, not the first adjustments.
DRIFT_LEFT_OUT = 0.1


def drift_start(n_probes: int) -> int:
    """The index of the first of ``n_probes`` probes that :func:`ics_drift` counts."""
    return int(n_probes * DRIFT_LEFT_OUT)


def noisy_shift_layer():
    """A layer that, in training only, scales and shifts each feature by fresh random amounts
    at every step (Santurkar et al. 2018's "noisy BN"): it creates distribution shift on
    purpose, after BN has removed it."""
    import keras

    class NoisyShift(keras.layers.Layer):
        def __init__(self, scale_std=0.5, shift_std=1.0, seed=0, **kwargs):
            super().__init__(**kwargs)
            self.scale_std, self.shift_std = scale_std, shift_std
            self.seed_generator = keras.random.SeedGenerator(seed)

        def call(self, inputs, training=None):
            if not training:
                return inputs
            shape = (inputs.shape[-1],)
            scale = keras.ops.exp(
                keras.random.normal(shape, stddev=self.scale_std, seed=self.seed_generator)
            )
            shift = keras.random.normal(shape, stddev=self.shift_std, seed=self.seed_generator)
            return inputs * scale + shift

    return NoisyShift


def train(config, on_epoch=None):
    """Ioffe & Szegedy's figure 1 setting on Fashion-MNIST: three hidden layers of 100
    sigmoid units, with BN before each sigmoid, without, or with BN followed by per-step
    noise. Every ``probe_every`` steps it records the 15th, 50th and 85th percentiles of one
    unit's sigmoid input over a fixed probe batch (in training mode, as the layer sees it
    while it learns), and the validation accuracy."""
    import keras

    from bncourse.experiments.protocol import set_seed

    set_seed(config["seed"])
    (x, y), (x_test, y_test) = fashion_subset(config["train"], config["test"])
    variant = config["variant"]
    noisy = noisy_shift_layer()
    layers = [keras.Input((28, 28)), keras.layers.Flatten()]
    for i, units in enumerate(HIDDEN_UNITS):
        layers.append(keras.layers.Dense(units, use_bias=variant == "none"))
        if variant != "none":
            layers.append(keras.layers.BatchNormalization())
        if variant == "noisy-bn":
            layers.append(noisy(seed=config["seed"] * 10 + i))
        layers.append(keras.layers.Activation("sigmoid"))
    layers.append(keras.layers.Dense(10, activation="softmax"))
    model = keras.Sequential(layers)
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=config["learning_rate"]),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    last_sigmoid = max(
        i for i, l in enumerate(model.layers) if isinstance(l, keras.layers.Activation)
    )
    probe_model = keras.Sequential([keras.Input((28, 28)), *model.layers[:last_sigmoid]])
    probe = x_test[: config["probe"]]
    val = x_test[config["probe"] :], y_test[config["probe"] :]
    rng = np.random.default_rng(config["seed"])
    steps, percentiles, val_acc = [], [], []
    start = time.perf_counter()
    for step in range(config["steps"] + 1):
        if step % config["probe_every"] == 0:
            # In training mode: the distribution the sigmoid meets while it trains, noise
            # included. That call updates BN's moving statistics, so they are put back.
            saved = [v.numpy() for v in model.non_trainable_weights]
            h = keras.ops.convert_to_numpy(probe_model(probe, training=True))[:, config["unit"]]
            for v, value in zip(model.non_trainable_weights, saved):
                v.assign(value)
            steps.append(step)
            percentiles.append([float(v) for v in np.percentile(h, ICS_PERCENTILES)])
            val_acc.append(float(model.evaluate(*val, batch_size=1000, verbose=0)[1]))
        if step < config["steps"]:
            idx = rng.integers(0, len(x), config["batch_size"])
            model.train_on_batch(x[idx], y[idx])
    if on_epoch is not None:
        on_epoch(0, {}, time.perf_counter() - start)
    return {"steps": steps, "percentiles": percentiles, "val_accuracy": val_acc}


def ics_drift(record) -> float:
    """How much the probed unit's input distribution moves over training: the standard
    deviation of its median over the probes after the first ``DRIFT_LEFT_OUT`` of them (a
    share), divided by the mean distance between its 15th and 85th percentiles."""
    p = np.array(record["percentiles"])
    p = p[drift_start(len(p)) :]
    return float(p[:, 1].std() / max((p[:, 2] - p[:, 0]).mean(), 1e-12))


def judge(runs):
    groups = by_variant(runs[NAME])
    require(groups, ("none", "bn", "noisy-bn"), "claims 1a and 1b")
    log_ratio = paired(
        groups["none"], groups["bn"], lambda r: math.log(ics_drift(r)), what="claim 1a"
    )
    cost = paired(
        groups["bn"], groups["noisy-bn"], lambda r: r["val_accuracy"][-1], what="claim 1b"
    )
    numbers = {}
    for v in ("none", "bn", "noisy-bn"):
        numbers[f"{v}: drift of the unit's input (median sd / 15-85 spread)"] = fmt(
            (ics_drift(r) for r in groups[v]), 3
        )
        numbers[f"{v}: final validation accuracy"] = fmt(
            (r["val_accuracy"][-1] for r in groups[v]), 3
        )
    restored = paired(
        groups["noisy-bn"], groups["bn"], lambda r: math.log(ics_drift(r)), what="claim 1b"
    )
    numbers["noise puts the drift back: drift of noisy BN over BN (geometric mean)"] = (
        f"{math.exp(float(np.mean(restored))):.2f}x"
    )
    claim1a = verdict(
        "1a",
        "BN reduces the measured drift of each layer's input distribution during "
        "training (internal covariate shift)",
        NAME,
        [effect("log of drift without BN over drift with BN", t_interval(log_ratio))],
        rule="drift as defined in bncourse.experiments.ics.ics_drift, compared seed by seed "
        "on a log scale (a ratio); the claim predicts less drift with BN: supported if the "
        "interval of the log ratio lies above 0, contradicted if below 0",
        numbers=numbers,
    )
    claim1b = verdict(
        "1b",
        "Reduced drift is why BN helps",
        NAME,
        [
            effect(
                "validation accuracy of BN minus BN with the drift put back (noisy BN)",
                t_interval(cost),
            )
        ],
        rule="noisy BN keeps BN's normalisation but restores (more than) the drift; if reduced "
        "drift were why BN helps, restoring it would cost accuracy: supported if the paired "
        "difference lies above 0, contradicted if below 0 (noisy BN does better)",
    )
    return [claim1a, claim1b]


EXPERIMENTS = (
    Experiment(
        name=NAME,
        title="Three hidden layers of 100 sigmoid units: a unit's input distribution over "
        "training, without BN, with BN, with BN plus per-step noise",
        configs=settings_configs(
            NAME,
            variants=("none", "bn", "noisy-bn"),
            settings={
                "quick": {
                    "train": 10000,
                    "test": 2000,
                    "probe": 1000,
                    "unit": 0,
                    "steps": 300,
                    "probe_every": 30,
                    "batch_size": 60,
                    "learning_rate": 0.5,
                },
                "full": {
                    "train": 60000,
                    "test": 10000,
                    "probe": 2000,
                    "unit": 0,
                    "steps": 5000,
                    "probe_every": 100,
                    "batch_size": 60,
                    "learning_rate": 0.5,
                },
            },
            seeds={"quick": (0,), "full": (0, 1, 2, 3, 4)},
        ),
        train=train,
        claims=("1a", "1b"),
        judge=judge,
    ),
)
