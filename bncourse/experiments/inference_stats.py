"""Claim 12, parts a and b: at inference BN normalises with the moving mean and variance it
collected in training (12a), and those are a good stand-in for the statistics of the data
once training has run long enough (12b). The tutorial CNN with BN momentum 0.99 (Keras's
default) and 0.9, trained for a short and a long run; test accuracy with the moving
statistics and with statistics recomputed over training images, weights frozen.

This is also the ablation that isolates the lag of the moving statistics which makes BN look
slow in inference-mode validation curves (claim 2 is measured on training curves instead).
"""

from __future__ import annotations

import time

import numpy as np

from bncourse import data
from bncourse.experiments.common import fashion_subset, fmt, paired, recompute_bn_statistics
from bncourse.experiments.registry import Experiment, MissingRuns, settings_configs
from bncourse.stats import t_interval
from bncourse.verdicts import effect, verdict

NAME = "inference-stats"
# 12b is an equivalence claim: recomputing the statistics gains "nothing" when it gains less
# than one point of test accuracy, the margin of claim 8.
STAND_IN_MARGIN = 0.01


def train(config, on_epoch=None):
    """The tutorial CNN (BN after each activation and pooling) with BN momentum 0.99 or 0.9,
    trained for a given number of steps; test accuracy with the moving statistics and with
    statistics recomputed over training images."""
    import keras

    from bncourse import models
    from bncourse.experiments.protocol import set_seed

    set_seed(config["seed"])
    (x, y), (x_test, y_test) = fashion_subset(config["train"], config["test"])
    x, x_test = data.add_channel_axis(x), data.add_channel_axis(x_test)
    momentum = float(config["variant"][1:])
    model = models.build_cnn(
        "after", bn_layer=lambda name: keras.layers.BatchNormalization(momentum=momentum, name=name)
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    rng = np.random.default_rng(config["seed"])
    start = time.perf_counter()
    for _ in range(config["steps"]):
        idx = rng.integers(0, len(x), config["batch_size"])
        model.train_on_batch(x[idx], y[idx])
    if on_epoch is not None:
        on_epoch(0, {}, time.perf_counter() - start)

    def accuracy():
        return float(model.evaluate(x_test, y_test, batch_size=1000, verbose=0)[1])

    moving = accuracy()
    recompute_bn_statistics(model, x[: config["recompute_on"]])
    return {"test_accuracy_moving": moving, "test_accuracy_precise": accuracy()}


def _gain(records):
    """Recomputed minus moving test accuracy, seed by seed."""
    return paired(
        {r["config"]["seed"]: r["test_accuracy_precise"] for r in records},
        {r["config"]["seed"]: r["test_accuracy_moving"] for r in records},
    )


def judge(runs):
    table = {}
    for r in runs[NAME]:
        table.setdefault((r["config"]["variant"], r["config"]["steps"]), []).append(r)
    steps = sorted({s for v, s in table if v == "m0.99"})
    if len(steps) < 2:
        raise MissingRuns("claims 12a and 12b: momentum 0.99 needs a short and a long run")
    numbers = {}
    for (variant, n), rs in sorted(table.items()):
        numbers[f"momentum {variant[1:]}, {n} steps: test accuracy moving vs recomputed"] = (
            f"{fmt((r['test_accuracy_moving'] for r in rs), 3)} vs "
            f"{fmt((r['test_accuracy_precise'] for r in rs), 3)}"
        )
    short, long = table[("m0.99", steps[0])], table[("m0.99", steps[-1])]
    claim12a = verdict(
        "12a",
        "At inference the layer uses the moving mean and variance collected in training",
        NAME,
        [
            effect(
                f"test accuracy with recomputed minus moving statistics after {steps[0]} steps "
                "(momentum 0.99)",
                t_interval(_gain(short)),
            )
        ],
        rule="after a short run the moving statistics still lag far behind the data's: if "
        "inference used them, recomputing them would raise test accuracy (interval above 0: "
        "supported); if inference used the batch's own statistics, recomputing could not "
        "raise it (a loss, interval below 0: contradicted; no measurable change: "
        "inconclusive)",
        numbers=numbers,
    )
    claim12b = verdict(
        "12b",
        "After enough training the moving statistics are a good stand-in for the data's statistics",
        NAME,
        [
            effect(
                f"test accuracy with recomputed minus moving statistics after {steps[-1]} "
                "steps (momentum 0.99)",
                t_interval(_gain(long)),
                threshold=STAND_IN_MARGIN,
                side="below",
            )
        ],
        rule=f"an equivalence test: the claim predicts that recomputing the statistics exactly "
        f"gains less than {STAND_IN_MARGIN} of test accuracy after a long run; supported if "
        f"the whole interval lies below {STAND_IN_MARGIN}, contradicted if above",
    )
    return [claim12a, claim12b]


EXPERIMENTS = (
    Experiment(
        name=NAME,
        title="Tutorial CNN, BN momentum 0.99 and 0.9, short and long training: moving "
        "vs recomputed statistics",
        configs=settings_configs(
            NAME,
            variants=("m0.99", "m0.9"),
            settings={
                "quick": {"train": 5000, "test": 1000, "batch_size": 50, "recompute_on": 2000},
                "full": {"train": 60000, "test": 10000, "batch_size": 250, "recompute_on": 10000},
            },
            seeds={"quick": (0,), "full": (0, 1, 2)},
            sweep=("steps", {"quick": [20, 200], "full": [50, 2000]}),
        ),
        train=train,
        claims=("12a", "12b"),
        judge=judge,
    ),
)
