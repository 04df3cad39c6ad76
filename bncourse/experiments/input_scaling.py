"""Claim 11 (scaling the inputs to [0, 1] ensures that gradients cannot explode): a plain
12-layer ReLU MLP, in NumPy, on raw, [0, 1] and standardised pixels; gradient norms per
layer at initialisation and after each epoch of SGD, and whether training diverged."""

from __future__ import annotations

import time

import numpy as np

from bncourse import data
from bncourse.experiments.common import require
from bncourse.experiments.registry import Experiment, settings_configs
from bncourse.stats import binomial_interval, mean_std
from bncourse.verdicts import effect, verdict

NAME = "input-scaling"
SCALING_DEPTH, SCALING_WIDTH = 12, 100


def plain_mlp_gradients(params, x, y):
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


def train(config, on_epoch=None):
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
    params = [
        (rng.normal(0.0, config["init_gain"] * np.sqrt(2.0 / m), (m, n)), np.zeros(n))
        for m, n in zip(sizes[:-1], sizes[1:])
    ]
    probe = slice(0, 256)

    def norms():
        loss, grads = plain_mlp_gradients(params, x[probe], y[probe])
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
                idx = order[i : i + batch]
                loss, grads = plain_mlp_gradients(params, x[idx], y[idx])
                if not np.isfinite(loss):
                    diverged = True
                    break
                params = [(w - 0.01 * gw, b - 0.01 * gb) for (w, b), (gw, gb) in zip(params, grads)]
            loss, layer_norms = norms()
            history["loss"].append(loss if np.isfinite(loss) else None)
            history["grad_norms"].append([n if np.isfinite(n) else None for n in layer_norms])
            if on_epoch is not None:
                on_epoch(epoch, {"loss": loss}, time.perf_counter() - start)
            if diverged:
                break
    return {
        "initial_loss": loss0,
        "initial_grad_norms": norms0,
        **history,
        "diverged": bool(diverged),
    }


def judge(runs):
    records = runs[NAME]
    groups = {}
    for r in records:
        groups.setdefault((r["config"]["variant"], r["config"]["init_gain"]), []).append(r)
    gains = sorted({g for _, g in groups})
    require(
        {v: [k for k in groups if k[0] == v] for v in ("raw", "unit")}, ("raw", "unit"), "claim 11"
    )
    numbers = {}
    for gain in gains:
        for variant in ("raw", "unit", "standard"):
            rs = groups.get((variant, gain), [])
            if rs:
                largest = mean_std(max(r["initial_grad_norms"]) for r in rs)[0]
                numbers[f"{variant} inputs, He x {gain:g}: largest layer gradient norm at init"] = (
                    f"{largest:.3g}, training diverged in "
                    f"{sum(r['diverged'] for r in rs)}/{len(rs)} runs"
                )
    unit = [r for g in gains for r in groups.get(("unit", g), [])]
    diverged = sum(r["diverged"] for r in unit)
    return [
        verdict(
            "11",
            "Scaling the inputs to [0, 1] ensures that gradients cannot explode",
            NAME,
            [
                effect(
                    "share of runs on [0, 1] inputs whose training diverged (every swept scale)",
                    binomial_interval(diverged, len(unit)),
                    side="below",
                    prediction="0 (no run diverges)",
                )
            ],
            rule="a guarantee is contradicted by one counterexample: with inputs in [0, 1], the "
            "claim predicts no run diverges (infinite or NaN loss); contradicted if the interval "
            "of the share of diverged runs lies above 0 (at least one diverged), and never "
            "supported by a finite sweep, only inconclusive: no counterexample found",
            numbers=numbers,
        )
    ]


EXPERIMENTS = (
    Experiment(
        name=NAME,
        title="Plain 12-layer ReLU MLP on raw, [0, 1] and standardised pixels: gradient "
        "norms per layer",
        configs=settings_configs(
            NAME,
            variants=("raw", "unit", "standard"),
            settings={"quick": {"train": 2000, "epochs": 1}, "full": {"train": 10000, "epochs": 5}},
            seeds={"quick": (0,), "full": (0, 1, 2, 3, 4)},
            sweep=("init_gain", {"quick": [1.0, 1.5], "full": [1.0, 1.5]}),
        ),
        train=train,
        claims=("11",),
        judge=judge,
    ),
)
