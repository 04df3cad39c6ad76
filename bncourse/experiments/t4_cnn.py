"""T3/T4's CNN on Fashion-MNIST (Adam, batch 250, 25 epochs, ``validation_split=0.2``), and
the verdict on claim 2 (BN speeds up convergence), read from this CNN and the T1 MLP.

Convergence is measured as the claim means it: how many epochs the *training* loss and the
training accuracy (as ``fit`` reports them) take to reach a level, seed by seed. Validation
accuracy in inference mode would also measure the lag of BN's moving statistics behind the
weights (momentum 0.99), which the experiment ``inference-stats`` isolates.
"""

from __future__ import annotations

import statistics

from bncourse.experiments.common import by_variant, paired, require
from bncourse.experiments.protocol import VARIANTS, cnn_protocol
from bncourse.experiments.registry import MissingRuns, protocol_experiment
from bncourse.stats import t_interval
from bncourse.verdicts import effect, verdict

PROTOCOL = cnn_protocol("t4-cnn", "Fashion-MNIST", "T3/T4", "fashion_mnist", VARIANTS)


def epochs_to(curve, reached) -> int:
    """The first epoch (1-based) whose value satisfies ``reached``; len + 1 if none does."""
    return next((i for i, v in enumerate(curve, start=1) if reached(v)), len(curve) + 1)


def convergence_effects(name, records) -> tuple:
    """Effects of claim 2 for one protocol: epochs without BN minus epochs with it to reach
    the training loss and accuracy that every variant reaches, on average, by half-way
    (so no run is cut off by the end of training). Positive: BN converges faster."""
    groups = by_variant(records, "bn")
    require(groups, ("none",), f"claim 2 ({name})")
    if not {"before", "after"} & set(groups):
        raise MissingRuns(f"claim 2 ({name}): no runs with BN")
    half = max(1, len(records[0]["history"]["loss"]) // 2) - 1
    loss_level = max(
        statistics.fmean(r["history"]["loss"][half] for r in rs) for rs in groups.values()
    )
    acc_level = min(
        statistics.fmean(r["history"]["accuracy"][half] for r in rs) for rs in groups.values()
    )
    effects, numbers = [], {}
    for bn in (v for v in ("before", "after") if v in groups):
        for what, key, reached in (
            (f"training loss {loss_level:.3g}", "loss", lambda v: v <= loss_level),
            (f"training accuracy {acc_level:.3g}", "accuracy", lambda v: v >= acc_level),
        ):

            def steps(r, key=key, reached=reached):
                return epochs_to(r["history"][key], reached)

            diff = paired(groups["none"], groups[bn], steps, what=f"claim 2 ({name})")
            effects.append(
                effect(f"{name}, BN {bn}: epochs to {what}, no BN minus BN", t_interval(diff))
            )
    for bn, rs in groups.items():
        numbers[f"{name}, {bn}: final training loss"] = (
            f"{statistics.fmean(r['history']['loss'][-1] for r in rs):.4f}"
        )
    return effects, numbers


def judge(runs):
    effects, numbers = [], {}
    for name in ("t4-cnn", "t1-mlp"):
        if runs.get(name):
            more, nums = convergence_effects(name, runs[name])
            effects += more
            numbers.update(nums)
    return [
        verdict(
            "2",
            "BN speeds up convergence (fewer epochs to a given accuracy)",
            "t4-cnn, t1-mlp",
            effects,
            rule="for each model and BN placement, the epochs needed to reach a training loss and "
            "a training accuracy that every variant reaches by half-way, without BN minus with "
            "BN, seed by seed: the claim predicts a positive difference. Supported if every "
            "interval lies above 0, contradicted if any lies below 0 (BN slower to fit)",
            numbers=numbers,
        )
    ]


EXPERIMENTS = (protocol_experiment(PROTOCOL, claims=("2",), judge=judge, reads=("t1-mlp",)),)
