"""Claims 8 (a bias before BN is redundant) and 10 (gamma and beta tend to the data's
standard deviation and mean): an MLP with BN before each ReLU, its hidden Dense layers with
and without a bias; what the biases, gamma and beta learn."""

from __future__ import annotations

import numpy as np

from bncourse.experiments.common import (
    by_variant,
    fashion_subset,
    fmt,
    paired,
    progress_callbacks,
    require,
)
from bncourse.experiments.registry import Experiment, MissingRuns, settings_configs
from bncourse.stats import equivalence_power, mean_std, seeds_for_equivalence, t_interval
from bncourse.verdicts import effect, verdict

NAME = "bias-before-bn"
# Claim 8 is an equivalence claim: dropping the bias loses nothing. "Nothing" is a loss of
# test accuracy below one point: less than the 2 points between BN before and after the
# ReLU that a reader would act on (claim 9), and the resolution that 10,000 test images give
# (a binomial standard error of about 0.3 points).
NO_LOSS_MARGIN = 0.01
# How many seeds the equivalence test needs. A pilot of PILOT_SEEDS (the full profile's
# first seeds, run before the count was set) measured the spread of the paired loss; with it,
# FULL_SEEDS is the fewest seeds whose test shows a true loss of 0 to lie under the margin
# with probability EQUIVALENCE_POWER (stats.seeds_for_equivalence). A test recomputes the
# count from the committed pilot runs. The pilot's five seeds alone had a power of 0.15.
PILOT_SEEDS = (0, 1, 2, 3, 4)
EQUIVALENCE_POWER = 0.8
FULL_SEEDS = tuple(range(31))
BIAS_STAYS_AT_ZERO = 1e-3  # a bias that never leaves its initial 0 by more than this
GAMMA_MATCHES_STD = 0.25  # median relative gap |gamma - std| / std below which gamma "is" std
# Test images on which the trained network is probed: what the biases change in training mode,
# and the statistics of each BN layer's input that gamma and beta are compared with.
PROBE_IMAGES = 1000


def train(config, on_epoch=None):
    """MLP 300-200-100 with BN before each ReLU, the hidden Dense layers with or without a
    bias; records accuracy, parameter counts, what the learned biases do, and what gamma and
    beta learned next to the statistics of the data BN normalises."""
    import keras

    from bncourse import models
    from bncourse.experiments.protocol import set_seed

    set_seed(config["seed"])
    (x_train, y_train), (x_test, y_test) = fashion_subset(config["train"], config["test"])
    use_bias = config["variant"] == "bias"
    model = models.build_mlp("before", use_bias=use_bias)
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=0.01, momentum=0.9, nesterov=True),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    callbacks = progress_callbacks(on_epoch)
    model.fit(
        x_train, y_train, epochs=config["epochs"], batch_size=32, verbose=0, callbacks=callbacks
    )
    test_loss, test_accuracy = model.evaluate(x_test, y_test, batch_size=1000, verbose=0)

    dense = [l for l in model.layers if isinstance(l, keras.layers.Dense)][:-1]
    bns = [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]
    probe = x_test[:PROBE_IMAGES]
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
            keras.Sequential(model.layers[: model.layers.index(d) + 1])(probe)
        )
        outcome["layers"].append(
            {
                "name": bn.name,
                "gamma": bn.gamma.numpy().astype(float).tolist(),
                "beta": bn.beta.numpy().astype(float).tolist(),
                "input_mean": inputs.mean(axis=0).astype(float).tolist(),
                "input_std": inputs.std(axis=0).astype(float).tolist(),
            }
        )
    return outcome


def pilot_plan(records) -> dict:
    """What the pilot's runs (seeds PILOT_SEEDS of ``records``) say about claim 8's
    equivalence test: the paired losses, their standard deviation, the power those seeds
    give, and the number of seeds that reaches EQUIVALENCE_POWER (FULL_SEEDS should hold
    that many)."""
    pilot = [r for r in records if r["config"]["seed"] in PILOT_SEEDS]
    groups = by_variant(pilot)
    require(groups, ("bias", "nobias"), "claim 8's pilot")
    loss = paired(groups["bias"], groups["nobias"], lambda r: r["test"]["accuracy"], what="pilot")
    if len(loss) != len(PILOT_SEEDS):
        raise MissingRuns(f"claim 8's pilot: {len(loss)} of {len(PILOT_SEEDS)} seeds were run")
    sd = mean_std(loss)[1]
    return {
        "loss": loss,
        "sd": sd,
        "interval": t_interval(loss),
        "power": equivalence_power(len(loss), sd, NO_LOSS_MARGIN),
        "seeds_needed": seeds_for_equivalence(sd, NO_LOSS_MARGIN, EQUIVALENCE_POWER),
    }


def gamma_gaps(record) -> tuple:
    """Median over features and layers of |gamma - input std| / input std, and of the same
    for gamma's initial value 1."""
    gaps, start = [], []
    for layer in record["layers"]:
        gamma, std = np.array(layer["gamma"]), np.array(layer["input_std"])
        gaps.append(np.median(np.abs(gamma - std) / std))
        start.append(np.median(np.abs(1.0 - std) / std))
    return float(np.median(gaps)), float(np.median(start))


def beta_gap(records) -> float:
    """Median over layers and seeds of the median |beta - input mean| / input std."""
    return float(
        np.median(
            [
                np.median(
                    np.abs(np.array(layer["beta"]) - np.array(layer["input_mean"]))
                    / np.array(layer["input_std"])
                )
                for r in records
                for layer in r["layers"]
            ]
        )
    )


def _correlations(records, key, reference):
    out = []
    for r in records:
        for layer in r["layers"]:
            values, ref = np.array(layer[key]), np.array(layer[reference])
            if np.std(values) > 0 and np.std(ref) > 0:  # else undefined
                out.append(float(np.corrcoef(values, ref)[0, 1]))
    return fmt(out, 2) if out else "undefined (constant)"


def judge(runs):
    groups = by_variant(runs[NAME])
    require(groups, ("bias", "nobias"), "claims 8 and 10")
    loss = paired(groups["bias"], groups["nobias"], lambda r: r["test"]["accuracy"], what="claim 8")
    params = {v: rs[0]["n_params"]["trainable"] for v, rs in groups.items()}
    max_bias = max(r["max_abs_bias"] for r in groups["bias"])
    change = max(r["training_mode_change_without_bias"] for r in groups["bias"])
    claim8 = verdict(
        "8",
        "A bias in the layer before BN is redundant, so use use_bias=False",
        NAME,
        [
            effect(
                "test accuracy with the bias minus without (the loss from dropping it)",
                t_interval(loss),
                threshold=NO_LOSS_MARGIN,
                side="below",
            )
        ],
        rule=f"an equivalence test: the claim predicts that dropping the bias costs less than "
        f"{NO_LOSS_MARGIN} of test accuracy; supported if the whole interval of the paired "
        f"loss lies below {NO_LOSS_MARGIN}, contradicted if it lies above (dropping it "
        "costs more), inconclusive otherwise",
        numbers={
            "test accuracy with bias": fmt(r["test"]["accuracy"] for r in groups["bias"]),
            "test accuracy without bias": fmt(r["test"]["accuracy"] for r in groups["nobias"]),
            "trainable parameters saved": params["bias"] - params["nobias"],
            "largest learned bias": f"{max_bias:.2e} (initial 0; at most "
            f"{BIAS_STAYS_AT_ZERO:g} counts as unmoved)",
            "output change when the biases are removed (training mode)": f"{change:.2e}",
        },
    )
    gaps = [gamma_gaps(r) for r in sorted(groups["nobias"], key=lambda r: r["config"]["seed"])]
    claim10 = verdict(
        "10",
        "During training gamma tends to the data's standard deviation and beta to its mean",
        NAME,
        [
            effect(
                "median |gamma - input std| / input std",
                t_interval(g for g, _ in gaps),
                threshold=GAMMA_MATCHES_STD,
                side="below",
            ),
            effect(
                "how much nearer the input std gamma ended than it started (gap of 1 minus "
                "gap of gamma)",
                t_interval(s - g for g, s in gaps),
            ),
        ],
        rule=f"the claim predicts gamma ends within {GAMMA_MATCHES_STD:.0%} of the standard "
        "deviation of BN's input (median over features and layers, per seed) and that it got "
        "there by moving: supported if both intervals lie on the predicted side, "
        "contradicted if either lies on the other",
        numbers={
            "median |beta - input mean| / input std": f"{beta_gap(groups['nobias']):.2f}",
            "correlation of gamma with the input std": _correlations(
                groups["nobias"], "gamma", "input_std"
            ),
            "correlation of beta with the input mean": _correlations(
                groups["nobias"], "beta", "input_mean"
            ),
        },
    )
    return [claim8, claim10]


EXPERIMENTS = (
    Experiment(
        name=NAME,
        title="MLP with BN before each ReLU, hidden layers with and without a bias",
        configs=settings_configs(
            NAME,
            variants=("bias", "nobias"),
            settings={
                "quick": {"train": 3000, "test": 1000, "epochs": 2},
                "full": {"train": 20000, "test": 10000, "epochs": 10},
            },
            seeds={"quick": (0,), "full": FULL_SEEDS},
        ),
        train=train,
        claims=("8", "10"),
        judge=judge,
    ),
)
