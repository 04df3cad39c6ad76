"""Claim 5 (BN acts as a regulariser and reduces overfitting): the T1 MLP with and without
BN and with and without dropout, trained with Adam on a training set small enough to
overfit; the gap between training and validation accuracy, seed by seed."""

from __future__ import annotations

from bncourse.experiments.common import (
    by_variant,
    fashion_subset,
    fmt,
    paired,
    progress_callbacks,
    require,
)
from bncourse.experiments.registry import Experiment, settings_configs
from bncourse.stats import t_interval
from bncourse.verdicts import effect, verdict

NAME = "regularisation"
VARIANTS = ("none", "bn", "dropout", "bn+dropout")
DROPOUT_RATE = 0.3  # the share of each hidden layer's outputs that dropout zeroes
BATCH_SIZE = 64


def train(config, on_epoch=None):
    """The T1 MLP with or without BN (before each ReLU) and with or without dropout
    (``DROPOUT_RATE`` after each hidden layer), trained with Adam on a training set small
    enough to overfit; records training, validation and test accuracy, all measured in
    inference mode."""
    import keras

    from bncourse.experiments.protocol import set_seed
    from bncourse.models import make_bn_layer

    set_seed(config["seed"])
    (x, y), (x_test, y_test) = fashion_subset(config["train"] + config["val"], config["test"])
    x_train, y_train = x[: config["train"]], y[: config["train"]]
    x_val, y_val = x[config["train"] :], y[config["train"] :]
    bn = "bn" in config["variant"]
    dropout = "dropout" in config["variant"]
    layers = [keras.Input((28, 28)), keras.layers.Flatten()]
    for i, units in enumerate((300, 200, 100), start=1):
        layers.append(keras.layers.Dense(units, use_bias=not bn))
        if bn:
            layers.append(make_bn_layer("keras", f"bn{i}"))
        layers.append(keras.layers.Activation("relu"))
        if dropout:
            layers.append(keras.layers.Dropout(DROPOUT_RATE))
    layers.append(keras.layers.Dense(10, activation="softmax"))
    model = keras.Sequential(layers)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    callbacks = progress_callbacks(on_epoch)
    fit = model.fit(
        x_train,
        y_train,
        validation_data=(x_val, y_val),
        epochs=config["epochs"],
        batch_size=BATCH_SIZE,
        verbose=0,
        callbacks=callbacks,
    )

    def accuracy(xs, ys):
        return float(model.evaluate(xs, ys, batch_size=1000, verbose=0)[1])

    return {
        "val_accuracy": [float(v) for v in fit.history["val_accuracy"]],
        "train_accuracy": accuracy(x_train, y_train),
        "final_val_accuracy": accuracy(x_val, y_val),
        "test": {"accuracy": accuracy(x_test, y_test)},
    }


def gap(record) -> float:
    """Training minus validation accuracy, both in inference mode."""
    return record["train_accuracy"] - record["final_val_accuracy"]


def judge(runs):
    groups = by_variant(runs[NAME])
    require(groups, ("none", "bn"), "claim 5")
    diff = paired(groups["none"], groups["bn"], gap, what="claim 5")
    numbers = {}
    for v in (v for v in VARIANTS if v in groups):
        numbers[f"{v}: train - validation accuracy"] = fmt(gap(r) for r in groups[v])
        numbers[f"{v}: test accuracy"] = fmt(r["test"]["accuracy"] for r in groups[v])
    return [
        verdict(
            "5",
            "BN acts as a regulariser and reduces overfitting",
            NAME,
            [effect("train-validation accuracy gap, no BN minus BN", t_interval(diff))],
            rule="overfitting is the gap between training and validation accuracy (both in "
            "inference mode); the claim predicts a smaller gap with BN: supported if the paired "
            "difference (no BN minus BN) lies above 0, contradicted if below 0 (BN widens the "
            "gap); dropout is shown for scale",
            numbers=numbers,
        )
    ]


EXPERIMENTS = (
    Experiment(
        name=NAME,
        title="T1 MLP with and without BN, with and without dropout, on 10,000 images",
        configs=settings_configs(
            NAME,
            variants=VARIANTS,
            settings={
                "quick": {"train": 3000, "val": 1000, "test": 1000, "epochs": 3},
                "full": {"train": 10000, "val": 5000, "test": 10000, "epochs": 20},
            },
            seeds={"quick": (0,), "full": (0, 1, 2, 3, 4)},
        ),
        train=train,
        claims=("5",),
        judge=judge,
    ),
)
