"""Protocols, configurations, the old-API translation, summaries and figures."""

import copy

import numpy as np
import pytest

import keras

from bncourse import experiments, plotting, results
from bncourse.experiments import config_hash, experiment, protocols
from bncourse.experiments import run_config as _run_config

PROTOCOLS = protocols()


def run_config(name, *args, **kwargs):
    """run_config with the protocol named, as the tests read best."""
    return _run_config(experiment(name).protocol, *args, **kwargs)


def test_full_profile_is_the_tutorial_protocol():
    t1 = run_config("t1-mlp", "before", 0)
    assert (t1["epochs"], t1["batch_size"], t1["subset"]) == (60, 32, None)
    assert t1["validation"] == {"validation": 5000, "method": "head", "keep_in_train": True}
    assert t1["optimizer"]["momentum"] == 0.9 and t1["optimizer"]["nesterov"] is True
    t4 = run_config("t4-cnn", "after", 2)
    assert (t4["epochs"], t4["batch_size"], t4["optimizer"]) == (25, 250, {"class": "Adam"})
    assert t4["validation"] == {"validation": 0.2, "method": "tail", "keep_in_train": False}


def test_quick_profile_is_a_stated_subset():
    t1 = run_config("t1-mlp", "none", 0, "quick")
    assert t1["subset"] == {"train": 6000, "test": 2000} and t1["epochs"] == 3
    assert t1["validation"]["validation"] * 6000 == pytest.approx(500)  # 5,000 of 60,000
    assert run_config("t1-mlp", "none", 0, "quick", epochs=7)["epochs"] == 7


def test_configurations_hash_apart():
    hashes = {
        config_hash(run_config(name, bn, seed, profile))
        for name, p in PROTOCOLS.items()
        for bn in p.variants
        for seed in (0, 1)
        for profile in ("quick", "full")
    }
    expected = sum(len(p.variants) for p in PROTOCOLS.values()) * 2 * 2
    assert len(hashes) == expected
    a = run_config("t4-cnn", "none", 0)
    assert config_hash(a) == config_hash(copy.deepcopy(a))


@pytest.mark.parametrize(
    "args, match",
    [
        (("t5-vit", "none", 0), "unknown experiment 't5-vit'"),
        (("t4-cnn", "middle", 0), "unknown BN variant 'middle'"),
        (("t4-cnn", "none", 0, "medium"), "profile must be 'quick' or 'full'"),
    ],
)
def test_bad_configurations(args, match):
    with pytest.raises(ValueError, match=match):
        run_config(*args)


def test_decay_translates_to_inverse_time_decay():
    """Keras 3 dropped decay=; the old rule lr / (1 + decay * t) is InverseTimeDecay."""
    spec = PROTOCOLS["t1-mlp"].optimizer
    optimizer = experiments.protocol._make_optimizer(spec)
    assert isinstance(optimizer, keras.optimizers.SGD) and optimizer.nesterov
    for step in (0, 1000, 100_000):
        optimizer.iterations.assign(step)
        old_rule = 0.01 / (1 + 1e-6 * step)
        assert float(keras.ops.convert_to_numpy(optimizer.learning_rate)) == pytest.approx(old_rule)
    assert experiments.describe_optimizer(spec) == (
        "SGD(learning_rate=InverseTimeDecay(initial_learning_rate=0.01, decay_steps=1, "
        "decay_rate=1e-06), momentum=0.9, nesterov=True)"
    )
    legacy = PROTOCOLS["t1-mlp"].legacy
    assert "decay=1e-6" in legacy["arguments"] and len(legacy["translation"]) == 2


def test_downsampling_for_the_small_model():
    x = np.arange(2 * 28 * 28, dtype=np.float32).reshape(2, 28, 28)
    small = experiments.protocol._downsample_8x8(x)
    assert small.shape == (2, 64)
    assert small[0, 0] == pytest.approx(x[0, 2:5, 2:5].mean())
    assert small[1, 63] == pytest.approx(x[1, 23:26, 23:26].mean())


def test_epochs_to_fraction():
    # 90% of the final 0.9 is 0.81: first reached at epoch 3.
    assert results.epochs_to_fraction([0.5, 0.8, 0.85, 0.9]) == 3
    assert results.epochs_to_fraction([0.9, 0.2, 0.9]) == 1


def fake_record(bn, seed, acc, seconds, curve):
    config = run_config("t4-cnn", bn, seed, "quick", epochs=len(curve))
    return {
        "config": config,
        "history": {
            "loss": [1 - a for a in curve],
            "accuracy": list(curve),
            "val_loss": [1.1 - a for a in curve],
            "val_accuracy": [a - 0.02 for a in curve],
        },
        "epoch_seconds": [seconds * 3] + [seconds] * (len(curve) - 1),
        "test": {"loss": 0.3, "accuracy": acc},
        "provenance": {"machine": {"cpus": 2, "keras_backend": "tensorflow"}},
    }


RECORDS = [
    fake_record("none", 0, 0.80, 1.0, [0.5, 0.7, 0.8]),
    fake_record("none", 1, 0.82, 1.2, [0.6, 0.7, 0.82]),
    fake_record("after", 0, 0.90, 2.0, [0.8, 0.85, 0.9]),
    fake_record("after", 1, 0.86, 2.2, [0.7, 0.8, 0.88]),
]


def test_summarize_computes_every_column():
    rows = results.summarize(RECORDS)
    assert [r["bn"] for r in rows] == ["none", "after"]
    none, after = rows
    assert none["test_accuracy_mean"] == pytest.approx(0.81)
    assert none["test_accuracy_std"] == pytest.approx(np.std([0.80, 0.82], ddof=1))
    assert after["best_val_accuracy"] == pytest.approx((0.88 + 0.86) / 2)
    # The first, compiling, epoch is left out of the timing: medians 1.1 and 2.1.
    assert none["seconds_per_epoch"] == pytest.approx(1.1)
    assert after["time_ratio"] == pytest.approx(2.1 / 1.1)
    table = results.format_table(rows)
    assert "t4-cnn [quick] cnn on fashion_mnist, 3 epochs" in table
    assert "0.8100 ± 0.0141" in table and "1.91x" in table


def test_figures_have_what_a_reader_needs():
    import matplotlib

    matplotlib.use("Agg")
    ax = plotting.plot_learning_curves(RECORDS)
    labels = [line.get_label() for line in ax.get_lines()]
    assert labels == [
        "no BN, training",
        "no BN, validation",
        "BN after ReLU, training",
        "BN after ReLU, validation",
    ]
    assert [line.get_linestyle() for line in ax.get_lines()] == ["--", "-", "--", "-"]
    assert len(ax.collections) == 4  # a ±1 std band per curve
    assert ax.get_xlabel() == "epoch" and ax.get_ylabel() == "accuracy"
    assert ax.get_legend() is not None
    ax = plotting.plot_test_accuracy(RECORDS)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["no BN", "BN after ReLU"]
    assert ax.get_ylabel() == "test accuracy"
    ax = plotting.plot_epoch_seconds(RECORDS)
    assert [t.get_text() for t in ax.texts] == ["1.00x", "1.91x"]
    assert "seconds per epoch" in ax.get_ylabel()
    with pytest.raises(ValueError, match="no results"):
        plotting.plot_test_accuracy([])
    other = fake_record("none", 0, 0.8, 1.0, [0.5, 0.6, 0.7])
    other["config"] = run_config("t1-mlp", "none", 0, "quick")
    with pytest.raises(ValueError, match="several experiments"):
        plotting.plot_learning_curves(RECORDS + [other])


def test_training_seconds_add_up_each_runs_start_to_end():
    def rec(name, started, date):
        return {"config": {"experiment": name}, "provenance": {"started": started, "date": date}}

    records = [
        rec("a", "2026-01-01T00:00:00+00:00", "2026-01-01T00:01:30+00:00"),
        rec("a", "2026-01-01T01:00:00+00:00", "2026-01-01T01:00:10+00:00"),
        rec("b", "2026-01-01T00:00:00+00:00", "2026-01-01T02:00:00+00:00"),
        rec("c", None, "2026-01-01T00:00:00+00:00"),
    ]  # no start: left out
    assert results.training_seconds(records) == {"a": 100.0, "b": 7200.0, "all": 7300.0}
