"""Training a deep residual network with BN and without it: one small residual network
(:func:`bncourse.residual.build_resnet`) without normalisation, with BN on each branch (its
last BN starting at gamma = 1 or at 0), with Fixup's initialisation (and its authors'
tenth of the learning rate for its scalars), with SELU, and as a
normaliser-free network with scaled weight standardisation and adaptive gradient clipping,
all trained alike on a Fashion-MNIST subset. No claim is judged here; the book's chapter on
residual networks draws the records."""

from __future__ import annotations

import math
import time

from bncourse.experiments.common import fashion_subset
from bncourse.experiments.registry import Experiment

NAME = "residual"
VARIANTS = ("none", "bn", "bn-zero-gamma", "fixup", "selu", "nf")
QUICK_VARIANTS = ("none", "bn")
# Every variant trains with the same optimiser and learning rate (none is tuned per method),
# each with its method's own recipe on top: "nf" clips its gradients (AGC), and "fixup"
# trains its biases and scalar multipliers at a tenth of the learning rate, as its authors'
# code does.
COMMON = {"width": 16, "batch_size": 128, "learning_rate": 0.05, "momentum": 0.9, "clipping": 0.01}
SETTINGS = {
    "quick": {"blocks": 16, "train": 1024, "test": 1000, "epochs": 1, **COMMON},
    "full": {"blocks": 16, "train": 10000, "test": 10000, "epochs": 5, **COMMON},
}
SEEDS = {"quick": (0,), "full": (0, 1, 2)}
RECIPES = {"fixup": {"scalar_learning_rate_factor": 0.1}}


def configs(profile):
    """One run per seed and variant, seed by seed; the quick profile runs only
    :data:`QUICK_VARIANTS`."""
    if profile not in SETTINGS:
        raise ValueError(f"profile must be one of {', '.join(SETTINGS)}, got {profile!r}")
    variants = QUICK_VARIANTS if profile == "quick" else VARIANTS
    return [
        {
            "experiment": NAME,
            "version": 1,
            "profile": profile,
            "variant": variant,
            "seed": seed,
            **SETTINGS[profile],
            **RECIPES.get(variant, {}),
        }
        for seed in SEEDS[profile]
        for variant in variants
    ]


def standardised(x, mean, std):
    """Images (N, 28, 28) scaled to [0, 1] -> (N, 28, 28, 1) with the training pixels'
    ``mean`` and ``std`` taken out, as the variants without BN expect their input."""
    return ((x - mean) / std)[..., None].astype("float32")


def _finite(values) -> list:
    """Floats, with None for the NaN and infinities of a diverged run (JSON has neither)."""
    return [float(v) if math.isfinite(v) else None for v in values]


def train(config, on_epoch=None):
    """Train one variant; record per epoch the training loss and accuracy (as ``fit``
    reports them: averages over the epoch's batches, in training mode), the test loss and
    accuracy (inference mode, after the epoch) and the seconds of training."""
    import keras

    from bncourse import residual
    from bncourse.experiments.protocol import set_seed

    deterministic = set_seed(config["seed"])
    (x, y), (x_test, y_test) = fashion_subset(config["train"], config["test"])
    mean, std = float(x.mean()), float(x.std())
    x, x_test = standardised(x, mean, std), standardised(x_test, mean, std)
    model = residual.build_resnet(config["variant"], blocks=config["blocks"], width=config["width"])
    sgd = {"learning_rate": config["learning_rate"], "momentum": config["momentum"]}
    if config["variant"] == "nf":
        optimizer = residual.SGDWithAGC(clipping=config["clipping"], exclude=("output",), **sgd)
    elif config["variant"] == "fixup":
        factor = config["scalar_learning_rate_factor"]
        optimizer = residual.SGDWithMultipliers(
            multipliers={"bias": factor, "multiplier": factor}, **sgd
        )
    else:
        optimizer = keras.optimizers.SGD(**sgd)
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])

    class Timer(keras.callbacks.Callback):
        """Seconds of each epoch's training, without its test pass."""

        def __init__(self):
            super().__init__()
            self.seconds = []

        def on_epoch_begin(self, epoch, logs=None):
            self.start, self.stop = time.perf_counter(), None

        def on_test_begin(self, logs=None):
            self.stop = self.stop or time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append((self.stop or time.perf_counter()) - self.start)
            if on_epoch is not None:
                on_epoch(epoch, dict(logs or {}), self.seconds[-1])

    timer = Timer()
    fit = model.fit(
        x,
        y,
        validation_data=(x_test, y_test),
        epochs=config["epochs"],
        batch_size=config["batch_size"],
        verbose=0,
        callbacks=[timer, keras.callbacks.TerminateOnNaN()],
    )
    h = fit.history
    diverged = len(h["loss"]) < config["epochs"] or not math.isfinite(h["loss"][-1])
    return {
        "history": {
            "loss": _finite(h["loss"]),
            "accuracy": _finite(h["accuracy"]),
            "test_loss": _finite(h.get("val_loss", [])),
            "test_accuracy": _finite(h.get("val_accuracy", [])),
        },
        "diverged": diverged,
        "epoch_seconds": [float(s) for s in timer.seconds],
        "test": {"accuracy": _finite(h.get("val_accuracy", [math.nan]))[-1]},
        "input_standardisation": {"mean": mean, "std": std},
        "n_params": int(model.count_params()),
        "deterministic": deterministic,
    }


EXPERIMENTS = (
    Experiment(
        name=NAME,
        title="A 16-block residual network without normalisation, with BN (gamma = 1 or 0 on "
        "each branch's last BN), Fixup, SELU, and NF (scaled WS + AGC)",
        configs=configs,
        train=train,
    ),
)
