"""Looking inside the T1 MLP while it trains, with and without BN (before each ReLU), from
He's initial scale and from scales too small and too large: the per-layer statistics of
:class:`bncourse.diagnostics.TrainingDiagnostics`, recorded every few steps. No claim is
judged here; the book's chapter on diagnostics draws the records."""

from __future__ import annotations

from bncourse.experiments.common import fashion_subset, progress_callbacks
from bncourse.experiments.registry import Experiment, settings_configs

NAME = "diagnostics"
VARIANTS = ("none", "bn")
SCALES = {"quick": [0.3, 1.0], "full": [0.3, 1.0, 3.0]}


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


def train(config, on_epoch=None):
    """The T1 MLP (SGD with Nesterov momentum, batch 32) with He's initialisation times
    ``init_scale``, recording diagnostics on the first ``probe`` test images every
    ``every`` steps; also the test accuracy."""
    import keras

    from bncourse import models
    from bncourse.diagnostics import TrainingDiagnostics
    from bncourse.experiments.protocol import set_seed

    set_seed(config["seed"])
    (x, y), (x_test, y_test) = fashion_subset(config["train"], config["test"])
    scale = config["init_scale"]
    init = keras.initializers.VarianceScaling(
        scale=2.0 * scale**2, mode="fan_in", distribution="truncated_normal"
    )
    model = models.build_mlp(
        "before" if config["variant"] == "bn" else None, kernel_initializer=init
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
        batch_size=32,
        verbose=0,
        callbacks=[probe, *progress_callbacks(on_epoch)],
    )
    accuracy = float(
        model.evaluate(
            x_test[config["probe"] :], y_test[config["probe"] :], batch_size=1000, verbose=0
        )[1]
    )
    return {"diagnostics": _thinned(probe.history), "test": {"accuracy": accuracy}}


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
)
