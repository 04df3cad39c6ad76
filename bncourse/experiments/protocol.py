"""The tutorials' protocols: run configurations, and training one run.

A :class:`Protocol` is an experiment as a tutorial describes it (model, data, optimizer,
batch size, epochs, validation split), with a ``full`` profile (the protocol as written)
and a ``quick`` one (the same code on a stated subset with fewer epochs, for tests and the
book build). :func:`run_config` turns a protocol, a BN variant, a seed and a profile into a
plain, JSON-able configuration; its hash names the run's result file. :func:`train_run`
trains and evaluates one configuration and returns its result record.

Keras is imported only when a run trains, so the command line starts quickly.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field

import numpy as np

from bncourse import data

__all__ = [
    "Protocol",
    "cnn_protocol",
    "config_hash",
    "describe_optimizer",
    "prepare_data",
    "run_config",
    "train_run",
]

VARIANTS = ("none", "before", "after")
PROFILES = ("quick", "full")


@dataclass(frozen=True)
class Protocol:
    """One experiment of the course: how to train and evaluate each BN variant.

    Attributes:
        name: registry key, also the folder of its results.
        title: one line for tables and figures.
        source: the tutorial it comes from (see the book), or 'course'.
        model: 'mlp', 'cnn' or 'small' (see :mod:`bncourse.models`).
        dataset: 'fashion_mnist', 'mnist' or 'kmnist'.
        variants: the BN placements it compares ('none', 'before', 'after').
        seeds: the seeds of a full reproduction.
        optimizer: the Keras 3 optimizer, as ``{"class": name, **arguments}``; a learning
            rate may be a schedule ``{"schedule": name, **arguments}``.
        legacy: the tutorial's own optimizer arguments where Keras 3 no longer has them,
            with how they were translated (recorded in every result).
        batch_size, epochs: the training loop; ``epochs`` is the full profile's.
        validation: the validation split, as keyword arguments of
            :func:`bncourse.data.split_validation` (``validation``, ``method``) plus
            ``keep_in_train``.
        quick: the quick profile: ``train`` and ``test`` subset sizes (the first images)
            and ``epochs``; a validation count becomes the same fraction of the subset. It
            may also set a smaller ``batch_size``. BN's moving variance starts at 1 and
            forgets it by a factor 0.99 per step, while the first convolution's outputs have
            a variance near 1e-3: a few dozen steps leave the moving variance a hundred
            times too large, and inference-mode accuracy falls to chance (measured: 0.10
            after 48 steps of batch 250 while training accuracy was 0.9). The CNN's quick
            profile takes 800 steps of batch 20, which leaves 0.99**800 = 3e-4 of the start.
        version: bumped whenever the protocol's meaning changes, so that results of the
            old meaning are reported as stale.
        test_every_epoch: also evaluate the test set after every epoch (in inference mode,
            not counted in the epoch's time), so that a tutorial's unlabelled accuracy can be
            matched against training, validation and test accuracy epoch by epoch.
    """

    name: str
    title: str
    source: str
    model: str
    dataset: str
    variants: tuple
    seeds: tuple
    optimizer: dict
    batch_size: int
    epochs: int
    validation: dict
    quick: dict
    legacy: dict = field(default_factory=dict)
    version: int = 1
    test_every_epoch: bool = False


def cnn_protocol(name, data_title, source, dataset, variants, note=None, test_every_epoch=False):
    """The T3/T4 protocol: the tutorials' CNN, Adam defaults, batch 250, 25 epochs, and
    ``validation_split=0.2`` (the last 20% of the training images)."""
    return Protocol(
        name=name,
        title=f"CNN on {data_title}, Adam, batch 250 ({note or source})",
        source=source,
        model="cnn",
        dataset=dataset,
        variants=variants,
        seeds=(0, 1, 2),
        optimizer={"class": "Adam"},
        batch_size=250,
        epochs=25,
        validation={"validation": 0.2, "method": "tail", "keep_in_train": False},
        quick={"train": 10000, "test": 2000, "epochs": 2, "batch_size": 20},
        test_every_epoch=test_every_epoch,
    )


# The protocol `bncourse compare --model M` follows.
DEFAULT_PROTOCOL = {"mlp": "t1-mlp", "cnn": "t4-cnn", "small": "small"}


def config_hash(config: dict) -> str:
    """SHA-256 of the configuration's canonical JSON: the identity of a run."""
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()


def run_config(
    protocol, variant: str, seed: int, profile: str = "full", *, epochs=None, dataset=None
) -> dict:
    """The complete configuration of one run, as plain JSON-able values.

    Args:
        protocol: a :class:`Protocol` (an experiment's, see :mod:`bncourse.experiments`).
        variant: 'none', 'before' or 'after'.
        seed: the run's seed.
        profile: 'full' (the protocol as written) or 'quick'.
        epochs: overrides the profile's number of epochs.
        dataset: overrides the protocol's dataset.
    """
    if not isinstance(protocol, Protocol):
        raise TypeError(f"protocol must be a Protocol, got {type(protocol).__name__}")
    if variant not in VARIANTS:
        raise ValueError(f"unknown BN variant {variant!r}; expected one of {', '.join(VARIANTS)}")
    if profile not in PROFILES:
        raise ValueError(f"profile must be 'quick' or 'full', got {profile!r}")
    if epochs is not None and (not isinstance(epochs, int) or epochs < 1):
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    validation = dict(protocol.validation)
    subset = None
    n_epochs = protocol.epochs
    batch_size = protocol.batch_size
    if profile == "quick":
        subset = {"train": protocol.quick["train"], "test": protocol.quick["test"]}
        n_epochs = protocol.quick["epochs"]
        batch_size = protocol.quick.get("batch_size", batch_size)
        if isinstance(validation["validation"], int):
            # Keep the protocol's share of the 60,000 training images: 5,000 becomes a
            # twelfth, 500 of the quick profile's 6,000.
            validation["validation"] = validation["validation"] / 60000
    config = {
        "experiment": protocol.name,
        "version": protocol.version,
        "profile": profile,
        "model": protocol.model,
        "dataset": dataset or protocol.dataset,
        "bn": variant,
        "seed": int(seed),
        "epochs": int(epochs or n_epochs),
        "batch_size": batch_size,
        "optimizer": protocol.optimizer,
        "loss": "sparse_categorical_crossentropy",
        "validation": validation,
        "subset": subset,
    }
    if protocol.test_every_epoch:  # only where asked: other protocols' configs stay as saved
        config["test_every_epoch"] = True
    return config


def describe_optimizer(spec: dict) -> str:
    """A one-line description of an optimizer spec, e.g. for provenance and tables."""
    args = []
    for key, value in spec.items():
        if key == "class":
            continue
        if isinstance(value, dict):
            inner = ", ".join(f"{k}={v}" for k, v in value.items() if k != "schedule")
            value = f"{value['schedule']}({inner})"
        args.append(f"{key}={value}")
    return f"{spec['class']}({', '.join(args)})"


def _make_optimizer(spec: dict):
    import keras

    kwargs = {}
    for key, value in spec.items():
        if key == "class":
            continue
        if isinstance(value, dict):
            schedule = getattr(keras.optimizers.schedules, value["schedule"])
            value = schedule(**{k: v for k, v in value.items() if k != "schedule"})
        kwargs[key] = value
    return getattr(keras.optimizers, spec["class"])(**kwargs)


def _downsample_8x8(x: np.ndarray) -> np.ndarray:
    """(N, 28, 28) to (N, 64): crop the 2-pixel border, then average 3x3 blocks."""
    crop = x[:, 2:26, 2:26]
    return crop.reshape(len(x), 8, 3, 8, 3).mean(axis=(2, 4)).reshape(len(x), 64)


def prepare_data(config: dict):
    """Train, validation and test arrays for a configuration, and a sentence about them."""
    (x_train, y_train), (x_test, y_test) = data.load_dataset(config["dataset"])
    subset = config["subset"]
    if subset:
        x_train, y_train = x_train[: subset["train"]], y_train[: subset["train"]]
        x_test, y_test = x_test[: subset["test"]], y_test[: subset["test"]]
    v = config["validation"]
    (x_tr, y_tr), (x_val, y_val), val_idx = data.split_validation(
        x_train, y_train, v["validation"], method=v["method"]
    )
    if v["keep_in_train"]:
        x_tr, y_tr = x_train, y_train
    note = data.describe_split(
        config["dataset"], len(x_train), val_idx, v["method"], v["keep_in_train"], len(x_test)
    )
    if subset:
        note += f" (quick profile: the first {subset['train']} training and {subset['test']} test images)"

    def prep(x):
        x = data.scale_images(x)
        if config["model"] == "cnn":
            return data.add_channel_axis(x)
        if config["model"] == "small":
            return _downsample_8x8(x)
        return x

    return (prep(x_tr), y_tr), (prep(x_val), y_val), (prep(x_test), y_test), note


def _build_model(config: dict):
    from bncourse import models

    bn = None if config["bn"] == "none" else config["bn"]
    builder = {"mlp": models.build_mlp, "cnn": models.build_cnn, "small": models.build_small}
    return builder[config["model"]](bn)


def set_seed(seed: int) -> bool:
    """Seed Python, NumPy and the backend; make TensorFlow ops deterministic when it is the
    backend. Returns whether op determinism is on."""
    import keras

    keras.utils.set_random_seed(seed)
    if keras.backend.backend() == "tensorflow":
        # The one TensorFlow-specific call of the package: Keras has no public switch.
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
        return True
    return keras.backend.backend() == "jax"  # JAX on CPU is deterministic


def train_run(config: dict, *, on_epoch=None, arrays=None) -> dict:
    """Train and evaluate one configuration; returns its result record (without provenance).

    Args:
        config: from :func:`run_config`.
        on_epoch: optional ``callback(epoch, logs, seconds)`` after each epoch (progress).
        arrays: the output of :func:`prepare_data` for this configuration, to reuse it.

    Returns:
        a dict with ``history`` (per-epoch loss, accuracy, val_loss, val_accuracy),
        ``epoch_seconds`` (training time of each epoch, without the validation pass),
        ``test`` (loss and accuracy), ``n_params`` and ``data_note``.
    """
    import keras

    deterministic = set_seed(config["seed"])
    train, val, test, note = arrays or prepare_data(config)
    model = _build_model(config)
    model.compile(
        optimizer=_make_optimizer(config["optimizer"]), loss=config["loss"], metrics=["accuracy"]
    )

    class Timer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds = []

        def on_epoch_begin(self, epoch, logs=None):
            self._start = time.perf_counter()
            self._train_end = None

        def on_test_begin(self, logs=None):
            if self._train_end is None:
                self._train_end = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            end = self._train_end or time.perf_counter()
            self.seconds.append(end - self._start)
            if on_epoch is not None:
                on_epoch(epoch, dict(logs or {}), self.seconds[-1])

    class TestEveryEpoch(keras.callbacks.Callback):
        """Test loss and accuracy after each epoch, after the timer has stopped."""

        def __init__(self):
            super().__init__()
            self.history = {"test_loss": [], "test_accuracy": []}

        def on_epoch_end(self, epoch, logs=None):
            loss, accuracy = self.model.evaluate(test[0], test[1], batch_size=1000, verbose=0)
            self.history["test_loss"].append(float(loss))
            self.history["test_accuracy"].append(float(accuracy))

    timer = Timer()
    callbacks = [timer]
    if config.get("test_every_epoch"):
        callbacks.append(TestEveryEpoch())
    fit = model.fit(
        train[0],
        train[1],
        validation_data=val,
        epochs=config["epochs"],
        batch_size=config["batch_size"],
        shuffle=True,
        verbose=0,
        callbacks=callbacks,
    )
    test_loss, test_accuracy = model.evaluate(test[0], test[1], batch_size=1000, verbose=0)
    history = {
        k: [float(v) for v in fit.history[k]]
        for k in ("loss", "accuracy", "val_loss", "val_accuracy")
    }
    if config.get("test_every_epoch"):
        history.update(callbacks[-1].history)
    return {
        "history": history,
        "epoch_seconds": [float(s) for s in timer.seconds],
        "test": {"loss": float(test_loss), "accuracy": float(test_accuracy)},
        "n_params": {
            "trainable": int(sum(np.prod(w.shape) for w in model.trainable_weights)),
            "non_trainable": int(sum(np.prod(w.shape) for w in model.non_trainable_weights)),
        },
        "data_note": note,
        "deterministic": deterministic,
    }
