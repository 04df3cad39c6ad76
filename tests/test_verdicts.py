"""The verdict rules: intervals over seeds, three outcomes, and every claim's rule fed
synthetic results on both sides of its threshold and at the boundary."""

import math
from pathlib import Path

import numpy as np
import pytest

from bncourse import experiments
from bncourse.experiments import ics
from bncourse.results import load_results
from bncourse.stats import Interval
from bncourse.verdicts import (
    CONTRADICTED,
    INCONCLUSIVE,
    SUPPORTED,
    VERDICTS_FILE,
    Effect,
    claim_key,
    effect,
    format_verdicts,
    verdict,
)

ROOT = Path(__file__).resolve().parents[1]
SEEDS = (0, 1, 2)

# ----------------------------------------------------------------------------- outcomes


def interval(low, high):
    return Interval((low + high) / 2, low, high, (low, high), "test")


@pytest.mark.parametrize(
    "low, high, side, outcome",
    [
        (0.1, 0.3, "above", SUPPORTED),
        (-0.3, -0.1, "above", CONTRADICTED),
        (-0.1, 0.3, "above", INCONCLUSIVE),
        (0.0, 0.3, "above", INCONCLUSIVE),  # touches 0
        (-0.3, 0.0, "above", INCONCLUSIVE),
        (-0.3, -0.1, "below", SUPPORTED),
        (0.1, 0.3, "below", CONTRADICTED),
        (-0.3, 0.0, "below", INCONCLUSIVE),
    ],
)
def test_an_effect_is_decided_by_where_its_interval_lies(low, high, side, outcome):
    e = effect("x", interval(low, high), side=side)
    assert e.outcome == outcome
    assert outcome.upper() in e.describe()


def test_a_margin_moves_the_line():
    assert effect("loss", interval(-0.02, 0.008), threshold=0.01, side="below").outcome == SUPPORTED
    assert (
        effect("loss", interval(-0.02, 0.02), threshold=0.01, side="below").outcome == INCONCLUSIVE
    )
    assert (
        effect("loss", interval(0.011, 0.02), threshold=0.01, side="below").outcome == CONTRADICTED
    )
    with pytest.raises(ValueError, match="side must be 'above' or 'below'"):
        effect("x", interval(0, 1), side="left")


def test_effects_combine_into_one_verdict():
    up, down, unsure = (effect("e", interval(*b)) for b in ((1, 2), (-2, -1), (-1, 1)))
    assert verdict("1", "t", "x", [up, up], "r").verdict == SUPPORTED
    assert verdict("1", "t", "x", [up, unsure], "r").verdict == INCONCLUSIVE
    assert verdict("1", "t", "x", [up, down], "r").verdict == CONTRADICTED
    with pytest.raises(ValueError, match="at least one effect"):
        verdict("1", "t", "x", [], "r")
    v = verdict("12b", "t", "x", [unsure], "the rule")
    assert "includes 0" in v.change()
    text = format_verdicts([v])
    assert "verdict: INCONCLUSIVE (0 [-1, 1] vs 0). Rule: the rule" in text
    assert "would change:" in text


# The text a reader sees: every effect's line and what would have changed it, on both sides.
UP = ("BN minus none (MLP)", (0.1, 0.3), 0.0, "above")
DOWN = ("BN minus none (CNN)", (-0.3, -0.1), 0.0, "above")
UNSURE = ("loss gap", (-0.02, 0.02), 0.01, "below")


def make(label, bounds, threshold, side):
    return effect(label, interval(*bounds), threshold=threshold, side=side)


def test_an_effect_keeps_what_it_was_made_of():
    i = interval(-0.02, 0.02)
    assert effect("loss gap", i, threshold=0.01, side="below") == Effect(
        "loss gap", i, 0.01, "below", INCONCLUSIVE
    )


@pytest.mark.parametrize(
    "bounds, threshold, side, description, change",
    [
        (
            (0.1, 0.3),
            0,
            "above",
            "0.2, interval [0.1, 0.3] (test); the claim predicts > 0: SUPPORTED",
            "it would have been inconclusive had the interval's low end (0.1) not been above 0",
        ),
        (
            (-0.3, -0.1),
            0,
            "below",
            "-0.2, interval [-0.3, -0.1] (test); the claim predicts < 0: SUPPORTED",
            "it would have been inconclusive had the interval's high end (-0.1) not been below 0",
        ),
        (
            (-0.3, -0.1),
            0,
            "above",
            "-0.2, interval [-0.3, -0.1] (test); the claim predicts > 0: CONTRADICTED",
            "it would have been inconclusive had the interval's high end (-0.1) reached 0",
        ),
        (
            (0.1, 0.3),
            0,
            "below",
            "0.2, interval [0.1, 0.3] (test); the claim predicts < 0: CONTRADICTED",
            "it would have been inconclusive had the interval's low end (0.1) reached 0",
        ),
        (
            (-0.1, 0.3),
            0,
            "above",
            "0.1, interval [-0.1, 0.3] (test); the claim predicts > 0: INCONCLUSIVE",
            "the interval [-0.1, 0.3] includes 0: it needed to lie wholly above 0 to support the "
            "claim, wholly below to contradict it (more seeds narrow it)",
        ),
        (
            (-0.02, 0.02),
            0.01,
            "below",
            "0, interval [-0.02, 0.02] (test); the claim predicts < 0.01: INCONCLUSIVE",
            "the interval [-0.02, 0.02] includes 0.01: it needed to lie wholly below 0.01 to support "
            "the claim, wholly above to contradict it (more seeds narrow it)",
        ),
    ],
)
def test_an_effect_describes_itself_and_what_would_change_it(
    bounds, threshold, side, description, change
):
    e = effect("acc", interval(*bounds), threshold=threshold, side=side)
    assert e.describe() == "acc: " + description
    assert e.change() == change


def test_an_effect_words_a_prediction_its_threshold_would_misstate():
    """A guarantee predicts a share of exactly 0: the line says so instead of '< 0'."""
    e = effect("diverged", interval(0.2, 0.8), side="below", prediction="0 (no run diverges)")
    assert e.describe() == (
        "diverged: 0.5, interval [0.2, 0.8] (test); the claim predicts 0 (no run diverges): "
        "CONTRADICTED"
    )
    assert e.outcome == effect("diverged", interval(0.2, 0.8), side="below").outcome


def test_a_verdict_says_which_effects_decided_it():
    up, down, unsure = make(*UP), make(*DOWN), make(*UNSURE)
    contradicted = verdict("1a", "BN helps", "sweep", [up, down], "rule")
    assert contradicted.change() == (
        "BN minus none (CNN): it would have been inconclusive had the interval's high end "
        "(-0.1) reached 0."
    )
    supported = verdict("2", "t", "x", [up, make("other", (1, 2), 0.0, "above")], "r")
    assert supported.change() == (
        "BN minus none (MLP): it would have been inconclusive had the interval's low end (0.1) "
        "not been above 0; other: it would have been inconclusive had the interval's low end "
        "(1) not been above 0."
    )
    inconclusive = verdict(3, "t", "x", [up, unsure], "r")
    assert inconclusive.change().startswith("loss gap: the interval [-0.02, 0.02] includes 0.01")
    assert (inconclusive.claim, inconclusive.text, inconclusive.experiment) == ("3", "t", "x")


def test_the_claims_table_in_full():
    assert format_verdicts([]) == "no claim results"
    v = verdict(
        "1a",
        "BN trains faster",
        "sweep",
        [make(*UP), make(*UNSURE)],
        "rule R",
        {"epochs": 3, "lr": "0.1"},
    )
    w = verdict("2", "t", "x", [make(*UP)], "r")
    assert format_verdicts([v, w]).splitlines() == [
        "claim 1a: BN trains faster",
        "  experiment: sweep",
        "  epochs: 3",
        "  lr: 0.1",
        "  effect: BN minus none (MLP): 0.2, interval [0.1, 0.3] (test); the claim predicts > 0:"
        " SUPPORTED",
        "  effect: loss gap: 0, interval [-0.02, 0.02] (test); the claim predicts < 0.01:"
        " INCONCLUSIVE",
        "  verdict: INCONCLUSIVE (0.2 [0.1, 0.3] vs 0; 0 [-0.02, 0.02] vs 0.01). Rule: rule R",
        "  would change: loss gap: the interval [-0.02, 0.02] includes 0.01: it needed to lie"
        " wholly below 0.01 to support the claim, wholly above to contradict it (more seeds"
        " narrow it).",
        "claim 2: t",
        "  experiment: x",
        "  effect: BN minus none (MLP): 0.2, interval [0.1, 0.3] (test); the claim predicts > 0:"
        " SUPPORTED",
        "  verdict: SUPPORTED (0.2 [0.1, 0.3] vs 0). Rule: r",
        "  would change: BN minus none (MLP): it would have been inconclusive had the"
        " interval's low end (0.1) not been above 0.",
    ]


def test_claim_ids_sort_by_number_then_part():
    assert sorted(["12b", "2", "1b", "10", "1a", "12a"], key=claim_key) == [
        "1a",
        "1b",
        "2",
        "10",
        "12a",
        "12b",
    ]
    with pytest.raises(ValueError, match="a number with an optional letter"):
        claim_key("one")


# ----------------------------------------------------------------------------- every rule
# Each builder makes records of one experiment whose claim's first effect takes the given
# value for each seed; the same four cases then run through every rule.


def config(name, seed, **extra):
    base = experiments.experiment_configs(name, "full")[0]
    return {**base, "seed": seed, **extra}


def ics_records(values):
    out = []
    for seed, v in zip(SEEDS, values):
        for variant, drift in (("none", math.exp(v)), ("bn", 1.0), ("noisy-bn", 3.0)):
            a = 0.01 * (seed + 1) * drift  # drift level differs between seeds, ratio does not
            medians = a * np.linspace(0.0, 1.0, 20)
            out.append(
                {
                    "config": config("ics", seed, variant=variant),
                    "percentiles": [[m - 1.0, m, m + 1.0] for m in medians],
                    "val_accuracy": [0.8],
                }
            )
    return out


def ics_1b_records(values):
    out = ics_records([1.0] * len(values))
    for r in out:
        seed, variant = r["config"]["seed"], r["config"]["variant"]
        r["val_accuracy"] = [0.8 + (values[seed] if variant == "bn" else 0.0)]
    return out


def curve_records(name, variants, values, steps_bn=3):
    """Step curves: loss 1 -> 0.1 and accuracy 0.5 -> 0.9 at epoch k; no BN takes
    k + value epochs, BN k."""
    out = []
    for seed, v in zip(SEEDS, values):
        for bn in variants:
            k = steps_bn + (int(v) if bn == "none" else 0)
            loss = [1.0 if e < k else 0.1 for e in range(1, 11)]
            acc = [0.5 if e < k else 0.9 for e in range(1, 11)]
            out.append(
                {
                    "config": config(name, seed, bn=bn),
                    "history": {
                        "loss": loss,
                        "accuracy": acc,
                        "val_accuracy": acc,
                        "val_loss": loss,
                    },
                    "test": {"accuracy": 0.9},
                }
            )
    return out


def epoch_time_records(values):
    rounds = [0.5, 0.6, 0.55]
    return [
        {
            "config": config("epoch-time", 0, variant=model),
            "seconds": {"none": rounds, "bn": [t * math.exp(v) for t, v in zip(rounds, values)]},
            "steps": 10,
            "batch_size": 32,
            "n_params": {"none": 10, "bn": 14},
        }
        for model in ("mlp", "cnn")
    ]


def sweep_records(name, key, values):
    """bn trains at (1 + value) more swept points than no BN; the control at chance."""
    points = experiments.experiment(name).configs("full")
    swept = sorted({c[key] for c in points})
    out = []
    for seed, v in zip(SEEDS, values):
        base = 2
        trained = {"none": base, "bn": base + int(v), "frozen": 0}
        for variant, n in trained.items():
            for i, value in enumerate(swept):
                acc = 0.85 if i < n else 0.1
                out.append(
                    {
                        "config": config(name, seed, variant=variant, **{key: value}),
                        "best_val_accuracy": acc,
                        "val_accuracy": [acc],
                        "loss": [0.5],
                        "diverged": False,
                    }
                )
    return out


def accuracy_records(name, variants, key, values):
    """Test accuracy of variants[0] = 0.85 + value, of variants[1] = 0.85."""
    return [
        {
            "config": config(name, seed, **{key: variant}),
            "test": {"accuracy": 0.85 + (v if variant == variants[0] else 0.0), "loss": 0.4},
        }
        for seed, v in zip(SEEDS, values)
        for variant in variants
    ]


def mnist_records(values):
    out = accuracy_records("t4-cnn-mnist", ("after", "none"), "bn", values)
    for r in out:
        acc = r["test"]["accuracy"]
        r["history"] = {
            "accuracy": [0.97, acc],
            "val_accuracy": [0.96, acc],
            "test_accuracy": [0.96, acc],
        }
    return out


def regularisation_records(values):
    return [
        {
            "config": config("regularisation", seed, variant=variant),
            "train_accuracy": 0.95,
            "final_val_accuracy": 0.95 - 0.05 - (v if variant == "none" else 0.0),
            "test": {"accuracy": 0.88},
        }
        for seed, v in zip(SEEDS, values)
        for variant in ("none", "bn")
    ]


def layer(gamma, std):
    return {
        "name": "bn",
        "gamma": gamma,
        "beta": [0.0] * len(gamma),
        "input_std": std,
        "input_mean": [0.0] * len(gamma),
    }


def bias_records(values, gamma_gap=None):
    out = []
    for seed, v in zip(SEEDS, values):
        gap = 0.1 if gamma_gap is None else gamma_gap[seed]
        std = [0.5, 0.5, 0.5]  # gamma's start (1) is 100% away
        for variant in ("bias", "nobias"):
            r = {
                "config": config("bias-before-bn", seed, variant=variant),
                # base 0: the difference is exactly v, so the boundary case is exact
                "test": {"accuracy": v if variant == "bias" else 0.0},
                "n_params": {"trainable": 1000 if variant == "bias" else 900},
                "layers": [layer([s * (1 + gap) for s in std], std)],
            }
            if variant == "bias":
                r["max_abs_bias"], r["training_mode_change_without_bias"] = 1e-9, 1e-7
            out.append(r)
    return out


def inference_records(values, long=False):
    """Recomputed minus moving accuracy = value after the short run (or the long one)."""
    out = []
    for seed, v in zip(SEEDS, values):
        for steps in (50, 2000):
            gain = v if (steps == 2000) == long else 0.0
            for variant in ("m0.99", "m0.9"):
                out.append(
                    {
                        "config": config("inference-stats", seed, variant=variant, steps=steps),
                        # base 0: the difference is exactly the gain
                        "test_accuracy_moving": 0.0,
                        "test_accuracy_precise": gain,
                    }
                )
    return out


def small_batch_records(values):
    return [
        {
            "config": config("small-batch", seed, variant="bn", batch_size=2),
            "train_accuracy_training_mode": 0.6,
            "test": {"accuracy": 0.7},
            "test_accuracy_recomputed": 0.7 + v,
        }
        for seed, v in zip(SEEDS, values)
    ]


def input_scaling_records(diverged):
    return [
        {
            "config": config("input-scaling", seed, variant=variant, init_gain=1.0),
            "initial_grad_norms": [1.0, 2.0],
            "diverged": bool(variant == "unit" and d),
        }
        for seed, d in zip(SEEDS, diverged)
        for variant in ("raw", "unit")
    ]


RULES = {
    # claim: (builder of records from per-seed effects, side, threshold, effect scale)
    "1a": (ics_records, "above", 0.0, 1.0),
    "1b": (ics_1b_records, "above", 0.0, 0.01),
    "2": (lambda v: curve_records("t4-cnn", ("none", "after"), v), "above", 0.0, 1.0),
    "3": (epoch_time_records, "above", 0.0, 0.1),
    "4": (lambda v: sweep_records("init-scale", "init_scale", v), "above", 0.0, 1.0),
    "5": (regularisation_records, "above", 0.0, 0.01),
    "6": (lambda v: sweep_records("learning-rate", "learning_rate", v), "above", 0.0, 1.0),
    "7": (mnist_records, "above", 0.0, 0.01),
    "8": (bias_records, "below", 0.01, 0.01),
    "9": (lambda v: accuracy_records("t1-mlp", ("after", "before"), "bn", v), "above", 0.0, 0.01),
    "12a": (inference_records, "above", 0.0, 0.1),
    "12b": (lambda v: inference_records(v, long=True), "below", 0.01, 0.01),
    "12c": (small_batch_records, "above", 0.0, 0.01),
}
INTEGER_EFFECTS = {"2", "4", "6"}  # counted in epochs or swept points


def judged(claim, records):
    found = [v for v in experiments.verdicts(records) if v.claim == claim]
    assert len(found) == 1, f"claim {claim}: {[v.claim for v in experiments.verdicts(records)]}"
    return found[0]


def cases(claim):
    _, side, threshold, scale = RULES[claim]
    sign = 1 if side == "above" else -1
    if claim in INTEGER_EFFECTS:
        predicted, opposite = [2, 2, 2], [-2, -2, -2]
        spread = [2, -1, 1]
    else:
        predicted = [threshold + sign * scale * f for f in (2.0, 2.5, 3.0)]
        opposite = [threshold - sign * scale * f for f in (2.0, 2.5, 3.0)]
        spread = [threshold + scale * f for f in (2.0, -1.5, 0.5)]
    boundary = [threshold] * 3
    return [
        (predicted, SUPPORTED),
        (opposite, CONTRADICTED),
        (spread, INCONCLUSIVE),
        (boundary, INCONCLUSIVE),
    ]


@pytest.mark.parametrize("claim, case", [(c, i) for c in RULES for i in range(4)])
def test_every_rule_gives_all_three_outcomes(claim, case):
    build = RULES[claim][0]
    values, expected = cases(claim)[case]
    v = judged(claim, build(values))
    assert v.effects[0].outcome == expected, v.effects[0].describe()
    if claim not in ("10",):
        assert v.verdict == expected
    assert v.effects[0].threshold == RULES[claim][2]


def test_claim_1a_a_consistent_fourfold_effect_over_three_seeds_is_supported():
    """Drift 4x smaller with BN in every seed, at levels that differ a lot between seeds:
    the old rule (means differ by more than twice the larger std) said not supported."""
    records = ics_records([math.log(4.0)] * 3)
    drifts = {
        v: [ics.ics_drift(r) for r in records if r["config"]["variant"] == v]
        for v in ("none", "bn")
    }
    assert np.allclose(np.array(drifts["none"]) / np.array(drifts["bn"]), 4.0)
    old_rule = np.mean(drifts["none"]) - np.mean(drifts["bn"]) > 2 * max(
        np.std(drifts["none"], ddof=1), np.std(drifts["bn"], ddof=1)
    )
    assert not old_rule
    assert judged("1a", records).verdict == SUPPORTED


def test_claim_10_needs_gamma_near_the_std_and_moved_there():
    near = bias_records([0.0] * 3, gamma_gap=[0.05, 0.1, 0.08])
    assert judged("10", near).verdict == SUPPORTED
    far = bias_records([0.0] * 3, gamma_gap=[1.1, 1.2, 1.3])  # gamma ended past where it began
    assert judged("10", far).verdict == CONTRADICTED
    mixed = bias_records([0.0] * 3, gamma_gap=[0.05, 0.6, 0.3])
    assert judged("10", mixed).effects[0].outcome == INCONCLUSIVE


@pytest.mark.parametrize(
    "diverged, expected",
    [
        ((False, False, False), INCONCLUSIVE),  # no counterexample: never "supported"
        ((False, True, False), CONTRADICTED),  # one counterexample contradicts a guarantee
    ],
)
def test_claim_11_is_a_search_for_a_counterexample(diverged, expected):
    v = judged("11", input_scaling_records(diverged))
    assert v.verdict == expected
    assert v.effects[0].interval.low == (
        0.0 if expected == INCONCLUSIVE else pytest.approx(v.effects[0].interval.low)
    )


def test_claims_4_and_6_count_a_network_as_trained_only_above_its_control():
    records = sweep_records("init-scale", "init_scale", [1, 1, 1])
    # Raise the control to the trained networks' accuracy: nothing beats it any more.
    for r in records:
        if r["config"]["variant"] == "frozen":
            r["best_val_accuracy"] = 0.85
    v = judged("4", records)
    assert v.effects[0].interval.values == (0.0, 0.0, 0.0) and v.verdict == INCONCLUSIVE
    without_control = [r for r in records if r["config"]["variant"] != "frozen"]
    pending = []
    assert not [v for v in experiments.verdicts(without_control, pending=pending) if v.claim == "4"]
    assert ("init-scale", "claim 4: no runs of frozen") in pending
    # experiments with no runs at all are pending too, by the claims they would judge
    assert ("ics", "claim 1a, 1b: no runs") in pending
    assert not [name for name, _ in pending if name == "small"]  # judges no claim


def test_claim_7_names_the_epochs_that_match_the_tutorials_numbers():
    v = judged("7", mnist_records([0.02, 0.03, 0.025]))
    key = "no BN: epochs whose mean training (fit's log) accuracy rounds to T4's 0.97"
    assert v.numbers[key] == "1"
    assert v.numbers["BN: epochs whose mean test accuracy rounds to T4's 0.992"] == "none"


def test_claim_3_reports_the_ratio_with_its_interval():
    v = judged("3", epoch_time_records([math.log(1.5)] * 3))
    assert v.numbers["mlp: time with BN over without"].startswith("1.50x [1.50x, 1.50x]")
    assert v.verdict == SUPPORTED and len(v.effects) == 2


# ----------------------------------------------------------------------------- committed


def test_committed_verdicts_are_what_the_code_computes():
    """results/claims-verdicts.txt is exactly the table the code makes from results/."""
    results = ROOT / "results"
    assert results.is_dir(), f"{results} is committed: it is missing from this checkout"
    records, bad = load_results(results)
    assert not bad, [c.path for c in bad]
    computed = experiments.verdicts(records)
    every_claim = {
        c for n in experiments.experiment_names() for c in experiments.experiment(n).claims
    }
    judged_claims = {v.claim for v in computed}
    assert judged_claims == every_claim, f"not judged: {sorted(every_claim - judged_claims)}"
    committed = results / VERDICTS_FILE
    assert committed.is_file(), f"{committed} is committed: it is missing from this checkout"
    assert committed.read_text() == format_verdicts(computed) + "\n"
