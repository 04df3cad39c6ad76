"""Looking inside a network while it trains, with and without BN (before each ReLU): the
per-layer statistics of :class:`bncourse.diagnostics.TrainingDiagnostics`, recorded every
few steps. No claim is judged here.

* ``diagnostics``: the T1 MLP from He's initial scale and from scales too small and too
  large; the book's chapter on diagnostics draws the records.
* ``diagnostics-sweeps``: the six-layer MLP of the initial-scale and learning-rate sweeps
  (claims 4 and 6), at the sweeps' points, trained as there; the chapter on what BN does
  draws them next to those claims' verdicts, to show why the verdicts came out as they did.
"""

from __future__ import annotations

import numpy as np

from bncourse.experiments import init_scale, learning_rate, sweep
from bncourse.experiments.common import fashion_subset, progress_callbacks
from bncourse.experiments.registry import Experiment, settings_configs

NAME = "diagnostics"
VARIANTS = ("none", "bn")
SCALES = {"quick": [0.3, 1.0], "full": [0.3, 1.0, 3.0]}
BATCH_SIZE = 32  # the T1 protocol's batch size, for ``diagnostics``

SWEEPS_NAME = "diagnostics-sweeps"
SWEEP_SCALES = {"quick": [0.1, 10.0], "full": init_scale.SCALES["full"]}
# The rates where the learning-rate sweep's verdict is decided: both networks train at 0.1,
# only one at 1, neither at 10.
SWEEP_RATES = {"quick": [1.0], "full": [r for r in learning_rate.RATES["full"] if r >= 0.1]}


def _thinned(history) -> dict:
    """The callback's history without the histograms of the middle probes (the first and
    the last are kept), so that a result stays a small file."""
    layers = {}
    for name, entry in history["layers"].items():
        outputs = []
        for i, o in enumerate(entry["output"]):
            keep = i in (0, len(entry["output"]) - 1)
            outputs.append({k: v for k, v in o.items() if k != "histogram" or keep})
        layers[name] = {**entry, "output": outputs}
    return {"steps": history["steps"], "layers": layers}


def _he(scale):
    """He's initialisation with its standard deviation multiplied by ``scale``."""
    import keras

    return keras.initializers.VarianceScaling(
        scale=2.0 * scale**2, mode="fan_in", distribution="truncated_normal"
    )


def train(config, on_epoch=None):
    """The T1 MLP (SGD with Nesterov momentum, batches of ``BATCH_SIZE``) with He's
    initialisation times ``init_scale``, recording diagnostics on the first ``probe`` test
    images every ``every`` steps; also the test accuracy."""
    import keras

    from bncourse import models
    from bncourse.diagnostics import TrainingDiagnostics
    from bncourse.experiments.protocol import set_seed

    set_seed(config["seed"])
    (x, y), (x_test, y_test) = fashion_subset(config["train"], config["test"])
    model = models.build_mlp(
        "before" if config["variant"] == "bn" else None,
        kernel_initializer=_he(config["init_scale"]),
    )
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=0.01, momentum=0.9, nesterov=True),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    probe = TrainingDiagnostics(
        x_test[: config["probe"]], y_test[: config["probe"]], every=config["every"]
    )
    model.fit(
        x,
        y,
        epochs=config["epochs"],
        batch_size=BATCH_SIZE,
        verbose=0,
        callbacks=[probe, *progress_callbacks(on_epoch)],
    )
    accuracy = float(
        model.evaluate(
            x_test[config["probe"] :], y_test[config["probe"] :], batch_size=1000, verbose=0
        )[1]
    )
    return {"diagnostics": _thinned(probe.history), "test": {"accuracy": accuracy}}


def train_sweep_point(config, on_epoch=None):
    """The six-layer MLP of :mod:`bncourse.experiments.sweep` at one point of its sweeps:
    He's initialisation times ``init_scale``, SGD with ``learning_rate`` and ``momentum``,
    batches of ``sweep.BATCH_SIZE``. Records the diagnostics on the first ``probe`` test
    images after each of the first ``first`` steps and every ``every`` steps (without the
    histograms), the training
    loss per epoch, whether it diverged (the loss, or the probe's outputs or gradients,
    stopped being finite; training stops there), and the test accuracy on the other test
    images (None if it diverged)."""
    import keras

    from bncourse import models
    from bncourse.diagnostics import TrainingDiagnostics
    from bncourse.experiments.protocol import set_seed

    set_seed(config["seed"])
    (x, y), (x_test, y_test) = fashion_subset(config["train"], config["test"])
    model = models.build_mlp(
        "before" if config["variant"] == "bn" else None,
        hidden_units=sweep.DEEP_MLP,
        kernel_initializer=_he(config["init_scale"]),
    )
    model.compile(
        optimizer=keras.optimizers.SGD(
            learning_rate=config["learning_rate"], momentum=config["momentum"]
        ),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    n = config["probe"]
    probe = TrainingDiagnostics(
        x_test[:n], y_test[:n], every=config["every"], first=config["first"]
    )

    def stop_if_not_finite(batch, logs):
        if (logs and not np.isfinite(logs.get("loss", 0.0))) or probe.history["skipped"]:
            model.stop_training = True

    fit = model.fit(
        x,
        y,
        epochs=config["epochs"],
        batch_size=sweep.BATCH_SIZE,
        verbose=0,
        callbacks=[
            probe,
            keras.callbacks.LambdaCallback(on_train_batch_end=stop_if_not_finite),
            *progress_callbacks(on_epoch),
        ],
    )
    losses = [float(v) for v in fit.history["loss"]]
    history = probe.history
    diverged = bool(
        not np.all(np.isfinite(losses)) or len(losses) < config["epochs"] or history["skipped"]
    )
    accuracy = None
    if not diverged:
        accuracy = float(model.evaluate(x_test[n:], y_test[n:], batch_size=1000, verbose=0)[1])
    layers = {
        name: {
            **entry,
            "output": [{k: v for k, v in o.items() if k != "histogram"} for o in entry["output"]],
        }
        for name, entry in history["layers"].items()
    }
    return {
        "diagnostics": {"steps": history["steps"], "layers": layers, "skipped": history["skipped"]},
        "loss": [v if np.isfinite(v) else None for v in losses],
        "diverged": diverged,
        "test": {"accuracy": accuracy},
    }


def _sweeps_configs(profile):
    """The initial-scale sweep's points (its SGD with momentum, ``sweep.INIT_SCALE_SGD``),
    then the learning-rate sweep's (plain SGD, He's scale), each config naming its
    ``sweep``."""
    settings = {
        "quick": {"train": 1280, "test": 512, "probe": 256, "epochs": 1, "every": 10, "first": 5},
        "full": {
            "train": sweep.SETTINGS["full"]["train"],
            "test": 2256,
            "probe": 256,
            "epochs": sweep.SETTINGS["full"]["epochs"],
            "every": 100,
            "first": 10,
        },
    }
    seeds = {"quick": (0,), "full": (0, 1, 2)}
    by_scale = settings_configs(
        SWEEPS_NAME,
        variants=VARIANTS,
        settings={
            p: {**s, "sweep": "init_scale", **sweep.INIT_SCALE_SGD} for p, s in settings.items()
        },
        seeds=seeds,
        sweep=("init_scale", SWEEP_SCALES),
    )
    by_rate = settings_configs(
        SWEEPS_NAME,
        variants=VARIANTS,
        settings={
            p: {**s, "sweep": "learning_rate", "init_scale": 1.0, "momentum": 0.0}
            for p, s in settings.items()
        },
        seeds=seeds,
        sweep=("learning_rate", SWEEP_RATES),
    )
    return by_scale(profile) + by_rate(profile)


EXPERIMENTS = (
    Experiment(
        name=NAME,
        title="T1 MLP with and without BN, initial scales 0.3x to 3x He: per-layer statistics "
        "while it trains",
        configs=settings_configs(
            NAME,
            variants=VARIANTS,
            settings={
                "quick": {"train": 3000, "test": 1256, "probe": 256, "epochs": 1, "every": 10},
                "full": {"train": 20000, "test": 10000, "probe": 256, "epochs": 3, "every": 250},
            },
            seeds={"quick": (0,), "full": (0, 1, 2)},
            sweep=("init_scale", SCALES),
        ),
        train=train,
    ),
    Experiment(
        name=SWEEPS_NAME,
        title=f"The initial-scale and learning-rate sweeps' {sweep.MODEL}, with and without "
        "BN: per-layer statistics at the sweeps' points",
        configs=_sweeps_configs,
        train=train_sweep_point,
    ),
)
