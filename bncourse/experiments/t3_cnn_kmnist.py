"""T3: the tutorials' CNN on KMNIST. KMNIST has no offline source: its loader downloads the
authors' files (:func:`bncourse.data.download_kmnist`), so this experiment runs only where
they can be had, and the reproduction skips it with a note elsewhere."""

from __future__ import annotations

from bncourse.experiments.protocol import cnn_protocol
from bncourse.experiments.registry import protocol_experiment

PROTOCOL = cnn_protocol(
    "t3-cnn-kmnist", "KMNIST", "T3", "kmnist", ("none", "after"), note="T3's dataset"
)

EXPERIMENTS = (protocol_experiment(PROTOCOL),)
