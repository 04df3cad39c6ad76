"""T2's toy model: Dense 32 on 8x8 images (64 inputs) with Adam, with and without BN."""

from __future__ import annotations

from bncourse.experiments.protocol import VARIANTS, Protocol
from bncourse.experiments.registry import protocol_experiment

PROTOCOL = Protocol(
    name="small",
    title="Dense 32 on 8x8 images (64 inputs), Adam (T2's toy model)",
    source="T2",
    model="small",
    dataset="fashion_mnist",
    variants=VARIANTS,
    seeds=(0, 1, 2),
    optimizer={"class": "Adam"},
    batch_size=32,
    epochs=10,
    validation={"validation": 0.2, "method": "tail", "keep_in_train": False},
    quick={"train": 6000, "test": 2000, "epochs": 3},
)

EXPERIMENTS = (protocol_experiment(PROTOCOL),)
