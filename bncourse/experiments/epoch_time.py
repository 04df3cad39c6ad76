"""Claim 3 (BN makes each epoch slower), timed fairly: the network with and without BN trained
in alternating short timed runs on the same images, so that a busy spell of a shared machine
falls on both alike, repeated round after round; the ratio of their times per round gets an
interval. The T1 MLP (BN before each ReLU, SGD, batch 32) and the T4 CNN (BN after each
activation and pooling, Adam, batch 250) are timed separately: BN adds a few elementwise
operations per feature, which is little next to a convolution's arithmetic per position but
a visible share of a small Dense layer's step, where fixed per-step costs also weigh."""

from __future__ import annotations

import math
import time

from bncourse.experiments.common import fashion_subset, fmt
from bncourse.experiments.registry import Experiment, MissingRuns, settings_configs
from bncourse.stats import t_interval
from bncourse.verdicts import effect, verdict

NAME = "epoch-time"
MODELS = {
    # model: (BN placement of its tutorial, batch size, optimizer)
    "mlp": ("before", 32, "sgd"),
    "cnn": ("after", 250, "adam"),
}


def _compiled(kind, bn):
    import keras

    from bncourse import models

    placement, _, optimizer = MODELS[kind]
    build = models.build_mlp if kind == "mlp" else models.build_cnn
    model = build(placement if bn else None)
    opt = (
        keras.optimizers.SGD(learning_rate=0.01, momentum=0.9, nesterov=True)
        if optimizer == "sgd"
        else keras.optimizers.Adam()
    )
    model.compile(optimizer=opt, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def arithmetic(model) -> dict:
    """Per example: the multiply-adds of the Dense and Conv2D layers, and the number of values
    the BN layers normalise (each costs a handful of elementwise operations forward and
    backward)."""
    import keras

    macs, normalised = 0, 0
    for layer in model.layers:
        out = layer.output.shape[1:]
        if isinstance(layer, keras.layers.Dense):
            macs += layer.kernel.shape[0] * layer.kernel.shape[1]
        elif isinstance(layer, keras.layers.Conv2D):
            kh, kw, cin, cout = layer.kernel.shape
            macs += out[0] * out[1] * cout * kh * kw * cin
        elif isinstance(layer, keras.layers.BatchNormalization):
            normalised += math.prod(out)
    return {"multiply_adds": int(macs), "bn_values": int(normalised)}


def train(config, on_epoch=None):
    """Time ``rounds[model]`` alternating runs of ``steps[model]`` training steps with and
    without BN (the order swapped every round), after one untimed warm-up run each."""
    from bncourse import data
    from bncourse.experiments.protocol import set_seed

    set_seed(config["seed"])
    kind = config["variant"]
    _, batch, _ = MODELS[kind]
    steps = config["steps"][kind]
    (x, y), _ = fashion_subset(steps * batch, 0)
    if kind == "cnn":
        x = data.add_channel_axis(x)
    nets = {"none": _compiled(kind, False), "bn": _compiled(kind, True)}
    for model in nets.values():  # compile the training step outside the timing
        model.fit(x[: 2 * batch], y[: 2 * batch], batch_size=batch, epochs=1, verbose=0)
    seconds = {"none": [], "bn": []}
    for i in range(config["rounds"][kind]):
        order = ("none", "bn") if i % 2 == 0 else ("bn", "none")
        for variant in order:
            start = time.perf_counter()
            nets[variant].fit(x, y, batch_size=batch, epochs=1, shuffle=False, verbose=0)
            seconds[variant].append(time.perf_counter() - start)
        if on_epoch is not None:
            on_epoch(i, {}, seconds["none"][-1] + seconds["bn"][-1])
    return {
        "seconds": seconds,
        "steps": steps,
        "batch_size": batch,
        "n_params": {v: int(sum(math.prod(w.shape) for w in m.weights)) for v, m in nets.items()},
        "per_example": arithmetic(nets["bn"]),
    }


def judge(runs):
    by_model = {r["config"]["variant"]: r for r in runs[NAME]}
    missing = [m for m in MODELS if m not in by_model]
    if missing:
        raise MissingRuns(f"claim 3: no timing of {', '.join(missing)}")
    effects, numbers = [], {}
    for kind, r in by_model.items():
        s = r["seconds"]
        ratios = [math.log(b / n) for b, n in zip(s["bn"], s["none"])]
        interval = t_interval(ratios, unit="alternating rounds")
        effects.append(effect(f"{kind}: log of seconds with BN over without, per round", interval))
        per_step = {v: [t / r["steps"] * 1000 for t in s[v]] for v in s}
        numbers[f"{kind}: milliseconds per step (batch {r['batch_size']}), no BN / BN"] = (
            f"{fmt(per_step['none'], 2)} / {fmt(per_step['bn'], 2)}"
        )
        numbers[f"{kind}: time with BN over without"] = (
            f"{math.exp(interval.estimate):.2f}x [{math.exp(interval.low):.2f}x, "
            f"{math.exp(interval.high):.2f}x] over {len(ratios)} alternating rounds"
        )
        numbers[f"{kind}: weights (incl. BN's four per feature), no BN / BN"] = (
            f"{r['n_params']['none']} / {r['n_params']['bn']}"
        )
        work = r.get("per_example")
        if work:
            numbers[
                f"{kind}: per example, multiply-adds of the Dense/Conv2D layers vs values "
                "BN normalises"
            ] = (
                f"{work['multiply_adds']:,} vs {work['bn_values']:,} "
                f"({work['bn_values'] / work['multiply_adds']:.1%})"
            )
    return [
        verdict(
            "3",
            "BN makes each epoch slower",
            NAME,
            effects,
            rule="the same number of training steps on the same images, with and without BN, "
            "timed in alternating runs; the claim predicts a ratio above 1 (log above 0) for "
            "each model: supported if every interval lies above 0, contradicted if any lies "
            "below 0 (BN faster)",
            numbers=numbers,
        )
    ]


EXPERIMENTS = (
    Experiment(
        name=NAME,
        title="Seconds per training step with and without BN, timed in alternating runs (T1 MLP, "
        "T4 CNN)",
        configs=settings_configs(
            NAME,
            variants=tuple(MODELS),
            # The MLP's rounds are short (a second or two), so a shared machine's changing load
            # makes them noisy: it gets more of them.
            settings={
                "quick": {"rounds": {"mlp": 3, "cnn": 3}, "steps": {"mlp": 50, "cnn": 10}},
                "full": {"rounds": {"mlp": 40, "cnn": 12}, "steps": {"mlp": 600, "cnn": 100}},
            },
            seeds={"quick": (0,), "full": (0,)},
        ),
        train=train,
        claims=("3",),
        judge=judge,
    ),
)
