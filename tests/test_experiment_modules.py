"""The experiments of the registry: their runs, what they record, and quick runs end to end.
(Their verdict rules are tested in test_verdicts.py.)"""

import dataclasses

import numpy as np
import pytest

from bncourse import cli, experiments
from bncourse.experiments import bias_before_bn, epoch_time, ics, input_scaling, registry, sweep
from bncourse.experiments.common import recompute_bn_statistics
from bncourse.results import check_result, load_results
from bncourse.verdicts import VERDICTS_FILE


def test_every_experiment_is_one_module_of_the_registry():
    names = experiments.experiment_names()
    assert names[:3] == ["t1-mlp", "t4-cnn", "t4-cnn-mnist"]
    assert {"ics", "epoch-time", "init-scale", "small-batch"} <= set(names)
    claims = sorted(
        (c for n in names for c in experiments.experiment(n).claims),
        key=lambda c: (int(c.rstrip("abc")), c),
    )
    assert claims == [
        "1a",
        "1b",
        "2",
        "3",
        "4",
        "5",
        "6",
        "7",
        "8",
        "9",
        "10",
        "11",
        "12a",
        "12b",
        "12c",
    ]
    with pytest.raises(ValueError, match="unknown experiment 'nope'; known: t1-mlp"):
        experiments.experiment("nope")


def test_claim_configurations_go_seed_by_seed():
    full = experiments.experiment_configs("bias-before-bn", "full")
    assert [(c["seed"], c["variant"]) for c in full] == [
        (s, v) for s in bias_before_bn.FULL_SEEDS for v in ("bias", "nobias")
    ]
    assert {c["train"] for c in full} == {20000}
    init = experiments.experiment_configs("init-scale", "full")
    assert len(init) == 5 * 3 * 5 and {c["variant"] for c in init} == set(sweep.VARIANTS)
    with pytest.raises(ValueError, match="profile must be 'quick' or 'full'"):
        experiments.experiment_configs("bias-before-bn", "medium")


def test_claim_8_has_the_seeds_its_pilot_asks_for():
    """Claim 8's equivalence test runs the number of seeds that the committed pilot runs'
    spread asks for (stats.seeds_for_equivalence), and the pilot's seeds come first."""
    from bncourse.results import repository_results_dir

    seeds = bias_before_bn.FULL_SEEDS
    assert seeds[: len(bias_before_bn.PILOT_SEEDS)] == bias_before_bn.PILOT_SEEDS
    records, _ = load_results(repository_results_dir() / bias_before_bn.NAME)
    plan = bias_before_bn.pilot_plan(records)
    assert len(plan["loss"]) == len(bias_before_bn.PILOT_SEEDS)
    assert len(seeds) == plan["seeds_needed"] > len(bias_before_bn.PILOT_SEEDS)
    assert plan["power"] < bias_before_bn.EQUIVALENCE_POWER
    # one pilot seed missing is an error, not a plan from fewer seeds
    with pytest.raises(experiments.MissingRuns, match="4 of 5 seeds"):
        bias_before_bn.pilot_plan([r for r in records if r["config"]["seed"] != 0])


def test_plain_mlp_gradients_match_finite_differences(rng):
    from bncourse.numpy_bn import numerical_gradient

    x = rng.normal(size=(5, 4))
    y = np.array([0, 2, 1, 2, 0])
    params = [
        (rng.normal(size=(4, 6)), rng.normal(size=6)),
        (rng.normal(size=(6, 3)), rng.normal(size=3)),
    ]
    _, grads = input_scaling.plain_mlp_gradients(params, x, y)
    for layer in range(2):
        w = params[layer][0]

        def loss_of(v, layer=layer):
            trial = [(v, b) if i == layer else (w_, b) for i, (w_, b) in enumerate(params)]
            return np.array(input_scaling.plain_mlp_gradients(trial, x, y)[0])

        numeric = numerical_gradient(loss_of, w.copy(), np.array(1.0))
        # Entries near 1e-5 carry finite-difference round-off, hence the absolute floor.
        np.testing.assert_allclose(grads[layer][0], numeric, rtol=1e-6, atol=1e-9)


def test_ics_drift():
    steady = {"percentiles": [[-1.0, 0.0, 1.0]] * 20}
    moving = {"percentiles": [[m - 1.0, m, m + 1.0] for m in np.linspace(0, 4, 20)]}
    assert ics.ics_drift(steady) == 0.0
    assert ics.ics_drift(moving) == pytest.approx(np.linspace(0, 4, 20)[2:].std() / 2.0)


@pytest.mark.keras_backend
def test_recompute_bn_statistics_gives_the_exact_statistics(rng):
    import keras

    from bncourse.keras_bn import BatchNorm

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((5,)),
            keras.layers.Dense(4),
            BatchNorm(),
            keras.layers.Dense(3),
            keras.layers.BatchNormalization(),
        ]
    )
    x = rng.normal(2.0, 3.0, size=(1200, 5)).astype("float32")
    recompute_bn_statistics(model, x, batch_size=500)
    h1 = keras.ops.convert_to_numpy(model.layers[0](x)).astype(np.float64)
    np.testing.assert_allclose(model.layers[1].moving_mean.numpy(), h1.mean(0), rtol=1e-5)
    np.testing.assert_allclose(model.layers[1].moving_variance.numpy(), h1.var(0), rtol=1e-5)
    # The second BN sees the first one's output normalised with the recomputed statistics.
    h3 = keras.ops.convert_to_numpy(
        model.layers[2](model.layers[1](model.layers[0](x), training=False))
    ).astype(np.float64)
    np.testing.assert_allclose(model.layers[3].moving_variance.numpy(), h3.var(0), rtol=1e-4)


@pytest.mark.slow
def test_quick_bias_run_end_to_end(tmp_path, capsys, monkeypatch):
    out = tmp_path / "claims"
    assert (
        cli.main(["reproduce", "--profile", "quick", "--only", "bias-before-bn", "--out", str(out)])
        == 0
    )
    assert "claim 8: A bias in the layer before BN is redundant" in capsys.readouterr().out
    records, bad = load_results(out)
    assert not bad and len(records) == 2
    with_bias = next(r for r in records if r["config"]["variant"] == "bias")
    # BN subtracts the batch mean, so the bias gets no gradient and stays at its initial 0,
    # and in training mode the output does not depend on it.
    assert with_bias["max_abs_bias"] < 1e-6
    assert with_bias["training_mode_change_without_bias"] < 1e-5
    assert cli.main(["report", str(out), "--claims"]) == 0
    assert (out / VERDICTS_FILE).read_text().startswith("claim 8:")
    figures = sorted(p.name for p in (out / "figures").iterdir())
    assert figures == sorted(
        f"{stem}.{ext}"
        for stem in (
            "claim08-bias-quick",
            "claim10-gamma-quick",
            "verdict-claim8",
            "verdict-claim10",
        )
        for ext in ("png", "svg")
    )
    # A result whose experiment definition changed is stale.
    path = next(out.rglob("nobias-*.json"))
    e = experiments.experiment("bias-before-bn")
    changed = dataclasses.replace(
        e,
        configs=registry.settings_configs(
            e.name,
            variants=("bias", "nobias"),
            settings={"quick": {"train": 999}, "full": {}},
            seeds={"quick": (0,), "full": (0,)},
        ),
    )
    monkeypatch.setitem(registry._registry(), e.name, changed)
    assert (
        "stale: the experiment's definition changed since this run" in check_result(path).problems
    )


@pytest.mark.slow
def test_quick_input_scaling_runs(tmp_path, capsys):
    out = tmp_path / "claims"
    assert (
        cli.main(["reproduce", "--profile", "quick", "--only", "input-scaling", "--out", str(out)])
        == 0
    )
    records, bad = load_results(out)
    assert not bad and len(records) == 6
    raw = [r for r in records if r["config"]["variant"] == "raw"]
    unit = [r for r in records if r["config"]["variant"] == "unit"]
    # Raw pixels make the first layer's gradient hundreds of times larger than [0, 1] ones.
    assert raw[0]["initial_grad_norms"][0] > 100 * unit[0]["initial_grad_norms"][0]
    assert len(records[0]["initial_grad_norms"]) == input_scaling.SCALING_DEPTH


@pytest.mark.slow
def test_quick_ics_run_shows_bn_steadying_the_input(tmp_path):
    out = tmp_path / "claims"
    assert cli.main(["reproduce", "--profile", "quick", "--only", "ics", "--out", str(out)]) == 0
    records, bad = load_results(out)
    assert not bad
    drift = {r["config"]["variant"]: ics.ics_drift(r) for r in records}
    assert drift["bn"] < drift["none"] and drift["bn"] < drift["noisy-bn"]
    assert all(len(r["percentiles"]) == len(r["steps"]) == 11 for r in records)


@pytest.mark.slow
def test_epoch_time_alternates_the_variants_and_times_each_round():
    (config,) = experiments.experiment_configs("epoch-time", "quick", variants=("mlp",))
    outcome = epoch_time.train(config)
    rounds = config["rounds"]["mlp"]
    assert len(outcome["seconds"]["none"]) == len(outcome["seconds"]["bn"]) == rounds
    assert all(s > 0 for v in outcome["seconds"].values() for s in v)
    # BN before each of the three hidden layers adds gamma, beta and the two moving
    # statistics for each of their 300 + 200 + 100 features, and drops their biases.
    assert outcome["n_params"]["bn"] - outcome["n_params"]["none"] == 3 * 600


@pytest.mark.slow
def test_the_sweep_control_trains_only_its_output_layer():
    import keras

    (config,) = [
        c
        for c in experiments.experiment_configs("init-scale", "quick", variants=("frozen",))
        if c["init_scale"] == 1.0
    ]
    captured = {}
    real_fit = keras.Model.fit

    def fit(model, *args, **kwargs):
        captured["before"] = [w.numpy().copy() for w in model.weights]
        result = real_fit(model, *args, **kwargs)
        captured["after"] = [w.numpy().copy() for w in model.weights]
        captured["trainable"] = [w.path for w in model.trainable_weights]
        return result

    keras.Model.fit = fit
    try:
        sweep.train(config)
    finally:
        keras.Model.fit = real_fit
    changed = [not np.array_equal(a, b) for a, b in zip(captured["before"], captured["after"])]
    assert changed == [False] * (len(changed) - 2) + [True, True]  # the output kernel and bias
    assert len(captured["trainable"]) == 2


def test_verdict_panels_show_each_effect_with_its_seeds():
    import matplotlib

    matplotlib.use("Agg")
    from bncourse.plotting import plot_verdict
    from bncourse.stats import t_interval
    from bncourse.verdicts import effect, verdict

    v = verdict(
        "9",
        "claim",
        "x",
        [effect("a", t_interval([0.1, 0.2, 0.15])), effect("b", t_interval([-0.1, 0.1, 0.0]))],
        "rule",
    )
    ax = plot_verdict(v)
    assert ax.get_title() == "Claim 9: inconclusive"
    assert [t.get_text() for t in ax.get_yticklabels()] == ["b", "a"]
    assert sum(len(c.get_offsets()) for c in ax.collections) == 6  # one dot per seed


@pytest.mark.slow
def test_a_diverging_sweep_point_stops_at_its_first_non_finite_probe():
    from bncourse.experiments import inside

    outcomes = {}
    for config in experiments.experiment_configs("diagnostics-sweeps", "quick"):
        if config["sweep"] == "init_scale" and config["init_scale"] == 10.0:
            outcomes[config["variant"]] = inside.train_sweep_point({**config, "train": 320})
    plain, bn = outcomes["none"]["diagnostics"], outcomes["bn"]["diagnostics"]
    # without BN, 10x He's scale: the probe after the first step is the last finite one
    assert outcomes["none"]["diverged"] and outcomes["none"]["test"]["accuracy"] is None
    assert plain["steps"] == [1] and plain["skipped"] == [2]
    ratios = [e["update_ratio"][0] for e in plain["layers"].values() if "update_ratio" in e]
    assert all(np.isfinite(ratios)) and min(ratios) > 1.0  # each step rewrites the weights
    # with BN the same scale trains: every probe recorded (the first five steps, then the 10th)
    assert not outcomes["bn"]["diverged"] and bn["skipped"] == []
    assert bn["steps"] == [1, 2, 3, 4, 5] and 0.0 <= outcomes["bn"]["test"]["accuracy"] <= 1.0
    assert all("histogram" not in o for e in bn["layers"].values() for o in e["output"])
