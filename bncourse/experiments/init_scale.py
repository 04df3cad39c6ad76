"""Claim 4 (BN makes the network less sensitive to the initial weights): a six-layer MLP with
and without BN, initial weights from 0.01x to 100x He's scale, against a frozen control."""

from __future__ import annotations

from bncourse.experiments import sweep
from bncourse.experiments.registry import Experiment, settings_configs
from bncourse.stats import t_interval
from bncourse.verdicts import effect, verdict

NAME = "init-scale"
SCALES = {"quick": [0.01, 1.0, 100.0], "full": [0.01, 0.1, 1.0, 10.0, 100.0]}


def judge(runs):
    tab = sweep.checked_table(runs[NAME], "init_scale", 4)
    seeds = sorted(set(tab["none"]) & set(tab["bn"]))
    diff = [
        len(sweep.trained_values(tab, "bn", s)) - len(sweep.trained_values(tab, "none", s))
        for s in seeds
    ]
    numbers = sweep.accuracy_rows(tab, "weight scale (x He)")
    for label, text in sweep.by_seed(
        tab, lambda v, s: str(len(sweep.trained_values(tab, v, s)))
    ).items():
        numbers[f"scales that train, {label}, by seed"] = text
    return [
        verdict(
            "4",
            "BN makes the network less sensitive to the initial weights",
            NAME,
            [
                effect(
                    f"swept scales at which the network trains, BN minus no BN (of "
                    f"{len(tab['bn'][seeds[0]])})",
                    t_interval(diff),
                )
            ],
            rule=f"a network trains at a scale when its best validation accuracy beats the same "
            f"network with frozen hidden layers (same seed and scale) by more than "
            f"{sweep.CONTROL_MARGIN}; the claim predicts BN trains at more scales: supported if the "
            "paired difference's interval lies above 0, contradicted if below 0",
            numbers=numbers,
        )
    ]


EXPERIMENTS = (
    Experiment(
        name=NAME,
        title=f"{sweep.MODEL}, with and without BN and a frozen control, initial weights at "
        f"{min(SCALES['full']):g}x to {max(SCALES['full']):g}x He",
        configs=settings_configs(
            NAME,
            variants=sweep.VARIANTS,
            settings=sweep.SETTINGS,
            seeds={"quick": (0,), "full": (0, 1, 2, 3, 4)},
            sweep=("init_scale", SCALES),
        ),
        train=sweep.train,
        claims=("4",),
        judge=judge,
    ),
)
