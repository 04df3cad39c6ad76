"""T4 on its own dataset: the tutorials' CNN on MNIST with and without BN (Adam, batch 250,
25 epochs, ``validation_split=0.2``), with training, validation and test accuracy recorded
after every epoch; the verdict on claim 7 (BN improves accuracy), taken on test accuracy.

T4 quotes 0.97 without BN and 0.992 with BN, read off its training log without saying
which accuracy or which epoch; :func:`matching_epochs` finds where each of the three
recorded accuracies rounds to those numbers.
"""

from __future__ import annotations

import statistics

from bncourse.experiments.common import by_variant, fmt, paired, require
from bncourse.experiments.protocol import cnn_protocol
from bncourse.experiments.registry import protocol_experiment
from bncourse.stats import t_interval
from bncourse.verdicts import effect, verdict

PROTOCOL = cnn_protocol(
    "t4-cnn-mnist",
    "MNIST",
    "T4",
    "mnist",
    ("none", "after"),
    note="T4's own dataset",
    test_every_epoch=True,
)
# T4's numbers as its text gives them, with the digits it gives (SEEDS.md).
TUTORIAL_T4 = {"none": "0.97", "after": "0.992"}
CURVES = {"training (fit's log)": "accuracy", "validation": "val_accuracy", "test": "test_accuracy"}


def mean_curve(records, key) -> list:
    """The per-epoch mean over seeds of ``history[key]``."""
    return [statistics.fmean(values) for values in zip(*(r["history"][key] for r in records))]


def matching_epochs(curve, reported: str) -> list:
    """The epochs (1-based) at which ``curve`` rounds to ``reported`` at its digits."""
    digits = len(reported.split(".")[1])
    return [i for i, v in enumerate(curve, start=1) if f"{v:.{digits}f}" == reported]


def _epochs_text(epochs) -> str:
    if not epochs:
        return "none"
    return (
        ", ".join(str(e) for e in epochs)
        if len(epochs) <= 6
        else (f"{len(epochs)} epochs, {epochs[0]} to {epochs[-1]}")
    )


def judge(runs):
    groups = by_variant(runs["t4-cnn-mnist"], "bn")
    require(groups, ("none", "after"), "claim 7")
    diff = paired(groups["after"], groups["none"], lambda r: r["test"]["accuracy"], what="claim 7")
    numbers = {}
    for bn, label in (("none", "no BN"), ("after", "BN")):
        for what, key in CURVES.items():
            final = fmt((r["history"][key][-1] for r in groups[bn]), 4)
            numbers[f"{label}: {what} accuracy at the last epoch"] = final
        for what, key in CURVES.items():
            matches = matching_epochs(mean_curve(groups[bn], key), TUTORIAL_T4[bn])
            numbers[
                f"{label}: epochs whose mean {what} accuracy rounds to T4's {TUTORIAL_T4[bn]}"
            ] = _epochs_text(matches)
    return [
        verdict(
            "7",
            "BN improves accuracy (T4: 0.97 without, 0.992 with)",
            "t4-cnn-mnist",
            [effect("MNIST test accuracy, BN minus no BN (T4 CNN, 25 epochs)", t_interval(diff))],
            rule="the claim predicts a higher test accuracy with BN on T4's own data and protocol: "
            "supported if the paired difference's interval lies above 0, contradicted if it "
            "lies below 0, inconclusive if it includes 0",
            numbers=numbers,
        )
    ]


EXPERIMENTS = (protocol_experiment(PROTOCOL, claims=("7",), judge=judge),)
