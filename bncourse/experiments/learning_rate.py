"""Claim 6 (BN allows higher learning rates): a six-layer MLP with and without BN, plain SGD
at learning rates 0.001 to 10, against a frozen control."""

from __future__ import annotations

from bncourse.experiments import sweep
from bncourse.experiments.registry import Experiment, settings_configs
from bncourse.stats import t_interval
from bncourse.verdicts import effect, verdict

NAME = "learning-rate"
RATES = {"quick": [0.01, 1.0], "full": [0.001, 0.01, 0.1, 1.0, 10.0]}


def largest_step(tab, variant, seed, values) -> int:
    """Index in the sweep of the largest learning rate that trains; -1 if none does."""
    trained = sweep.trained_values(tab, variant, seed)
    return max((values.index(v) for v in trained), default=-1)


def judge(runs):
    tab = sweep.checked_table(runs[NAME], "learning_rate", 6)
    seeds = sorted(set(tab["none"]) & set(tab["bn"]))
    values = sorted(tab["bn"][seeds[0]])
    diff = [
        largest_step(tab, "bn", s, values) - largest_step(tab, "none", s, values) for s in seeds
    ]
    numbers = sweep.accuracy_rows(tab, "learning rate")

    def largest(v, s):
        i = largest_step(tab, v, s, values)
        return f"{values[i]:g}" if i >= 0 else "none"

    for label, text in sweep.by_seed(tab, largest).items():
        numbers[f"largest learning rate that trains, {label}, by seed"] = text
    return [
        verdict(
            "6",
            "BN allows higher learning rates",
            NAME,
            [
                effect(
                    "largest learning rate that trains, BN minus no BN, in steps of the sweep "
                    "(one step = 10x)",
                    t_interval(diff),
                )
            ],
            rule=f"a network trains at a learning rate when its best validation accuracy beats the "
            f"same network with frozen hidden layers by more than {sweep.CONTROL_MARGIN}; the claim "
            "predicts the largest such rate is higher with BN: supported if the paired "
            "difference's interval lies above 0, contradicted if below 0",
            numbers=numbers,
        )
    ]


EXPERIMENTS = (
    Experiment(
        name=NAME,
        title=f"{sweep.MODEL}, with and without BN and a frozen control, plain SGD at learning "
        f"rates {min(RATES['full']):g} to {max(RATES['full']):g}",
        configs=settings_configs(
            NAME,
            variants=sweep.VARIANTS,
            settings=sweep.SETTINGS,
            seeds={"quick": (0,), "full": (0, 1, 2, 3, 4)},
            sweep=("learning_rate", RATES),
        ),
        train=sweep.train,
        claims=("6",),
        judge=judge,
    ),
)
