"""BN and weight decay: how long the weights in front of BN are, and how far each update
turns them, with and without decay, with L2 through ``kernel_regularizer`` and with the
optimizers' decoupled ``weight_decay``. No claim of the tutorials is judged here
(``claims=()``); the book's chapter on weight decay draws the records.

Two parts:

* **From scratch, in NumPy.** :func:`scale_invariant_problem` and
  :func:`loss_and_gradient` give a loss that does not change when a column of the weights is
  scaled (a linear map, BN, a softmax); :func:`optimizer_step` takes one step the way Keras 3
  takes it (SGD or Adam; L2 as a gradient term, or decay of the weights before the step);
  :func:`descend` trains with it and records the norm ``||w||`` and the effective step
  ``||w_{t+1} - w_t|| / ||w_t||`` of every step. :func:`equilibrium_step` is what the
  derivation predicts for the effective step under decoupled decay.
* **The experiment** ``weight-decay``: the T1 MLP with BN before each ReLU on a
  Fashion-MNIST subset, trained with SGD and with Adam, each without decay, with L2 on the
  kernels that feed BN, and (Adam) with AdamW's decoupled decay of those kernels. Recorded
  per epoch: each hidden kernel's norm and effective step (from
  :class:`bncourse.diagnostics.TrainingDiagnostics`), the training cross-entropy and the
  test accuracy.
"""

from __future__ import annotations

import time

import numpy as np

from bncourse.experiments.common import fashion_subset, progress_callbacks
from bncourse.experiments.registry import Experiment, settings_configs
from bncourse.numpy_bn import batchnorm_backward, batchnorm_forward

__all__ = [
    "EXPERIMENTS",
    "VARIANTS",
    "descend",
    "epoch_series",
    "equilibrium_step",
    "loss_and_gradient",
    "optimizer_step",
    "scale_invariant_problem",
    "variant_settings",
]

NAME = "weight-decay"
VARIANTS = ("sgd", "sgd-l2", "adam", "adam-l2", "adamw")
OPTIMIZERS = ("sgd", "adam")

# --------------------------------------------------------------------------- from scratch


def scale_invariant_problem(*, n=4096, features=20, classes=5, label_noise=0.3, seed=0):
    """A small classification problem for :func:`loss_and_gradient`.

    Inputs are standard normal, of shape (n, features); labels come from a random linear
    teacher, and a share ``label_noise`` of them is replaced by random classes, so that the
    loss never reaches 0 and the gradients of mini-batches stay noisy, as they do on real
    data.

    Returns:
        ``{"x": array (n, features), "y": int array (n,)}``.
    """
    if not 0.0 <= label_noise <= 1.0:
        raise ValueError(f"label_noise must be in [0, 1], got {label_noise!r}")
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features))
    y = np.argmax(x @ rng.normal(size=(features, classes)), axis=1)
    noisy = rng.random(n) < label_noise
    y[noisy] = rng.integers(0, classes, size=int(noisy.sum()))
    return {"x": x, "y": y}


def loss_and_gradient(w, x, y, *, gamma=2.0, epsilon=1e-5):
    """Mean cross-entropy of ``softmax(BN(x @ w))`` and its gradient with respect to ``w``.

    BN's scale is fixed at ``gamma`` and its shift at 0, so only ``w`` is learned. Each
    column of ``w`` feeds one BN feature: scaling a column by ``a > 0`` leaves the loss
    unchanged (up to ``epsilon``), and the gradient of each column is orthogonal to it.

    Args:
        w: array of shape (features, classes).
        x: array of shape (N, features), one mini-batch.
        y: int array of shape (N,), the classes.

    Returns:
        ``(loss, grad)``, ``grad`` of the shape of ``w``.
    """
    classes = w.shape[1]
    logits, cache = batchnorm_forward(
        x @ w, np.full(classes, gamma), np.zeros(classes), epsilon=epsilon
    )
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    rows = np.arange(len(y))
    loss = float(-log_p[rows, y].mean())
    dlogits = np.exp(log_p)
    dlogits[rows, y] -= 1.0
    dz, _, _ = batchnorm_backward(dlogits / len(y), cache)
    return loss, x.T @ dz


def optimizer_step(
    w,
    grad,
    state=None,
    *,
    optimizer="sgd",
    learning_rate,
    l2=0.0,
    weight_decay=0.0,
    beta_1=0.9,
    beta_2=0.999,
    epsilon=1e-7,
):
    """One update of ``w`` as Keras 3 makes it, in NumPy.

    ``l2`` is the coefficient of ``kernel_regularizer=keras.regularizers.L2(l2)``, which adds
    ``l2 * sum(w**2)`` to the loss and so ``2 * l2 * w`` to the gradient. ``weight_decay`` is
    the optimizers' argument: before the update, every decayed variable is shrunk by
    ``learning_rate * weight_decay * w``, outside the gradient (decoupled). Then plain SGD
    (no momentum), ``w - learning_rate * g``, or Adam with Keras's bias correction and
    ``epsilon`` outside the square root.

    Args:
        w, grad: arrays of one shape: the weights and the loss's gradient at ``w``.
        state: Adam's ``{"m", "v", "t"}`` from the previous step, or None at the first step.
        optimizer: 'sgd' or 'adam'.

    Returns:
        ``(w_new, state_new)``; nothing is changed in place.
    """
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {optimizer!r}")
    for name, value in (
        ("learning_rate", learning_rate),
        ("l2", l2),
        ("weight_decay", weight_decay),
    ):
        if not isinstance(value, (int, float)) or value < 0:
            raise ValueError(f"{name} must be a number >= 0, got {value!r}")
    g = grad + 2.0 * l2 * w  # the L2 penalty's gradient joins the loss's
    w = w - learning_rate * weight_decay * w  # decoupled: applied to w, not to g
    if optimizer == "sgd":
        return w - learning_rate * g, state
    if state is None:
        state = {"m": np.zeros_like(w), "v": np.zeros_like(w), "t": 0}
    t = state["t"] + 1
    m = state["m"] + (g - state["m"]) * (1 - beta_1)
    v = state["v"] + (g**2 - state["v"]) * (1 - beta_2)
    alpha = learning_rate * np.sqrt(1 - beta_2**t) / (1 - beta_1**t)
    return w - alpha * m / (np.sqrt(v) + epsilon), {"m": m, "v": v, "t": t}


def descend(problem, w0, *, steps, batch_size=64, seed=0, **step_args):
    """Train ``w`` on ``problem`` (from :func:`scale_invariant_problem`) with mini-batches
    and :func:`optimizer_step`, recording every step.

    Args:
        w0: the initial weights, of shape (features, classes).
        steps: the number of updates.
        step_args: passed to :func:`optimizer_step` (``optimizer``, ``learning_rate``,
            ``l2``, ``weight_decay``, ...).

    Returns:
        ``{"norm", "step", "loss"}``, one value per update: ``||w_t||`` before the update,
        the effective step ``||w_{t+1} - w_t|| / ||w_t||``, and the mini-batch loss at
        ``w_t``; and ``"w"``, the final weights.
    """
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    x, y = problem["x"], problem["y"]
    rng = np.random.default_rng(seed)
    w, state = np.array(w0, dtype=np.float64), None
    out = {"norm": [], "step": [], "loss": []}
    for _ in range(steps):
        batch = rng.choice(len(x), size=batch_size, replace=False)
        loss, grad = loss_and_gradient(w, x[batch], y[batch])
        w_new, state = optimizer_step(w, grad, state, **step_args)
        norm = float(np.linalg.norm(w))
        out["norm"].append(norm)
        out["step"].append(float(np.linalg.norm(w_new - w)) / norm)
        out["loss"].append(loss)
        w = w_new
    out["w"] = w
    return out


def equilibrium_step(learning_rate, weight_decay, beta_1=0.0) -> float:
    """The effective step ``||Δw|| / ||w||`` (root mean square over steps) at which decoupled
    decay balances the growth of a scale-invariant weight, when the updates are dominated by
    gradient noise: ``sqrt(2 * learning_rate * weight_decay * (1 - beta_1) / (1 + beta_1))``.

    ``beta_1`` is the averaging of the update over past gradients: 0 for plain SGD, Adam's
    ``beta_1`` for Adam and AdamW (whose steps are normalised by the gradients' size, so that
    ``||w||`` cancels). For L2 with plain SGD, ``weight_decay = 2 * l2``.
    """
    for name, value in (("learning_rate", learning_rate), ("weight_decay", weight_decay)):
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value!r}")
    if not 0.0 <= beta_1 < 1.0:
        raise ValueError(f"beta_1 must be in [0, 1), got {beta_1!r}")
    return float(np.sqrt(2.0 * learning_rate * weight_decay * (1 - beta_1) / (1 + beta_1)))


# --------------------------------------------------------------------------- the experiment

HIDDEN = ("dense1", "dense2", "dense3")  # build_mlp's hidden Dense layers, each feeding a BN


def variant_settings(config) -> dict:
    """The optimizer and the decay of a run: ``{"optimizer", "learning_rate", "l2",
    "weight_decay"}``, where ``l2`` is the coefficient of ``keras.regularizers.L2`` on the
    hidden kernels (the same ``l2`` with either optimizer, as when a model keeps its
    regulariser and changes its optimizer) and ``weight_decay`` AdamW's decoupled decay of
    the same kernels."""
    variant = config["variant"]
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
    optimizer = "sgd" if variant.startswith("sgd") else "adam"
    return {
        "optimizer": optimizer,
        "learning_rate": config[f"{optimizer}_learning_rate"],
        "l2": config["l2"] if variant.endswith("-l2") else 0.0,
        "weight_decay": config["adamw_weight_decay"] if variant == "adamw" else 0.0,
    }


def _model(config, settings):
    """The T1 MLP with BN before each ReLU; with L2 on the hidden kernels when asked."""
    import keras

    from bncourse import models

    model = models.build_mlp("before")
    if settings["l2"]:
        # The same network, its hidden Dense layers rebuilt with the regulariser (Keras
        # attaches a regulariser when a layer creates its weights), from the same weights.
        def with_l2(layer):
            layer_config = layer.get_config()
            if layer.name in HIDDEN:
                layer_config["kernel_regularizer"] = keras.regularizers.L2(settings["l2"])
            return layer.__class__.from_config(layer_config)

        weights = model.get_weights()
        model = keras.models.clone_model(model, clone_function=with_l2)
        model.set_weights(weights)
    return model


def _optimizer(model, settings):
    import keras

    if settings["optimizer"] == "sgd":
        optimizer = keras.optimizers.SGD(settings["learning_rate"])
    elif settings["weight_decay"]:
        optimizer = keras.optimizers.AdamW(
            settings["learning_rate"], weight_decay=settings["weight_decay"]
        )
        # Keras decays every trainable variable unless told otherwise: keep the decay on
        # the kernels that feed BN, as the L2 variants do.
        kernels = [model.get_layer(name).kernel for name in HIDDEN]
        optimizer.exclude_from_weight_decay(
            var_list=[v for v in model.trainable_variables if all(v is not k for k in kernels)]
        )
    else:
        optimizer = keras.optimizers.Adam(settings["learning_rate"])
    return optimizer


def train(config, on_epoch=None):
    """One run: the T1 MLP with BN before each ReLU, batch ``batch_size``, for ``epochs``,
    with the variant's optimizer and decay (:func:`variant_settings`); the hidden kernels'
    norms and effective steps recorded every ``every`` steps; the test accuracy after each
    epoch."""
    import keras

    from bncourse.diagnostics import TrainingDiagnostics
    from bncourse.experiments.protocol import set_seed

    set_seed(config["seed"])
    (x, y), (x_test, y_test) = fashion_subset(config["train"], config["test"])
    settings = variant_settings(config)
    model = _model(config, settings)
    model.compile(
        optimizer=_optimizer(model, settings),
        loss="sparse_categorical_crossentropy",
        # the data term alone: the loss Keras reports also holds the L2 penalty
        metrics=["accuracy", keras.metrics.SparseCategoricalCrossentropy(name="cross_entropy")],
    )
    # the probe's statistics are not used here: the kernels' norms and steps are
    probe = TrainingDiagnostics(x[: config["probe"]], y[: config["probe"]], every=config["every"])
    epoch_seconds = []
    timer = keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda epoch, logs: epoch_seconds.append(-time.perf_counter()),
        on_epoch_end=lambda epoch, logs: epoch_seconds.__setitem__(
            -1, epoch_seconds[-1] + time.perf_counter()
        ),
    )
    fit = model.fit(
        x,
        y,
        validation_data=(x_test, y_test),  # evaluated after each epoch; nothing is tuned on it
        epochs=config["epochs"],
        batch_size=config["batch_size"],
        verbose=0,
        callbacks=[timer, probe, *progress_callbacks(on_epoch)],
    )
    steps_per_epoch = -(-config["train"] // config["batch_size"])
    history = probe.history
    kernels = {}
    for name in HIDDEN:
        entry = history["layers"][name]
        if not entry["feeds_bn"]:
            raise RuntimeError(f"layer {name} was expected to feed a BN layer")
        kernels[name] = {
            "steps": history["steps"],
            "norm": entry["kernel_norm"],
            "relative_update": entry["relative_update"],
        }
    return {
        "settings": settings,
        "steps_per_epoch": steps_per_epoch,
        "kernels": kernels,
        "cross_entropy": [float(v) for v in fit.history["cross_entropy"]],
        "train_accuracy": [float(v) for v in fit.history["accuracy"]],
        "test_accuracy": [float(v) for v in fit.history["val_accuracy"]],
        "epoch_seconds": epoch_seconds,
        "test": {"accuracy": float(fit.history["val_accuracy"][-1])},
    }


def epoch_series(record, layer, quantity) -> list:
    """One value per epoch of a run's recorded ``quantity`` of kernel ``layer``: 'norm' (at
    the last recorded step of the epoch) or 'step' (the root mean square of the effective
    steps recorded during the epoch)."""
    if quantity not in ("norm", "step"):
        raise ValueError(f"quantity must be 'norm' or 'step', got {quantity!r}")
    kernel = record["kernels"][layer]
    per_epoch = record["steps_per_epoch"]
    epochs = len(record["test_accuracy"])
    out = []
    for epoch in range(epochs):
        inside = [
            i
            for i, s in enumerate(kernel["steps"])
            if epoch * per_epoch < s <= (epoch + 1) * per_epoch
        ]
        if not inside:
            raise ValueError(f"no step of epoch {epoch + 1} was recorded for {layer}")
        if quantity == "norm":
            out.append(kernel["norm"][inside[-1]])
        else:
            steps = [kernel["relative_update"][i] for i in inside]
            out.append(float(np.sqrt(np.mean(np.square(steps)))))
    return out


EXPERIMENTS = (
    Experiment(
        name=NAME,
        title="T1 MLP with BN, SGD and Adam, without decay, with L2 and with AdamW: the norm "
        "and the effective step of the kernels in front of BN",
        configs=settings_configs(
            NAME,
            variants=VARIANTS,
            settings={
                "quick": {
                    "train": 2000,
                    "test": 2000,
                    "probe": 128,
                    "epochs": 4,
                    "batch_size": 50,
                    "every": 10,
                    "sgd_learning_rate": 0.1,
                    "adam_learning_rate": 1e-3,
                    "l2": 2.5e-3,
                    "adamw_weight_decay": 0.5,
                },
                "full": {
                    "train": 10000,
                    "test": 10000,
                    "probe": 128,
                    "epochs": 30,
                    "batch_size": 100,
                    "every": 10,
                    "sgd_learning_rate": 0.1,
                    "adam_learning_rate": 1e-3,
                    "l2": 2.5e-3,
                    "adamw_weight_decay": 0.5,
                },
            },
            seeds={"quick": (0,), "full": (0, 1, 2)},
        ),
        train=train,
    ),
)
