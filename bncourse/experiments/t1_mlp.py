"""T1: the MLP 300-200-100 on Fashion-MNIST with SGD and Nesterov momentum, with BN before
or after each ReLU or without BN; the verdict on claim 9 (before or after the activation)."""

from __future__ import annotations

from bncourse.experiments.common import by_variant, fmt, paired, require
from bncourse.experiments.protocol import VARIANTS, Protocol
from bncourse.experiments.registry import protocol_experiment
from bncourse.stats import t_interval
from bncourse.verdicts import effect, verdict

T1_DECAY = 1e-6

PROTOCOL = Protocol(
    name="t1-mlp",
    title="MLP 300-200-100 on Fashion-MNIST, SGD with Nesterov momentum (T1)",
    source="T1",
    model="mlp",
    dataset="fashion_mnist",
    variants=VARIANTS,
    seeds=(0, 1, 2),
    optimizer={
        "class": "SGD",
        "learning_rate": {
            "schedule": "InverseTimeDecay",
            "initial_learning_rate": 0.01,
            "decay_steps": 1,
            "decay_rate": T1_DECAY,
        },
        "momentum": 0.9,
        "nesterov": True,
    },
    legacy={
        "arguments": "SGD(lr=0.01, momentum=0.9, nesterov=True, decay=1e-6)",
        "translation": [
            "lr=0.01 -> learning_rate (Keras 3 has no lr= argument)",
            "decay=1e-6 -> learning_rate=InverseTimeDecay(initial_learning_rate=0.01, "
            "decay_steps=1, decay_rate=1e-6): the old decay set the rate at step t "
            "to lr / (1 + decay * t), which is that schedule",
        ],
    },
    batch_size=32,
    epochs=60,
    validation={"validation": 5000, "method": "head", "keep_in_train": True},
    quick={"train": 6000, "test": 2000, "epochs": 3},
)


def judge(runs):
    """Claim 9: test accuracy with BN after the ReLU minus before it, seed by seed."""
    groups = by_variant(runs["t1-mlp"], "bn")
    require(groups, ("before", "after"), "claim 9")
    diff = paired(
        groups["after"], groups["before"], lambda r: r["test"]["accuracy"], what="claim 9"
    )
    return [
        verdict(
            "9",
            "BN can go before or after the activation; results are mostly better after",
            "t1-mlp",
            [effect("test accuracy, BN after ReLU minus before (T1 MLP)", t_interval(diff))],
            rule="the claim predicts that BN after the activation gives the higher test accuracy: "
            "supported if the paired difference's interval lies above 0, contradicted if BN "
            "before wins (interval below 0), inconclusive if it includes 0",
            numbers={
                "test accuracy, BN before ReLU": fmt(
                    r["test"]["accuracy"] for r in groups["before"]
                ),
                "test accuracy, BN after ReLU": fmt(r["test"]["accuracy"] for r in groups["after"]),
            },
        )
    ]


EXPERIMENTS = (protocol_experiment(PROTOCOL, claims=("9",), judge=judge),)
