"""BN as noise: the T1 MLP with BN before each ReLU at several batch sizes, and with ghost BN
(:class:`bncourse.bn_noise.GhostBatchNorm`) at several virtual batch sizes within one large
batch, next to the same MLP without BN; training accuracy (training mode as ``fit`` reports
it, and inference mode), test accuracy and their gap, epoch by epoch. No claim is judged
here; the book's chapter "BN as noise" reads the records next to claim 5's verdict."""

from __future__ import annotations

import time

from bncourse.experiments.common import fashion_subset, paired, progress_callbacks
from bncourse.experiments.registry import Experiment

NAME = "bn-noise"
VERSION = 1
# Before every evaluation the BN layers' moving statistics are set to the expected batch
# statistics at the current weights (bncourse.bn_noise.expected_batch_statistics): what
# Keras's moving averages estimate, without their lag behind the weights (large at small
# batch sizes, where many steps pass within the averages' window) or their noise. So the
# test accuracy compares what the weights learned, not how stale the averages are (claim
# 12's business). Training never reads the moving statistics, so this changes nothing in it.
INFERENCE_STATISTICS = "expected batch statistics, set before every evaluation"
SETTINGS = {
    "quick": {"train": 2048, "test": 2000, "epochs": 3},
    "full": {"train": 10240, "test": 10000, "epochs": 20},
}
SEEDS = {"quick": (0,), "full": (0, 1, 2, 3, 4)}
LARGE_BATCH = 256
# (variant, batch size, virtual batch size) of every run of one seed
RUNS = {
    "quick": (
        ("none", 256, None),
        ("bn", 16, None),
        ("bn", 256, None),
        ("ghost", 256, 16),
    ),
    "full": (
        ("bn", 16, None),
        ("bn", 64, None),
        ("bn", 256, None),
        ("ghost", 256, 4),
        ("ghost", 256, 16),
        ("ghost", 256, 64),
        ("none", 16, None),
        ("none", 64, None),
        ("none", 256, None),
    ),
}


def configs(profile):
    """Every run of ``profile``, seed by seed."""
    if profile not in SETTINGS:
        raise ValueError(f"profile must be one of {', '.join(SETTINGS)}, got {profile!r}")
    return [
        {
            "experiment": NAME,
            "version": VERSION,
            "profile": profile,
            "variant": variant,
            "seed": seed,
            "batch_size": batch,
            "virtual_batch_size": virtual,
            "inference_statistics": None if variant == "none" else INFERENCE_STATISTICS,
            **SETTINGS[profile],
        }
        for seed in SEEDS[profile]
        for variant, batch, virtual in RUNS[profile]
    ]


def label(config) -> str:
    """A run's variant in words: 'no BN, batch 64', 'BN, batch 16', 'ghost BN 16 of 256'."""
    c = config.get("config", config)
    if c["variant"] == "none":
        return f"no BN, batch {c['batch_size']}"
    if c["variant"] == "bn":
        return f"BN, batch {c['batch_size']}"
    return f"ghost BN {c['virtual_batch_size']} of {c['batch_size']}"


def normalisation_batch(config) -> int:
    """How many examples share BN's statistics in a run: the batch for BN, the virtual batch
    for ghost BN."""
    c = config.get("config", config)
    if c["variant"] == "none":
        raise ValueError(f"a run without BN has no normalisation batch: {label(c)}")
    return c["virtual_batch_size"] or c["batch_size"]


def gap(record, epoch=-1, mode="inference") -> float:
    """Training minus test accuracy after ``epoch`` (default the last).

    ``mode="inference"``: training accuracy in inference mode on the whole training set,
    the measure of overfitting that claim 5's rule uses. ``mode="training"``: training
    accuracy as ``fit`` reports it, in training mode (BN with the batch's statistics),
    averaged over the epoch while the weights change."""
    if mode not in ("inference", "training"):
        raise ValueError(f"mode must be 'inference' or 'training', got {mode!r}")
    h = record["history"]
    train = h["train_accuracy"] if mode == "inference" else h["accuracy_training_mode"]
    return train[epoch] - h["test_accuracy"][epoch]


def paired_gap(records, a, b, mode="inference") -> list:
    """gap(run a) - gap(run b), seed by seed; ``a`` and ``b`` are labels (:func:`label`)."""
    groups = {}
    for r in records:
        groups.setdefault(label(r), []).append(r)
    for name in (a, b):
        if name not in groups:
            raise ValueError(f"no runs labelled {name!r}; there are {sorted(groups)}")
    return paired(groups[a], groups[b], lambda r: gap(r, mode=mode), what=f"{a} vs {b}")


def _accuracy(model, x, y) -> float:
    """Accuracy in inference mode."""
    probabilities = model.predict(x, batch_size=1000, verbose=0)
    return float((probabilities.argmax(axis=1) == y).mean())


def train(config, on_epoch=None):
    """The T1 MLP (300, 200, 100 ReLU units) without BN, with BN before each ReLU, or with
    ghost BN there, trained with Adam at ``batch_size`` on the first ``train`` images;
    after every epoch, the training accuracy in inference mode on those images and the test
    accuracy on the first ``test`` test images, with BN's moving statistics set to the
    expected batch statistics first. Training-mode accuracy is ``fit``'s."""
    import keras

    from bncourse import models
    from bncourse.bn_noise import GhostBatchNorm, expected_batch_statistics
    from bncourse.experiments.protocol import set_seed

    variant, batch, virtual = config["variant"], config["batch_size"], config["virtual_batch_size"]
    if config["train"] % batch:
        raise ValueError(
            f"train={config['train']} must be a multiple of batch_size={batch}, so that no "
            "short last batch changes the noise (and ghost batches divide every batch)"
        )
    set_seed(config["seed"])
    (x, y), (x_test, y_test) = fashion_subset(config["train"], config["test"])
    if variant == "none":
        model = models.build_mlp(None)
    elif variant == "bn":
        model = models.build_mlp(
            "before",
            bn_layer=lambda name: keras.layers.BatchNormalization(name=name),
        )
    elif variant == "ghost":
        model = models.build_mlp(
            "before",
            bn_layer=lambda name: GhostBatchNorm(virtual, name=name),
        )
    else:
        raise ValueError(f"variant must be 'none', 'bn' or 'ghost', got {variant!r}")
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = {"train_accuracy": [], "test_accuracy": []}
    seconds = []
    clock = {}

    def begin(epoch, logs):
        clock["start"] = time.perf_counter()

    def end(epoch, logs):
        seconds.append(time.perf_counter() - clock["start"])  # training only
        if variant != "none":
            expected_batch_statistics(model, x, normalisation_batch(config), seed=epoch)
        history["train_accuracy"].append(_accuracy(model, x, y))
        history["test_accuracy"].append(_accuracy(model, x_test, y_test))

    record = keras.callbacks.LambdaCallback(on_epoch_begin=begin, on_epoch_end=end)
    fit = model.fit(
        x,
        y,
        epochs=config["epochs"],
        batch_size=batch,
        shuffle=True,
        verbose=0,
        callbacks=[record, *progress_callbacks(on_epoch)],
    )
    history["loss"] = [float(v) for v in fit.history["loss"]]
    history["accuracy_training_mode"] = [float(v) for v in fit.history["accuracy"]]
    return {
        "history": history,
        "epoch_seconds": seconds,
        "test": {"accuracy": history["test_accuracy"][-1]},
    }


EXPERIMENTS = (
    Experiment(
        name=NAME,
        title="T1 MLP without BN, with BN at batch sizes 16 to 256, and with ghost BN of 4 to "
        "64 examples within batches of 256: training and test accuracy by epoch",
        configs=configs,
        train=train,
    ),
)
