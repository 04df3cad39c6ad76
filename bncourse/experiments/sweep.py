"""What the initial-scale and learning-rate sweeps share: a six-layer MLP trained at each
swept value, with BN, without, and a control that shows what "trains" means.

The control is the network without BN with its hidden layers frozen at their initial
weights: only the output layer learns, on random features. A network *trains* at a swept
value only when its best validation accuracy beats that control's, same seed and value, by
more than :data:`CONTROL_MARGIN`.
"""

from __future__ import annotations

import numpy as np

from bncourse.experiments.common import fashion_subset, progress_callbacks, require
from bncourse.experiments.registry import MissingRuns

DEEP_MLP = (100,) * 6  # six hidden layers: deep enough for the initial scale to matter
# The initial-scale sweep's optimizer (the learning-rate sweep uses plain SGD at each rate).
INIT_SCALE_SGD = {"learning_rate": 0.01, "momentum": 0.9}
BATCH_SIZE = 64
MODEL = f"MLP with {len(DEEP_MLP)} hidden layers of {DEEP_MLP[0]}"  # for the titles
VARIANTS = ("none", "bn", "frozen")
# Five points of accuracy: several times the seed-to-seed spread of a network that trains
# (about one point here), and small next to what training adds over random features.
CONTROL_MARGIN = 0.05
SETTINGS = {
    "quick": {"train": 4000, "val": 1000, "epochs": 2},
    "full": {"train": 10000, "val": 5000, "epochs": 5},
}


def train(config, on_epoch=None):
    """A six-layer MLP with BN before each ReLU ('bn'), without ('none'), or without and
    with its hidden layers frozen ('frozen', the control), trained with plain SGD (the
    learning-rate sweep) or SGD with momentum (the initial-scale sweep); records the
    validation accuracy per epoch and whether the loss became infinite or NaN."""
    import keras

    from bncourse import models
    from bncourse.experiments.protocol import set_seed

    set_seed(config["seed"])
    (x, y), _ = fashion_subset(config["train"] + config["val"], 0)
    x_train, y_train = x[: config["train"]], y[: config["train"]]
    x_val, y_val = x[config["train"] :], y[config["train"] :]
    scale = config.get("init_scale", 1.0)
    # He initialisation times `scale`: the weights' standard deviation is multiplied by it.
    init = keras.initializers.VarianceScaling(
        scale=2.0 * scale**2, mode="fan_in", distribution="truncated_normal"
    )
    bn = "before" if config["variant"] == "bn" else None
    model = models.build_mlp(bn, hidden_units=DEEP_MLP, kernel_initializer=init)
    if config["variant"] == "frozen":
        dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
        for layer in dense[:-1]:
            layer.trainable = False
    if "learning_rate" in config:
        optimizer = keras.optimizers.SGD(learning_rate=config["learning_rate"])
    else:
        optimizer = keras.optimizers.SGD(**INIT_SCALE_SGD)
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])

    def stop_if_not_finite(batch, logs):
        if logs and not np.isfinite(logs.get("loss", 0.0)):
            model.stop_training = True  # quietly, unlike keras.callbacks.TerminateOnNaN

    callbacks = [
        keras.callbacks.LambdaCallback(on_train_batch_end=stop_if_not_finite),
        *progress_callbacks(on_epoch),
    ]
    fit = model.fit(
        x_train,
        y_train,
        validation_data=(x_val, y_val),
        epochs=config["epochs"],
        batch_size=BATCH_SIZE,
        verbose=0,
        callbacks=callbacks,
    )
    losses = fit.history["loss"]
    val = [float(v) for v in fit.history.get("val_accuracy", [])]
    diverged = bool(not np.all(np.isfinite(losses)) or len(losses) < config["epochs"])
    return {
        "val_accuracy": val,
        "loss": [float(v) for v in losses],
        "best_val_accuracy": 0.1 if diverged or not val else max(val),
        "diverged": diverged,
    }


def table(records, key) -> dict:
    """{variant: {seed: {swept value: best validation accuracy}}}."""
    out = {}
    for r in records:
        c = r["config"]
        out.setdefault(c["variant"], {}).setdefault(c["seed"], {})[c[key]] = r["best_val_accuracy"]
    return out


def trained_values(tab, variant, seed) -> list:
    """The swept values at which ``variant`` trains for ``seed`` (beats the control)."""
    control = tab["frozen"].get(seed)
    runs = tab[variant][seed]
    if control is None or set(control) != set(runs):
        raise MissingRuns(
            f"the control (frozen hidden layers) lacks seed {seed} or some swept values"
        )
    return sorted(v for v, acc in runs.items() if acc > control[v] + CONTROL_MARGIN)


def checked_table(records, key, claim) -> dict:
    tab = table(records, key)
    require(tab, VARIANTS, f"claim {claim}")
    return tab


LABELS = {"none": "no BN", "bn": "BN", "frozen": "control (hidden layers frozen)"}


def accuracy_rows(tab, what) -> dict:
    """The verdict's context: mean best validation accuracy at each swept value, by variant
    ("0.01: 0.85, 1: 0.86, ...")."""
    rows = {}
    for variant, label in LABELS.items():
        by_value = {}
        for runs in tab[variant].values():
            for value, acc in runs.items():
                by_value.setdefault(value, []).append(acc)
        rows[f"best validation accuracy by {what}, {label}"] = ", ".join(
            f"{k:g}: {np.mean(v):.2f}" for k, v in sorted(by_value.items())
        )
    return rows


def by_seed(tab, describe) -> dict:
    """{seed: describe(variant, seed)} for BN and no BN, as text per variant."""
    seeds = sorted(set(tab["none"]) & set(tab["bn"]))
    return {LABELS[v]: ", ".join(describe(v, s) for s in seeds) for v in ("none", "bn")}
