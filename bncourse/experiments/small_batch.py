"""Claim 12, part c: at small batch sizes the moving statistics no longer match the batch
statistics BN trained with. The tutorial CNN with BN, GroupNorm (8 groups) or Keras's
LayerNormalization before each activation, at batch sizes 2 to 32; for BN, test accuracy
with the moving statistics and with statistics recomputed over training images."""

from __future__ import annotations

from bncourse import data
from bncourse.experiments.common import (
    fashion_subset,
    fmt,
    paired,
    progress_callbacks,
    recompute_bn_statistics,
)
from bncourse.experiments.registry import Experiment, MissingRuns, settings_configs
from bncourse.stats import t_interval
from bncourse.verdicts import effect, verdict

NAME = "small-batch"


def norm_layer(variant, name):
    """'bn': BatchNormalization; 'gn': GroupNormalization(groups=8); 'ln': Keras's
    LayerNormalization with its default axis=-1, which on the convolutions' feature maps
    normalises each position over its channels only, not over (H, W, C) as in Ba et al.
    (2016) (that would be GroupNormalization(groups=1)). Its labels say so."""
    import keras

    if variant == "bn":
        return keras.layers.BatchNormalization(name=name)
    if variant == "gn":
        return keras.layers.GroupNormalization(groups=8, name=name)
    return keras.layers.LayerNormalization(name=name)


def train(config, on_epoch=None):
    """The tutorial CNN with BN, GroupNorm (8 groups) or Keras's LayerNormalization (default
    axis: over channels only) before each activation,
    trained with Adam at a given batch size on a fixed number of images; records the training
    accuracy as fit reports it (training mode) and the test accuracy (inference mode)."""

    from bncourse import models
    from bncourse.experiments.protocol import set_seed

    set_seed(config["seed"])
    (x, y), (x_test, y_test) = fashion_subset(config["train"], config["test"])
    x, x_test = data.add_channel_axis(x), data.add_channel_axis(x_test)
    model = models.build_cnn("before", bn_layer=lambda name: norm_layer(config["variant"], name))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    callbacks = progress_callbacks(on_epoch)
    fit = model.fit(
        x,
        y,
        epochs=config["epochs"],
        batch_size=config["batch_size"],
        verbose=0,
        callbacks=callbacks,
    )

    def accuracy():
        return float(model.evaluate(x_test, y_test, batch_size=1000, verbose=0)[1])

    outcome = {
        "train_accuracy_training_mode": float(fit.history["accuracy"][-1]),
        "test": {"accuracy": accuracy()},
    }
    if config["variant"] == "bn":
        # Separates the two effects of small batches: noisy statistics while training, and
        # moving averages that do not match them (see the inference-stats experiment).
        recompute_bn_statistics(model, x[:5000])
        outcome["test_accuracy_recomputed"] = accuracy()
    return outcome


def judge(runs):
    groups = {}
    for r in runs[NAME]:
        groups.setdefault((r["config"]["variant"], r["config"]["batch_size"]), []).append(r)
    batches = sorted({b for v, b in groups if v == "bn"})
    if not batches:
        raise MissingRuns("claim 12c: no BN runs")
    numbers = {}
    for (variant, batch), rs in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        numbers[f"batch {batch}, {variant}: train (training mode) / test accuracy"] = (
            f"{fmt((r['train_accuracy_training_mode'] for r in rs), 3)} / "
            f"{fmt((r['test']['accuracy'] for r in rs), 3)}"
        )
        if variant == "bn":
            numbers[f"batch {batch}, bn: test accuracy with recomputed statistics"] = fmt(
                (r["test_accuracy_recomputed"] for r in rs), 3
            )
    smallest = groups[("bn", batches[0])]
    gain = paired(
        {r["config"]["seed"]: r["test_accuracy_recomputed"] for r in smallest},
        {r["config"]["seed"]: r["test"]["accuracy"] for r in smallest},
    )
    return [
        verdict(
            "12c",
            "At small batch sizes the moving statistics no longer match the batch "
            "statistics BN trained with",
            NAME,
            [
                effect(
                    f"BN test accuracy with recomputed minus moving statistics at batch "
                    f"{batches[0]}",
                    t_interval(gain),
                )
            ],
            rule="if the moving averages of tiny batches' statistics do not match what BN "
            "normalised with, replacing them by exact statistics of the training data raises "
            "test accuracy: supported if the paired gain lies above 0, contradicted if below 0; "
            "GroupNorm and LayerNorm, which have no batch statistics, are shown for scale",
            numbers=numbers,
        )
    ]


EXPERIMENTS = (
    Experiment(
        name=NAME,
        title="Tutorial CNN with BN, GroupNorm or LayerNormalization (channels only) before each "
        "ReLU, batch sizes 2 to 32",
        configs=settings_configs(
            NAME,
            variants=("bn", "gn", "ln"),
            settings={
                "quick": {"train": 1000, "test": 1000, "epochs": 1},
                "full": {"train": 10000, "test": 10000, "epochs": 3},
            },
            seeds={"quick": (0,), "full": (0, 1, 2)},
            sweep=("batch_size", {"quick": [2, 32], "full": [2, 4, 8, 32]}),
        ),
        train=train,
        claims=("12c",),
        judge=judge,
    ),
)
