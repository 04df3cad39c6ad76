"""Experiments that test what the tutorials claim about BN, each with a computed verdict.

A :class:`ClaimExperiment` defines its runs for each profile (``quick``: under a minute,
for tests and the book build; ``full``: three seeds, the committed results), trains one run
into a JSON-able outcome, and turns the saved outcomes into key numbers and a verdict with
stated thresholds. Runs are saved and resumed by the same machinery as the tutorials'
protocols (:mod:`bncourse.results`, :func:`bncourse.cli.run_configs`).

Claims covered so far (numbers as in ``../shared/SEEDS.md``):

* 4: BN makes the network less sensitive to the initial weights (``init-scale``);
* 5: BN acts as a regulariser and reduces overfitting (``regularisation``);
* 6: BN allows higher learning rates (``learning-rate``);
* 8: a bias in the layer before BN is redundant (experiment ``bias-before-bn``);
* 1: BN reduces internal covariate shift (``ics``, with Santurkar et al.'s noisy BN);
* 2, 3, 7, 9: convergence speed, time per epoch, test accuracy, before vs after the
  activation, judged from the tutorials' protocols ``t4-cnn`` and ``t1-mlp``;
* 11: scaling inputs to [0, 1] ensures gradients cannot explode (``input-scaling``);
* 12: at inference BN uses the moving statistics (``inference-stats``: moving vs
  recomputed statistics after short and long training;
  and ``small-batch``: BN against GroupNorm and LayerNorm at batch sizes 2 to 32);
* 10: gamma and beta tend to the data's mean and standard deviation (a misconception;
  computed from the same runs).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from bncourse import data

VERDICTS_FILE = "claims-verdicts.txt"  # written by `bncourse report --claims DIR`

__all__ = ["CLAIMS", "ClaimExperiment", "Verdict", "claim_configs", "verdicts"]


@dataclass(frozen=True)
class Verdict:
    """The verdict on one claim: its key numbers, 'supported' / 'not supported' /
    'depends', and the rule that decided it."""

    claim: int
    text: str
    experiment: str
    numbers: dict
    verdict: str
    rule: str


@dataclass(frozen=True)
class ClaimExperiment:
    """An experiment of the claims suite.

    Attributes:
        name: registry key and results folder.
        title: one line.
        version: bumped when its meaning changes (older results become stale).
        variants: the variants it compares.
        seeds: seeds per profile, ``{"quick": (...), "full": (...)}``.
        settings: per profile, the data subset, epochs and other fixed parameters.
        train: ``train(config, on_epoch) -> outcome`` for one run.
        judge: ``judge(records) -> list[Verdict]`` from the saved runs of one profile.
        sweep: optional ``(key, {profile: values})``: one run per value as well.
    """

    name: str
    title: str
    variants: tuple
    settings: dict
    train: Callable
    judge: Callable
    sweep: tuple | None = None
    seeds: dict = field(default_factory=lambda: {"quick": (0,), "full": (0, 1, 2)})
    version: int = 1


def claim_configs(experiment: "ClaimExperiment", profile: str) -> list:
    """Every run's configuration for a profile, seed by seed."""
    if profile not in experiment.settings:
        raise ValueError(f"profile must be one of {', '.join(experiment.settings)}, got {profile!r}")
    if experiment.sweep is None:
        points = [{}]
    else:
        key, values = experiment.sweep
        points = [{key: value} for value in values[profile]]
    return [
        {
            "experiment": experiment.name,
            "version": experiment.version,
            "profile": profile,
            "variant": variant,
            "seed": seed,
            **point,
            **experiment.settings[profile],
        }
        for seed in experiment.seeds[profile]
        for point in points
        for variant in experiment.variants
    ]


# --------------------------------------------------------------------------- helpers


def _mean_std(values):
    values = list(values)
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def _fmt(mean_std, digits=4):
    mean, std = mean_std
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def _progress_callbacks(on_epoch) -> list:
    """Keras callbacks reporting each epoch and its seconds to ``on_epoch`` (progress)."""
    if on_epoch is None:
        return []
    import keras

    clock = {}
    return [keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda epoch, logs: clock.update(start=time.perf_counter()),
        on_epoch_end=lambda epoch, logs: on_epoch(
            epoch, dict(logs or {}), time.perf_counter() - clock["start"]))]


def _fashion_subset(n_train, n_test):
    (x_train, y_train), (x_test, y_test) = data.load_dataset("fashion_mnist")
    return ((data.scale_images(x_train[:n_train]), y_train[:n_train]),
            (data.scale_images(x_test[:n_test]), y_test[:n_test]))


# --------------------------------------------------------------------------- claims 8 and 10


def _train_bias_before_bn(config, on_epoch=None):
    """MLP 300-200-100 with BN before each ReLU, the hidden Dense layers with or without a
    bias; records accuracy, parameter counts, what the learned biases do, and what gamma and
    beta learned next to the statistics of the data BN normalises."""
    import keras

    from bncourse import models
    from bncourse.experiments import set_seed

    set_seed(config["seed"])
    (x_train, y_train), (x_test, y_test) = _fashion_subset(config["train"], config["test"])
    use_bias = config["variant"] == "bias"
    model = models.build_mlp("before", use_bias=use_bias)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.01, momentum=0.9, nesterov=True),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    callbacks = _progress_callbacks(on_epoch)
    model.fit(x_train, y_train, epochs=config["epochs"], batch_size=32, verbose=0,
              callbacks=callbacks)
    test_loss, test_accuracy = model.evaluate(x_test, y_test, batch_size=1000, verbose=0)

    dense = [l for l in model.layers if isinstance(l, keras.layers.Dense)][:-1]
    bns = [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]
    probe = x_test[:1000]
    outcome = {
        "test": {"loss": float(test_loss), "accuracy": float(test_accuracy)},
        "n_params": {"trainable": int(sum(np.prod(w.shape) for w in model.trainable_weights))},
        "layers": [],
    }
    if use_bias:
        biases = [l.bias.numpy().copy() for l in dense]
        outcome["max_abs_bias"] = float(max(np.abs(b).max() for b in biases))
        train_mode = keras.ops.convert_to_numpy(model(probe, training=True))
        for layer in dense:  # take the biases out; in training mode BN subtracts them anyway
            layer.bias.assign(np.zeros_like(layer.bias.numpy()))
        without = keras.ops.convert_to_numpy(model(probe, training=True))
        outcome["training_mode_change_without_bias"] = float(np.abs(train_mode - without).max())
        for layer, bias in zip(dense, biases):
            layer.bias.assign(bias)
    # What BN's parameters learned, next to the statistics of what BN normalises.
    for d, bn in zip(dense, bns):
        inputs = keras.ops.convert_to_numpy(
            keras.Sequential(model.layers[: model.layers.index(d) + 1])(probe))
        outcome["layers"].append({
            "name": bn.name,
            "gamma": bn.gamma.numpy().astype(float).tolist(),
            "beta": bn.beta.numpy().astype(float).tolist(),
            "input_mean": inputs.mean(axis=0).astype(float).tolist(),
            "input_std": inputs.std(axis=0).astype(float).tolist(),
        })
    return outcome


# Thresholds of the verdicts, stated once.
BIAS_ACCURACY_TOLERANCE = 0.01  # accuracies within 1 point count as the same
BIAS_STAYS_AT_ZERO = 1e-3  # a bias that never leaves its initial 0 by more than this
GAMMA_MATCHES_STD = 0.25  # median relative gap |gamma - std| / std below which gamma "is" std
# ... and gamma must have moved there: its gap at most this fraction of the gap it started
# with (gamma starts at 1), or an input std that happens to be near 1 would pass unmoved.
GAMMA_MOVED = 0.5


def _judge_bias_before_bn(records):
    by_variant = {}
    for r in records:
        by_variant.setdefault(r["config"]["variant"], []).append(r)
    acc = {v: _mean_std(r["test"]["accuracy"] for r in runs) for v, runs in by_variant.items()}
    params = {v: runs[0]["n_params"]["trainable"] for v, runs in by_variant.items()}
    max_bias = max(r["max_abs_bias"] for r in by_variant["bias"])
    change = max(r["training_mode_change_without_bias"] for r in by_variant["bias"])
    same_accuracy = abs(acc["bias"][0] - acc["nobias"][0]) <= BIAS_ACCURACY_TOLERANCE
    supported = same_accuracy and max_bias <= BIAS_STAYS_AT_ZERO and params["nobias"] < params["bias"]
    claim8 = Verdict(
        claim=8,
        text="A bias in the layer before BN is redundant, so use use_bias=False",
        experiment="bias-before-bn",
        numbers={
            "test accuracy with bias": _fmt(acc["bias"]),
            "test accuracy without bias": _fmt(acc["nobias"]),
            "trainable parameters saved": params["bias"] - params["nobias"],
            "largest learned bias": f"{max_bias:.2e}",
            "output change when the biases are removed (training mode)": f"{change:.2e}",
        },
        verdict="supported" if supported else "not supported",
        rule=f"supported if the mean test accuracies differ by at most "
        f"{BIAS_ACCURACY_TOLERANCE}, every learned bias stays within {BIAS_STAYS_AT_ZERO} of its "
        "initial 0 (BN's mean subtraction leaves it no gradient), and dropping it saves "
        "parameters",
    )
    # Claim 10, from the runs without bias: does gamma approach the input's std, beta its mean?
    gaps_gamma, gaps_start, gaps_beta, corr_gamma, corr_beta = [], [], [], [], []
    for r in by_variant["nobias"]:
        for layer in r["layers"]:
            gamma, beta = np.array(layer["gamma"]), np.array(layer["beta"])
            mean, std = np.array(layer["input_mean"]), np.array(layer["input_std"])
            gaps_gamma.append(np.median(np.abs(gamma - std) / std))
            gaps_start.append(np.median(np.abs(1.0 - std) / std))
            gaps_beta.append(np.median(np.abs(beta - mean) / std))
            for values, reference, into in ((gamma, std, corr_gamma), (beta, mean, corr_beta)):
                if np.std(values) > 0 and np.std(reference) > 0:  # else undefined
                    into.append(float(np.corrcoef(values, reference)[0, 1]))
    gap = float(np.median(gaps_gamma))
    start = float(np.median(gaps_start))
    claim10 = Verdict(
        claim=10,
        text="During training gamma tends to the data's standard deviation and beta to its mean",
        experiment="bias-before-bn",
        numbers={
            "median |gamma - input std| / input std": f"{gap:.2f}",
            "the same for gamma's initial value 1, median |1 - input std| / input std":
                f"{start:.2f}",
            "median |beta - input mean| / input std": f"{float(np.median(gaps_beta)):.2f}",
            "correlation of gamma with the input std":
                _fmt(_mean_std(corr_gamma), 2) if corr_gamma else "undefined (constant)",
            "correlation of beta with the input mean":
                _fmt(_mean_std(corr_beta), 2) if corr_beta else "undefined (constant)",
        },
        verdict="supported" if gap <= GAMMA_MATCHES_STD and gap <= GAMMA_MOVED * start
        else "not supported",
        rule=f"supported if gamma is within {GAMMA_MATCHES_STD:.0%} of the standard deviation "
        "of BN's input (median over features, layers and seeds) and has moved there: its gap "
        f"is at most {GAMMA_MOVED:g} times the gap of its initial value 1",
    )
    return [claim8, claim10]

# --------------------------------------------------------------------------- claims 4 and 6

DEEP_MLP = (100,) * 6  # six hidden layers: deep enough for the initial scale to matter
TRAINS = 0.7  # a run "trains" if its best validation accuracy reaches this (chance is 0.1)


def _train_sweep(config, on_epoch=None):
    """A six-layer MLP, with BN before each ReLU or without BN, trained with plain SGD (the
    learning-rate sweep) or SGD with momentum (the initial-scale sweep); records the
    validation accuracy per epoch and whether the loss became infinite or NaN."""
    import keras

    from bncourse import models
    from bncourse.experiments import set_seed

    set_seed(config["seed"])
    (x, y), _ = _fashion_subset(config["train"] + config["val"], 0)
    x_train, y_train = x[: config["train"]], y[: config["train"]]
    x_val, y_val = x[config["train"]:], y[config["train"]:]
    scale = config.get("init_scale", 1.0)
    # He initialisation times `scale`: the weights' standard deviation is multiplied by it.
    init = keras.initializers.VarianceScaling(scale=2.0 * scale**2, mode="fan_in",
                                              distribution="truncated_normal")
    bn = "before" if config["variant"] == "bn" else None
    model = models.build_mlp(bn, hidden_units=DEEP_MLP, kernel_initializer=init)
    if "learning_rate" in config:
        optimizer = keras.optimizers.SGD(learning_rate=config["learning_rate"])
    else:
        optimizer = keras.optimizers.SGD(learning_rate=0.01, momentum=0.9)
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    def stop_if_not_finite(batch, logs):
        if logs and not np.isfinite(logs.get("loss", 0.0)):
            model.stop_training = True  # quietly, unlike keras.callbacks.TerminateOnNaN

    callbacks = [keras.callbacks.LambdaCallback(on_train_batch_end=stop_if_not_finite),
                 *_progress_callbacks(on_epoch)]
    fit = model.fit(x_train, y_train, validation_data=(x_val, y_val), epochs=config["epochs"],
                    batch_size=64, verbose=0, callbacks=callbacks)
    losses = fit.history["loss"]
    val = [float(v) for v in fit.history.get("val_accuracy", [])]
    diverged = bool(not np.all(np.isfinite(losses)) or len(losses) < config["epochs"])
    return {
        "val_accuracy": val,
        "loss": [float(v) for v in losses],
        "best_val_accuracy": 0.1 if diverged or not val else max(val),
        "diverged": diverged,
    }


def _sweep_table(records, key):
    """{variant: {value: (mean, std) of best validation accuracy over seeds}}."""
    table = {}
    for r in records:
        c = r["config"]
        table.setdefault(c["variant"], {}).setdefault(c[key], []).append(r["best_val_accuracy"])
    return {v: {k: _mean_std(accs) for k, accs in sorted(vals.items())}
            for v, vals in table.items()}


def _row(values) -> str:
    return ", ".join(f"{k:g}: {m:.2f}" for k, (m, _) in values.items())


def _judge_init_scale(records):
    table = _sweep_table(records, "init_scale")
    trains = {v: [k for k, (m, _) in vals.items() if m >= TRAINS] for v, vals in table.items()}
    supported = len(trains["bn"]) > len(trains["none"])
    return [Verdict(
        claim=4,
        text="BN makes the network less sensitive to the initial weights",
        experiment="init-scale",
        numbers={
            "best validation accuracy by weight scale (x He), no BN": _row(table["none"]),
            "best validation accuracy by weight scale (x He), BN": _row(table["bn"]),
            "scales that train, no BN": len(trains["none"]),
            "scales that train, BN": len(trains["bn"]),
        },
        verdict="supported" if supported else "not supported",
        rule=f"supported if the BN network trains (best validation accuracy >= {TRAINS}, "
        "mean over seeds) at more of the swept initial scales than the plain one",
    )]


def _judge_learning_rate(records):
    table = _sweep_table(records, "learning_rate")
    largest = {v: max([k for k, (m, _) in vals.items() if m >= TRAINS], default=0.0)
               for v, vals in table.items()}
    return [Verdict(
        claim=6,
        text="BN allows higher learning rates",
        experiment="learning-rate",
        numbers={
            "best validation accuracy by learning rate, no BN": _row(table["none"]),
            "best validation accuracy by learning rate, BN": _row(table["bn"]),
            "largest learning rate that trains, no BN": largest["none"],
            "largest learning rate that trains, BN": largest["bn"],
        },
        verdict="supported" if largest["bn"] > largest["none"] else "not supported",
        rule=f"supported if the largest swept learning rate at which the network still trains "
        f"(best validation accuracy >= {TRAINS}, mean over seeds) is larger with BN",
    )]


_SWEEP_SETTINGS = {
    "quick": {"train": 4000, "val": 1000, "epochs": 2},
    "full": {"train": 10000, "val": 5000, "epochs": 5},
}


# --------------------------------------------------------------------------- claim 11

SCALING_DEPTH, SCALING_WIDTH = 12, 100


def _plain_mlp_gradients(params, x, y):
    """Loss and per-layer kernel gradients of a plain ReLU MLP with softmax cross-entropy,
    in NumPy (so the numbers do not depend on a Keras backend)."""
    activations = [x]
    h = x
    for i, (w, b) in enumerate(params):
        z = h @ w + b
        h = np.maximum(z, 0.0) if i < len(params) - 1 else z
        activations.append(h)
    logits = activations[-1]
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = -log_probs[np.arange(len(y)), y].mean()
    d = np.exp(log_probs)
    d[np.arange(len(y)), y] -= 1.0
    d /= len(y)
    grads = [None] * len(params)
    for i in reversed(range(len(params))):
        w, _ = params[i]
        grads[i] = (activations[i].T @ d, d.sum(axis=0))
        if i > 0:
            d = (d @ w.T) * (activations[i] > 0)
    return loss, grads


def _train_input_scaling(config, on_epoch=None):
    """A 12-layer plain ReLU MLP (no BN) on raw [0, 255], [0, 1] or standardised pixels, He
    initialisation times ``init_gain``; records each layer's gradient norm at initialisation
    and after every epoch of SGD, and the loss."""
    rng = np.random.default_rng(config["seed"])
    (x_train, y_train), _ = data.load_dataset("fashion_mnist")
    x = x_train[: config["train"]].reshape(config["train"], -1).astype(np.float64)
    y = y_train[: config["train"]].astype(np.int64)
    if config["variant"] == "unit":
        x /= 255.0
    elif config["variant"] == "standard":
        x = (x - x.mean()) / x.std()
    sizes = [x.shape[1]] + [SCALING_WIDTH] * (SCALING_DEPTH - 1) + [10]
    params = [(rng.normal(0.0, config["init_gain"] * np.sqrt(2.0 / m), (m, n)), np.zeros(n))
              for m, n in zip(sizes[:-1], sizes[1:])]
    probe = slice(0, 256)

    def norms():
        loss, grads = _plain_mlp_gradients(params, x[probe], y[probe])
        return float(loss), [float(np.linalg.norm(g)) for g, _ in grads]

    loss0, norms0 = norms()
    history = {"loss": [], "grad_norms": []}
    diverged = not np.isfinite(loss0)
    batch = 128
    with np.errstate(all="ignore"):  # overflow is what this experiment looks for
        for epoch in range(config["epochs"]):
            start = time.perf_counter()
            order = rng.permutation(len(x))
            for i in range(0, len(x), batch):
                idx = order[i:i + batch]
                loss, grads = _plain_mlp_gradients(params, x[idx], y[idx])
                if not np.isfinite(loss):
                    diverged = True
                    break
                params = [(w - 0.01 * gw, b - 0.01 * gb) for (w, b), (gw, gb) in zip(params, grads)]
            loss, layer_norms = norms()
            history["loss"].append(loss if np.isfinite(loss) else None)
            history["grad_norms"].append(
                [n if np.isfinite(n) else None for n in layer_norms])
            if on_epoch is not None:
                on_epoch(epoch, {"loss": loss}, time.perf_counter() - start)
            if diverged:
                break
    return {"initial_loss": loss0, "initial_grad_norms": norms0, **history,
            "diverged": bool(diverged)}


def _judge_input_scaling(records):
    largest, first, diverged = {}, {}, {}
    for r in records:
        key = (r["config"]["variant"], r["config"]["init_gain"])
        n = r["initial_grad_norms"]
        largest.setdefault(key, []).append(max(n))
        first.setdefault(key, []).append(n[0])
        diverged.setdefault(key, []).append(r["diverged"])
    gains = sorted({g for _, g in largest})
    numbers = {}
    for gain in gains:
        for variant in ("raw", "unit", "standard"):
            if (variant, gain) in largest:
                runs = diverged[(variant, gain)]
                numbers[f"{variant} inputs, He x {gain:g}: largest layer gradient norm at init"] = (
                    f"{_mean_std(largest[(variant, gain)])[0]:.3g}, training diverged in "
                    f"{sum(runs)}/{len(runs)} runs")
    raw_vs_unit = _mean_std(a / b for a, b in zip(first[("raw", gains[0])],
                                                  first[("unit", gains[0])]))
    numbers["first-layer gradient norm, raw over [0, 1] inputs (He)"] = f"{raw_vs_unit[0]:.3g}"
    unit_diverges = any(any(diverged[("unit", g)]) for g in gains if ("unit", g) in diverged)
    return [Verdict(
        claim=11,
        text="Scaling the inputs to [0, 1] ensures that gradients cannot explode",
        experiment="input-scaling",
        numbers=numbers,
        verdict="not supported" if unit_diverges else "supported",
        rule="not supported if, with inputs in [0, 1], SGD training of the plain 12-layer ReLU "
        "network diverges (infinite or NaN loss) at some swept initial scale",
    )]


# --------------------------------------------------------------------------- claim 5


def _train_regularisation(config, on_epoch=None):
    """The T1 MLP with or without BN (before each ReLU) and with or without dropout (0.3
    after each hidden layer), trained with Adam on a training set small enough to overfit;
    records training, validation and test accuracy, all measured in inference mode."""
    import keras

    from bncourse.experiments import set_seed
    from bncourse.models import make_bn_layer

    set_seed(config["seed"])
    (x, y), (x_test, y_test) = _fashion_subset(config["train"] + config["val"], config["test"])
    x_train, y_train = x[: config["train"]], y[: config["train"]]
    x_val, y_val = x[config["train"]:], y[config["train"]:]
    bn = "bn" in config["variant"]
    dropout = "dropout" in config["variant"]
    layers = [keras.Input((28, 28)), keras.layers.Flatten()]
    for i, units in enumerate((300, 200, 100), start=1):
        layers.append(keras.layers.Dense(units, use_bias=not bn))
        if bn:
            layers.append(make_bn_layer("keras", f"bn{i}"))
        layers.append(keras.layers.Activation("relu"))
        if dropout:
            layers.append(keras.layers.Dropout(0.3))
    layers.append(keras.layers.Dense(10, activation="softmax"))
    model = keras.Sequential(layers)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    callbacks = _progress_callbacks(on_epoch)
    fit = model.fit(x_train, y_train, validation_data=(x_val, y_val), epochs=config["epochs"],
                    batch_size=64, verbose=0, callbacks=callbacks)

    def accuracy(xs, ys):
        return float(model.evaluate(xs, ys, batch_size=1000, verbose=0)[1])

    return {
        "val_accuracy": [float(v) for v in fit.history["val_accuracy"]],
        "train_accuracy": accuracy(x_train, y_train),
        "final_val_accuracy": accuracy(x_val, y_val),
        "test": {"accuracy": accuracy(x_test, y_test)},
    }


def _judge_regularisation(records):
    by_variant = {}
    for r in records:
        by_variant.setdefault(r["config"]["variant"], []).append(r)
    gap = {v: _mean_std(r["train_accuracy"] - r["final_val_accuracy"] for r in rs)
           for v, rs in by_variant.items()}
    test = {v: _mean_std(r["test"]["accuracy"] for r in rs) for v, rs in by_variant.items()}
    numbers = {}
    for v in ("none", "bn", "dropout", "bn+dropout"):
        numbers[f"{v}: train - validation accuracy"] = _fmt(gap[v])
        numbers[f"{v}: test accuracy"] = _fmt(test[v])
    smaller = gap["none"][0] - gap["bn"][0]
    noise = 2 * max(gap["none"][1], gap["bn"][1])
    return [Verdict(
        claim=5, text="BN acts as a regulariser and reduces overfitting",
        experiment="regularisation", numbers=numbers,
        verdict="supported" if smaller > noise else "not supported",
        rule="supported if the train-validation accuracy gap with BN is smaller than without "
        "by more than twice the larger standard deviation over seeds (dropout shown for "
        "scale)",
    )]


# --------------------------------------------------------------------------- claim 12


def recompute_bn_statistics(model, x, batch_size=500):
    """Replace every BN layer's moving statistics by the exact mean and (biased) variance of
    its inputs over ``x``, with all weights frozen ("precise BN", Wu & Johnson 2021).

    Layers are done in order, each with the statistics of the earlier ones already replaced,
    so every BN sees the inputs it will see in inference.
    """
    import keras

    from bncourse.keras_bn import BatchNorm

    for index, layer in enumerate(model.layers):
        if not isinstance(layer, (keras.layers.BatchNormalization, BatchNorm)):
            continue
        before = keras.Sequential([keras.Input(model.input_shape[1:]), *model.layers[:index]])
        total, total_sq, count = 0.0, 0.0, 0
        for start in range(0, len(x), batch_size):
            h = keras.ops.convert_to_numpy(before(x[start:start + batch_size], training=False))
            h = h.reshape(-1, h.shape[-1]).astype(np.float64)
            total = total + h.sum(axis=0)
            count += len(h)
        mean = total / count
        for start in range(0, len(x), batch_size):
            h = keras.ops.convert_to_numpy(before(x[start:start + batch_size], training=False))
            h = h.reshape(-1, h.shape[-1]).astype(np.float64)
            total_sq = total_sq + ((h - mean) ** 2).sum(axis=0)  # two passes, as BN does
        layer.moving_mean.assign(mean.astype("float32"))
        layer.moving_variance.assign((total_sq / count).astype("float32"))


def _train_inference_stats(config, on_epoch=None):
    """The tutorial CNN (BN after each activation and pooling) with BN momentum 0.99 or 0.9,
    trained for a given number of steps; test accuracy with the moving statistics and with
    statistics recomputed over training images."""
    import keras

    from bncourse import models
    from bncourse.experiments import set_seed

    set_seed(config["seed"])
    (x, y), (x_test, y_test) = _fashion_subset(config["train"], config["test"])
    x, x_test = data.add_channel_axis(x), data.add_channel_axis(x_test)
    momentum = float(config["variant"][1:])
    model = models.build_cnn(
        "after", bn_layer=lambda name: keras.layers.BatchNormalization(momentum=momentum,
                                                                        name=name))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    rng = np.random.default_rng(config["seed"])
    start = time.perf_counter()
    for _ in range(config["steps"]):
        idx = rng.integers(0, len(x), config["batch_size"])
        model.train_on_batch(x[idx], y[idx])
    if on_epoch is not None:
        on_epoch(0, {}, time.perf_counter() - start)

    def accuracy():
        return float(model.evaluate(x_test, y_test, batch_size=1000, verbose=0)[1])

    moving = accuracy()
    recompute_bn_statistics(model, x[: config["recompute_on"]])
    return {"test_accuracy_moving": moving, "test_accuracy_precise": accuracy()}


def _judge_inference_stats(records):
    table = {}
    for r in records:
        key = (r["config"]["variant"], r["config"]["steps"])
        table.setdefault(key, []).append(r)
    numbers, gaps = {}, {}
    for (variant, steps), rs in sorted(table.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        moving = _mean_std(r["test_accuracy_moving"] for r in rs)
        precise = _mean_std(r["test_accuracy_precise"] for r in rs)
        numbers[f"momentum {variant[1:]}, {steps} steps: test accuracy moving vs recomputed"] = (
            f"{_fmt(moving, 3)} vs {_fmt(precise, 3)}")
        gaps[(variant, steps)] = precise[0] - moving[0] > max(0.01, 2 * max(moving[1], precise[1]))
    longest = max(steps for _, steps in gaps)
    long_gap = any(gap for (_, steps), gap in gaps.items() if steps == longest)
    short_gap = any(gap for (_, steps), gap in gaps.items() if steps < longest)
    verdict = "not supported" if long_gap else "depends" if short_gap else "supported"
    return [Verdict(
        claim=12,
        text="At inference the layer uses the moving mean and variance collected in training",
        experiment="inference-stats", numbers=numbers, verdict=verdict,
        rule="the moving statistics are a good stand-in if recomputing the statistics over "
        "training images (weights frozen) gains at most max(0.01, 2 std) of test accuracy: "
        "supported if so everywhere, depends (on the number of steps) if only the shorter "
        "runs gain more, not supported if the longest runs do too",
    )]


# --------------------------------------------------------------------------- claim 1

ICS_PERCENTILES = (15, 50, 85)


def _noisy_shift_layer():
    """A layer that, in training only, scales and shifts each feature by fresh random amounts
    at every step (Santurkar et al. 2018's "noisy BN"): it creates distribution shift on
    purpose, after BN has removed it."""
    import keras

    class NoisyShift(keras.layers.Layer):
        def __init__(self, scale_std=0.5, shift_std=1.0, seed=0, **kwargs):
            super().__init__(**kwargs)
            self.scale_std, self.shift_std = scale_std, shift_std
            self.seed_generator = keras.random.SeedGenerator(seed)

        def call(self, inputs, training=None):
            if not training:
                return inputs
            shape = (inputs.shape[-1],)
            scale = keras.ops.exp(keras.random.normal(shape, stddev=self.scale_std,
                                                      seed=self.seed_generator))
            shift = keras.random.normal(shape, stddev=self.shift_std, seed=self.seed_generator)
            return inputs * scale + shift

    return NoisyShift


def _train_ics(config, on_epoch=None):
    """Ioffe & Szegedy's figure 1 setting on Fashion-MNIST: three hidden layers of 100
    sigmoid units, with BN before each sigmoid, without, or with BN followed by per-step
    noise. Every ``probe_every`` steps it records the 15th, 50th and 85th percentiles of one
    unit's sigmoid input over a fixed probe batch (in training mode, as the layer sees it
    while it learns), and the validation accuracy."""
    import keras

    from bncourse.experiments import set_seed

    set_seed(config["seed"])
    (x, y), (x_test, y_test) = _fashion_subset(config["train"], config["test"])
    variant = config["variant"]
    noisy = _noisy_shift_layer()
    layers = [keras.Input((28, 28)), keras.layers.Flatten()]
    for i in range(3):
        layers.append(keras.layers.Dense(100, use_bias=variant == "none"))
        if variant != "none":
            layers.append(keras.layers.BatchNormalization())
        if variant == "noisy-bn":
            layers.append(noisy(seed=config["seed"] * 10 + i))
        layers.append(keras.layers.Activation("sigmoid"))
    layers.append(keras.layers.Dense(10, activation="softmax"))
    model = keras.Sequential(layers)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=config["learning_rate"]),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    last_sigmoid = max(i for i, l in enumerate(model.layers)
                       if isinstance(l, keras.layers.Activation))
    probe_model = keras.Sequential([keras.Input((28, 28)), *model.layers[:last_sigmoid]])
    probe = x_test[: config["probe"]]
    val = x_test[config["probe"]:], y_test[config["probe"]:]
    rng = np.random.default_rng(config["seed"])
    steps, percentiles, val_acc = [], [], []
    start = time.perf_counter()
    for step in range(config["steps"] + 1):
        if step % config["probe_every"] == 0:
            # In training mode: the distribution the sigmoid meets while it trains, noise
            # included. That call updates BN's moving statistics, so they are put back.
            saved = [v.numpy() for v in model.non_trainable_weights]
            h = keras.ops.convert_to_numpy(probe_model(probe, training=True))[:, config["unit"]]
            for v, value in zip(model.non_trainable_weights, saved):
                v.assign(value)
            steps.append(step)
            percentiles.append([float(v) for v in np.percentile(h, ICS_PERCENTILES)])
            val_acc.append(float(model.evaluate(*val, batch_size=1000, verbose=0)[1]))
        if step < config["steps"]:
            idx = rng.integers(0, len(x), config["batch_size"])
            model.train_on_batch(x[idx], y[idx])
    if on_epoch is not None:
        on_epoch(0, {}, time.perf_counter() - start)
    return {"steps": steps, "percentiles": percentiles, "val_accuracy": val_acc}


def ics_drift(record) -> float:
    """How much the probed unit's input distribution moves over training: the standard
    deviation of its median over the probes after the first 10% of steps, divided by the
    mean distance between its 15th and 85th percentiles."""
    p = np.array(record["percentiles"])
    p = p[len(p) // 10:]
    return float(p[:, 1].std() / max((p[:, 2] - p[:, 0]).mean(), 1e-12))


def _judge_ics(records):
    by_variant = {}
    for r in records:
        by_variant.setdefault(r["config"]["variant"], []).append(r)
    drift = {v: _mean_std(ics_drift(r) for r in rs) for v, rs in by_variant.items()}
    final = {v: _mean_std(r["val_accuracy"][-1] for r in rs) for v, rs in by_variant.items()}
    numbers = {}
    for v in ("none", "bn", "noisy-bn"):
        numbers[f"{v}: drift of the unit's input (median sd / 15-85 spread)"] = _fmt(drift[v], 3)
        numbers[f"{v}: final validation accuracy"] = _fmt(final[v], 3)
    reduces = drift["none"][0] - drift["bn"][0] > 2 * max(drift["none"][1], drift["bn"][1])
    return [Verdict(
        claim=1, text="BN reduces internal covariate shift (the drift of each layer's input "
        "distribution during training)", experiment="ics", numbers=numbers,
        verdict="supported" if reduces else "not supported",
        rule="supported if the drift of a sigmoid unit's input, as defined in "
        "bncourse.claims.ics_drift, is smaller with BN by more than twice the larger standard "
        "deviation over seeds. The noisy-BN rows (Santurkar et al. 2018) test whether that "
        "is why BN helps: noise restores the drift; compare their accuracy with plain BN",
    )]



# "ln" is Keras's LayerNormalization with its default axis=-1: on the convolutions' feature
# maps it normalises each position over its channels only, not over (H, W, C) as in Ba et
# al. (2016) (that would be GroupNormalization(groups=1)). Its labels say so.
NORM_LAYERS = {
    "bn": lambda name: __import__("keras").layers.BatchNormalization(name=name),
    "gn": lambda name: __import__("keras").layers.GroupNormalization(groups=8, name=name),
    "ln": lambda name: __import__("keras").layers.LayerNormalization(name=name),
}


def _train_small_batch(config, on_epoch=None):
    """The tutorial CNN with BN, GroupNorm (8 groups) or Keras's LayerNormalization (default
    axis: over channels only) before each activation,
    trained with Adam at a given batch size on a fixed number of images; records the training
    accuracy as fit reports it (training mode) and the test accuracy (inference mode)."""

    from bncourse import models
    from bncourse.experiments import set_seed

    set_seed(config["seed"])
    (x, y), (x_test, y_test) = _fashion_subset(config["train"], config["test"])
    x, x_test = data.add_channel_axis(x), data.add_channel_axis(x_test)
    model = models.build_cnn("before", bn_layer=NORM_LAYERS[config["variant"]])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    callbacks = _progress_callbacks(on_epoch)
    fit = model.fit(x, y, epochs=config["epochs"], batch_size=config["batch_size"], verbose=0,
                    callbacks=callbacks)

    def accuracy():
        return float(model.evaluate(x_test, y_test, batch_size=1000, verbose=0)[1])

    outcome = {"train_accuracy_training_mode": float(fit.history["accuracy"][-1]),
               "test": {"accuracy": accuracy()}}
    if config["variant"] == "bn":
        # Separates the two effects of small batches: noisy statistics while training, and
        # moving averages that do not match them (see the inference-stats experiment).
        recompute_bn_statistics(model, x[:5000])
        outcome["test_accuracy_recomputed"] = accuracy()
    return outcome


def _judge_small_batch(records):
    groups = {}
    for r in records:
        groups.setdefault((r["config"]["variant"], r["config"]["batch_size"]), []).append(r)
    numbers = {}
    test = {k: _mean_std(r["test"]["accuracy"] for r in rs) for k, rs in groups.items()}
    for (variant, batch), rs in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        train = _mean_std(r["train_accuracy_training_mode"] for r in rs)
        numbers[f"batch {batch}, {variant}: train (training mode) / test accuracy"] = (
            f"{_fmt(train, 3)} / {_fmt(test[(variant, batch)], 3)}")
        if variant == "bn":
            recomputed = _mean_std(r["test_accuracy_recomputed"] for r in rs)
            numbers[f"batch {batch}, bn: test accuracy with recomputed statistics"] = _fmt(
                recomputed, 3)
    smallest = min(b for _, b in groups)
    largest = max(b for _, b in groups)
    bn_small, gn_small = test[("bn", smallest)], test[("gn", smallest)]
    bn_large, gn_large = test[("bn", largest)], test[("gn", largest)]
    behind_small = gn_small[0] - bn_small[0] > 2 * max(gn_small[1], bn_small[1])
    behind_large = gn_large[0] - bn_large[0] > 2 * max(gn_large[1], bn_large[1])
    verdict = "not supported" if behind_large else "depends" if behind_small else "supported"
    return [Verdict(
        claim=12, text="At inference the layer uses the moving statistics: at small batch "
        "sizes they no longer match the batch statistics BN trained with",
        experiment="small-batch", numbers=numbers, verdict=verdict,
        rule=f"compares BN with GroupNorm, which has no batch statistics: depends (on the batch "
        f"size) if GroupNorm's test accuracy beats BN's by more than twice the larger standard "
        f"deviation at batch {smallest} but not at batch {largest}; supported if at neither, "
        "not supported if at both",
    )]


# --------------------------------------------------------------------------- claims 2, 3, 7, 9
# Judged from the tutorials' protocols (bncourse.experiments), once every seed is there.

SLOWER = 1.05  # BN "makes each epoch slower" if its median epoch takes 5% longer or more
TUTORIAL_T4 = {"none": 0.97, "after": 0.992}  # T4's reported test accuracies (MNIST)


def _protocol_runs(records, name, variants):
    """{variant: runs} of one protocol, full profile if complete, else quick; or None."""
    from bncourse.experiments import PROTOCOLS

    protocol = PROTOCOLS[name]
    for profile in ("full", "quick"):
        runs = {v: [r for r in records if r["config"]["experiment"] == name
                    and r["config"]["profile"] == profile and r["config"]["bn"] == v]
                for v in variants}
        need = len(protocol.seeds) if profile == "full" else 1
        if all(len(runs[v]) >= need for v in variants):
            return runs
    return None


def _epochs_to(curve, target):
    return next((i for i, v in enumerate(curve, start=1) if v >= target), len(curve) + 1)


def _protocol_verdicts(records):
    from bncourse.results import steady_epoch_seconds

    out = []
    cnn = _protocol_runs(records, "t4-cnn", ("none", "after"))
    mlp = _protocol_runs(records, "t1-mlp", ("none", "before", "after"))
    pairs = [(name, runs, bn) for name, runs in (("t4-cnn", cnn), ("t1-mlp", mlp)) if runs
             for bn in runs if bn != "none"]
    if not pairs:
        return out
    # Claim 2: epochs to a fixed validation accuracy, 95% of the weakest variant's final mean.
    numbers, faster = {}, []
    for name, runs in (("t4-cnn", cnn), ("t1-mlp", mlp)):
        if not runs:
            continue
        target = 0.95 * min(statistics.fmean(r["history"]["val_accuracy"][-1] for r in rs)
                            for rs in runs.values())
        epochs = {v: _mean_std(_epochs_to(r["history"]["val_accuracy"], target) for r in rs)
                  for v, rs in runs.items()}
        for v, ms in epochs.items():
            numbers[f"{name}, {v}: epochs to validation accuracy {target:.3f}"] = _fmt(ms, 1)
        faster += [epochs[v][0] < epochs["none"][0] for v in epochs if v != "none"]
    out.append(Verdict(
        claim=2, text="BN speeds up convergence (fewer epochs to a given accuracy)",
        experiment="t4-cnn, t1-mlp", numbers=numbers,
        verdict="supported" if all(faster) else "not supported" if not any(faster) else "depends",
        rule="epochs to reach 95% of the weakest variant's final mean validation accuracy; "
        "supported if every BN variant needs fewer on average than no BN, not supported if "
        "none does, depends otherwise"))
    # Claim 3: seconds per epoch.
    numbers, slower = {}, []
    for name, runs, bn in pairs:
        median = {v: statistics.median(s for r in runs[v] for s in steady_epoch_seconds(r))
                  for v in (bn, "none")}
        ratio = median[bn] / median["none"]
        numbers[f"{name}, {bn} vs none: seconds per epoch"] = (
            f"{median[bn]:.1f} vs {median['none']:.1f} ({ratio:.2f}x)")
        slower.append(ratio >= SLOWER)
    out.append(Verdict(
        claim=3, text="BN makes each epoch slower", experiment="t4-cnn, t1-mlp",
        numbers=numbers,
        verdict="supported" if all(slower) else "not supported" if not any(slower) else "depends",
        rule=f"supported if every BN variant's median epoch (first epoch left out) takes at "
        f"least {SLOWER}x as long as without BN"))
    # Claim 7: test accuracy of the CNN.
    if cnn:
        acc = {v: _mean_std(r["test"]["accuracy"] for r in rs) for v, rs in cnn.items()}
        gain = acc["after"][0] - acc["none"][0]
        noise = 2 * max(acc["after"][1], acc["none"][1])
        out.append(Verdict(
            claim=7, text="BN improves test accuracy (T4: 0.97 without, 0.992 with)",
            experiment="t4-cnn",
            numbers={"test accuracy, no BN": _fmt(acc["none"]),
                     "test accuracy, BN after (tutorial placement)": _fmt(acc["after"]),
                     "difference": f"{gain:+.4f}",
                     "T4's numbers (MNIST, one run)": f"{TUTORIAL_T4['none']} vs "
                     f"{TUTORIAL_T4['after']}"},
            verdict="supported" if gain > noise else "not supported",
            rule="supported if the mean test accuracy with BN exceeds the one without by more "
            "than twice the larger standard deviation over seeds (Fashion-MNIST)"))
    # Claim 9: before or after the activation.
    if mlp:
        acc = {v: _mean_std(r["test"]["accuracy"] for r in rs) for v, rs in mlp.items()}
        diff = acc["after"][0] - acc["before"][0]
        noise = 2 * max(acc["after"][1], acc["before"][1])
        out.append(Verdict(
            claim=9, text="BN can go before or after the activation; results are mostly "
            "better after", experiment="t1-mlp",
            numbers={"test accuracy, BN before ReLU": _fmt(acc["before"]),
                     "test accuracy, BN after ReLU": _fmt(acc["after"]),
                     "after minus before": f"{diff:+.4f}"},
            verdict="supported" if diff > noise else "not supported" if diff < -noise
            else "depends",
            rule="supported if after beats before by more than twice the larger standard "
            "deviation over seeds, not supported if before wins by as much, depends (within "
            "noise) otherwise"))
    return out


CLAIMS = {
    e.name: e
    for e in [
        ClaimExperiment(
            name="ics",
            title="Three hidden layers of 100 sigmoid units: a unit's input distribution over "
            "training, without BN, with BN, with BN plus per-step noise",
            variants=("none", "bn", "noisy-bn"),
            settings={"quick": {"train": 10000, "test": 2000, "probe": 1000, "unit": 0,
                                "steps": 300, "probe_every": 30, "batch_size": 60,
                                "learning_rate": 0.5},
                      "full": {"train": 60000, "test": 10000, "probe": 2000, "unit": 0,
                               "steps": 5000, "probe_every": 100, "batch_size": 60,
                               "learning_rate": 0.5}},
            train=_train_ics,
            judge=_judge_ics,
        ),
        ClaimExperiment(
            name="bias-before-bn",
            title="MLP with BN before each ReLU, hidden layers with and without a bias",
            variants=("bias", "nobias"),
            settings={
                "quick": {"train": 3000, "test": 1000, "epochs": 2},
                "full": {"train": 20000, "test": 10000, "epochs": 10},
            },
            train=_train_bias_before_bn,
            judge=_judge_bias_before_bn,
        ),
        ClaimExperiment(
            name="init-scale",
            title="Six-layer MLP, with and without BN, initial weights at 0.01x to 100x He",
            variants=("none", "bn"),
            settings=_SWEEP_SETTINGS,
            sweep=("init_scale", {"quick": [0.01, 1.0, 100.0],
                                  "full": [0.01, 0.1, 1.0, 10.0, 100.0]}),
            train=_train_sweep,
            judge=_judge_init_scale,
        ),
        ClaimExperiment(
            name="learning-rate",
            title="Six-layer MLP, with and without BN, plain SGD at learning rates 0.001 to 10",
            variants=("none", "bn"),
            settings=_SWEEP_SETTINGS,
            sweep=("learning_rate", {"quick": [0.01, 1.0], "full": [0.001, 0.01, 0.1, 1.0, 10.0]}),
            train=_train_sweep,
            judge=_judge_learning_rate,
        ),
        ClaimExperiment(
            name="regularisation",
            title="T1 MLP with and without BN, with and without dropout, on 10,000 images",
            variants=("none", "bn", "dropout", "bn+dropout"),
            settings={"quick": {"train": 3000, "val": 1000, "test": 1000, "epochs": 3},
                      "full": {"train": 10000, "val": 5000, "test": 10000, "epochs": 20}},
            train=_train_regularisation,
            judge=_judge_regularisation,
        ),
        ClaimExperiment(
            name="inference-stats",
            title="Tutorial CNN, BN momentum 0.99 and 0.9, short and long training: moving "
            "vs recomputed statistics",
            variants=("m0.99", "m0.9"),
            settings={"quick": {"train": 5000, "test": 1000, "batch_size": 50,
                                "recompute_on": 2000},
                      "full": {"train": 60000, "test": 10000, "batch_size": 250,
                               "recompute_on": 10000}},
            sweep=("steps", {"quick": [20, 200], "full": [50, 2000]}),
            train=_train_inference_stats,
            judge=_judge_inference_stats,
        ),
        ClaimExperiment(
            name="small-batch",
            title="Tutorial CNN with BN, GroupNorm or LayerNormalization (channels only) "
            "before each ReLU, batch sizes "
            "2 to 32",
            variants=("bn", "gn", "ln"),
            settings={"quick": {"train": 1000, "test": 1000, "epochs": 1},
                      "full": {"train": 10000, "test": 10000, "epochs": 3}},
            sweep=("batch_size", {"quick": [2, 32], "full": [2, 4, 8, 32]}),
            train=_train_small_batch,
            judge=_judge_small_batch,
        ),
        ClaimExperiment(
            name="input-scaling",
            title="Plain 12-layer ReLU MLP on raw, [0, 1] and standardised pixels: gradient "
            "norms per layer",
            variants=("raw", "unit", "standard"),
            settings={"quick": {"train": 2000, "epochs": 1},
                      "full": {"train": 10000, "epochs": 5}},
            sweep=("init_gain", {"quick": [1.0, 1.5], "full": [1.0, 1.5]}),
            train=_train_input_scaling,
            judge=_judge_input_scaling,
        ),
    ]
}


def verdicts(records) -> list:
    """Verdicts of every claim experiment that has results among ``records``, by claim."""
    out = []
    for name, experiment in CLAIMS.items():
        by_profile = {}
        for r in records:
            if r["config"]["experiment"] == name:
                by_profile.setdefault(r["config"]["profile"], []).append(r)
        for profile in ("full", "quick"):
            if profile in by_profile:
                out += experiment.judge(by_profile[profile])
                break
    out += _protocol_verdicts(records)
    return sorted(out, key=lambda v: v.claim)


def format_verdicts(items) -> str:
    """The claims table: claim, experiment, key numbers, verdict."""
    if not items:
        return "no claim results"
    lines = []
    for v in items:
        lines.append(f"claim {v.claim}: {v.text}")
        lines.append(f"  experiment: {v.experiment}")
        for key, value in v.numbers.items():
            lines.append(f"  {key}: {value}")
        lines.append(f"  verdict: {v.verdict.upper()} ({v.rule})")
    return "\n".join(lines)
