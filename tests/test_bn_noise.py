"""bncourse.bn_noise (the noise of BN's batch statistics, ghost BN) and the bn-noise
experiment's configurations and bookkeeping."""

import itertools
import math

import keras
import numpy as np
import pytest
from scipy.stats import norm

from bncourse import bn_noise, numpy_bn
from bncourse.experiments import bn_noise as experiment
from bncourse.experiments import experiment_configs
from bncourse.keras_bn import BatchNorm


def np_(x):
    return keras.ops.convert_to_numpy(x)


# --------------------------------------------------------------------------- the noise


def test_one_batch_by_hand():
    # Every batch-mate is 3: with B = 2 the batch is {1, 3} (mean 2, variance 1); with
    # B = 3 it is {1, 3, 3} (mean 7/3, variance ((4/3)**2 + 2 * (2/3)**2) / 3 = 8/9).
    eps = 1e-3
    example, population = np.array([1.0]), np.array([[3.0]])
    two = bn_noise.batch_output_samples(example, population, 2, 3, rng=np.random.default_rng(0))
    np.testing.assert_allclose(two, np.full((3, 1), -1.0 / math.sqrt(1.0 + eps)), rtol=1e-12)
    three = bn_noise.batch_output_samples(example, population, 3, 2, rng=np.random.default_rng(0))
    np.testing.assert_allclose(three, np.full((2, 1), (-4 / 3) / math.sqrt(8 / 9 + eps)))


def test_the_mean_noise_is_exact_over_every_batch():
    # Enumerate every choice of 3 batch-mates from 4 equally likely values: the variance of
    # the batch mean (the example fixed) is (B - 1) sigma**2 / B**2 exactly.
    values = np.array([0.0, 1.0, 5.0, 6.0])
    example, b = 2.0, 4
    means = [(example + sum(m)) / b for m in itertools.product(values, repeat=b - 1)]
    assert np.var(means) == pytest.approx(bn_noise.mean_noise_variance(b) * np.var(values))
    assert bn_noise.mean_noise_variance(4) == 3 / 16
    np.testing.assert_allclose(
        bn_noise.mean_noise_variance(np.array([2, 256])), [1 / 4, 255 / 256**2]
    )


def test_measured_spread_follows_the_leading_order_prediction(rng):
    population = rng.normal(size=(50_000, 2))
    example = np.array([0.0, 1.5])
    sizes = [2, 8, 64, 256]
    # epsilon 1e-8: at B = 2 the default 1e-3 visibly shrinks values whose mates are close
    spread = bn_noise.output_spread(example, population, sizes, 3000, rng=rng, epsilon=1e-8)
    assert spread.shape == (4, 2)
    predicted = bn_noise.predicted_spread(example[None, :], np.array(sizes)[:, None])
    # From 64 on the first-order formula holds to a few percent (its error is O(1/B) and
    # the estimate of a spread from 3,000 draws is good to about 1.3%).
    np.testing.assert_allclose(spread[2:], predicted[2:], rtol=0.06)
    # At B = 2 the value is +-1 (up to epsilon): +1 when the batch-mate is below the
    # example, with probability p = Phi(z), so its spread is 2 sqrt(p (1 - p)), not the
    # formula's sqrt((1 + z**2 / 2) / 2).
    p = norm.cdf(example)
    np.testing.assert_allclose(spread[0], 2 * np.sqrt(p * (1 - p)), atol=0.03)
    assert not np.allclose(spread[0], predicted[0], rtol=0.2)
    assert np.all(np.diff(spread, axis=0) < 0)  # more examples, less noise


def test_spread_is_unchanged_by_shifting_and_scaling_the_feature():
    population = np.random.default_rng(1).exponential(size=(1000, 3))
    example = np.array([0.2, 1.0, 4.0])
    a, b = 7.0, -30.0
    kwargs = {"batch_size": 16, "draws": 50, "epsilon": 1e-9}
    base = bn_noise.batch_output_samples(
        example, population, rng=np.random.default_rng(2), **kwargs
    )
    moved = bn_noise.batch_output_samples(
        a * example + b, a * population + b, rng=np.random.default_rng(2), **kwargs
    )
    np.testing.assert_allclose(moved, base, atol=1e-6)


def test_skewness_and_kurtosis_enter_the_prediction():
    mean, std, skew, kurt = bn_noise.standardised_moments(np.array([0.0, 0.0, 0.0, 4.0]))
    assert (mean, std) == (1.0, math.sqrt(3.0))
    assert skew == pytest.approx(((-1) ** 3 * 3 + 3**3) / 4 / 3**1.5)
    assert kurt == pytest.approx((3 + 81) / 4 / 9)
    assert bn_noise.predicted_spread(1.0, 16) == pytest.approx(math.sqrt(1.5 / 16))
    assert bn_noise.predicted_spread(2.0, 4, skewness=1.0, kurtosis=5.0) == pytest.approx(
        math.sqrt((1 + 2 + 4) / 4)
    )


def test_bad_arguments_are_named():
    pop = np.zeros((10, 2))
    with pytest.raises(ValueError, match="batch_size must be at least 2"):
        bn_noise.batch_output_samples(np.zeros(2), pop, 1, 5, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"population must have shape \(N, 3\)"):
        bn_noise.batch_output_samples(np.zeros(3), pop, 4, 5, rng=np.random.default_rng(0))
    with pytest.raises(TypeError, match="example must be a floating-point array"):
        bn_noise.batch_output_samples(np.zeros(2, int), pop, 4, 5, rng=np.random.default_rng(0))
    with pytest.raises(TypeError, match="rng must be a numpy.random.Generator"):
        bn_noise.batch_output_samples(np.zeros(2), pop, 4, 5, rng=0)
    with pytest.raises(ValueError, match="draws must be at least 2"):
        bn_noise.output_spread(np.zeros(2), pop, [4], 1, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="kurtosis must be >= 1"):
        bn_noise.predicted_spread(0.0, 4, kurtosis=0.5)
    with pytest.raises(ValueError, match="must not be constant"):
        bn_noise.standardised_moments(np.ones(5))


# --------------------------------------------------------------------------- ghost BN


def test_ghost_bn_in_numpy(rng):
    x = rng.normal(5.0, 10.0, size=(12, 4))
    gamma, beta = rng.normal(size=4), rng.normal(size=4)
    whole, cache = numpy_bn.batchnorm_forward(x, gamma, beta)
    out, mean, var = bn_noise.ghost_batchnorm_forward(x, gamma, beta, 12)
    np.testing.assert_array_equal(out, whole)  # one ghost batch is plain BN
    np.testing.assert_array_equal(mean[0], cache["mean"])
    out, mean, var = bn_noise.ghost_batchnorm_forward(x, np.ones(4), np.zeros(4), 3)
    assert mean.shape == var.shape == (4, 4)
    np.testing.assert_allclose(mean[1], x[3:6].mean(axis=0))
    np.testing.assert_allclose(var[1], x[3:6].var(axis=0))
    np.testing.assert_allclose(out.reshape(4, 3, 4).mean(axis=1), 0.0, atol=1e-12)
    with pytest.raises(ValueError, match="virtual_batch_size=5 must divide the batch size"):
        bn_noise.ghost_batchnorm_forward(x, gamma, beta, 5)


GHOST_SHAPES = [((16, 5), -1, 4), ((16, 5), 1, 8), ((8, 3, 3, 2), -1, 2), ((8, 2, 3, 3), 1, 4)]


@pytest.mark.keras_backend
@pytest.mark.parametrize("shape, axis, v", GHOST_SHAPES)
def test_ghost_layer_matches_numpy_and_averages_the_ghost_statistics(rng, shape, axis, v):
    x = rng.normal(5.0, 10.0, size=shape).astype("float32")
    c = shape[axis]
    gamma, beta = rng.normal(1.0, 0.3, c).astype("float32"), rng.normal(size=c).astype("float32")
    layer = bn_noise.GhostBatchNorm(v, axis=axis, momentum=0.0)
    layer.build(shape)
    layer.gamma.assign(gamma)
    layer.beta.assign(beta)
    before = np_(layer(x, training=False))
    out = np_(layer(x, training=True))
    expected, mean, var = bn_noise.ghost_batchnorm_forward(x, gamma, beta, v, axis=axis)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    # momentum 0: the moving statistics are the ghost batches' average after one call
    np.testing.assert_allclose(np_(layer.moving_mean), mean.mean(axis=0), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(np_(layer.moving_variance), var.mean(axis=0), rtol=1e-5)
    inference = np_(layer(x, training=False))
    assert not np.allclose(inference, before)  # inference now uses the new statistics
    np.testing.assert_allclose(
        inference,
        numpy_bn.batchnorm_inference(x, gamma, beta, mean.mean(0), var.mean(0), axis=axis),
        rtol=1e-4,
        atol=1e-4,
    )


@pytest.mark.keras_backend
def test_ghost_layer_with_the_whole_batch_is_the_course_layer(rng):
    x = rng.normal(5.0, 10.0, size=(16, 6)).astype("float32")
    ghost, plain = bn_noise.GhostBatchNorm(16, momentum=0.5), BatchNorm(momentum=0.5)
    np.testing.assert_allclose(
        np_(ghost(x, training=True)), np_(plain(x, training=True)), atol=1e-5
    )
    np.testing.assert_allclose(np_(ghost.moving_variance), np_(plain.moving_variance), rtol=1e-6)


@pytest.mark.keras_backend
def test_ghost_layer_config_and_errors():
    layer = bn_noise.GhostBatchNorm(8, momentum=0.9, epsilon=1e-2, name="g")
    again = bn_noise.GhostBatchNorm.from_config(layer.get_config())
    assert (again.virtual_batch_size, again.momentum, again.epsilon) == (8, 0.9, 1e-2)
    with pytest.raises(ValueError, match="virtual_batch_size must be at least 2"):
        bn_noise.GhostBatchNorm(1)
    with pytest.raises(ValueError, match="virtual_batch_size must be a positive integer"):
        bn_noise.GhostBatchNorm(2.5)
    with pytest.raises(ValueError, match="virtual_batch_size=8 must divide the batch size"):
        layer(np.zeros((12, 3), "float32"), training=True)


@pytest.mark.keras_backend
def test_ghost_layer_trains_in_fit(rng):
    # fit traces the step with an unknown batch size; the reshape must still work there.
    x = rng.normal(size=(64, 6)).astype("float32")
    y = (x[:, 0] > 0).astype("int32")
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(8, use_bias=False),
            bn_noise.GhostBatchNorm(4),
            keras.layers.Dense(2, activation="softmax"),
        ]
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    history = model.fit(x, y, batch_size=16, epochs=3, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert not np.allclose(np_(model.layers[1].moving_mean), 0.0)


def test_keras_3_has_no_virtual_batch_size():
    # Keras 2's BatchNormalization had virtual_batch_size; Keras 3 refuses the argument,
    # which is why the course has GhostBatchNorm. If this fails, Keras has it back.
    with pytest.raises(ValueError, match="virtual_batch_size"):
        keras.layers.BatchNormalization(virtual_batch_size=8)


# --------------------------------------------------------------------------- the experiment


def test_experiment_runs_divide_their_batches():
    full = experiment_configs("bn-noise", "full")
    assert len(full) == 5 * 9
    for c in full:
        assert c["train"] % c["batch_size"] == 0
        if c["virtual_batch_size"] is not None:
            assert c["batch_size"] % c["virtual_batch_size"] == 0
    labels = {experiment.label(c) for c in full}
    assert {"no BN, batch 64", "BN, batch 16", "ghost BN 4 of 256"} <= labels
    assert {c["inference_statistics"] is None for c in full if c["variant"] == "none"} == {True}
    assert (
        experiment.normalisation_batch(next(c for c in full if c["virtual_batch_size"] == 16)) == 16
    )
    with pytest.raises(ValueError, match="no normalisation batch"):
        experiment.normalisation_batch(next(c for c in full if c["variant"] == "none"))
    with pytest.raises(ValueError, match="profile must be one of quick, full"):
        experiment.configs("medium")


def _record(seed, variant, batch, virtual, train, test, train_mode):
    config = {
        "experiment": "bn-noise",
        "seed": seed,
        "variant": variant,
        "batch_size": batch,
        "virtual_batch_size": virtual,
    }
    history = {"train_accuracy": train, "test_accuracy": test, "accuracy_training_mode": train_mode}
    return {"config": config, "history": history}


def test_gaps_and_paired_gaps():
    a = _record(0, "bn", 16, None, [0.8, 0.95], [0.8, 0.85], [0.7, 0.9])
    assert experiment.gap(a) == pytest.approx(0.10)
    assert experiment.gap(a, epoch=0) == pytest.approx(0.0)
    assert experiment.gap(a, mode="training") == pytest.approx(0.05)
    b = _record(0, "ghost", 256, 16, [0.8, 0.90], [0.8, 0.86], [0.7, 0.9])
    c = _record(1, "ghost", 256, 16, [0.8, 0.90], [0.8, 0.86], [0.7, 0.9])
    diff = experiment.paired_gap([a, b, c], "BN, batch 16", "ghost BN 16 of 256")
    assert diff == pytest.approx([0.06])  # seed 1 has no BN run to pair with
    with pytest.raises(ValueError, match="mode must be"):
        experiment.gap(a, mode="eval")
    with pytest.raises(ValueError, match="no runs labelled 'BN, batch 8'"):
        experiment.paired_gap([a], "BN, batch 8", "BN, batch 16")


def test_training_set_must_be_a_multiple_of_the_batch():
    config = dict(experiment_configs("bn-noise", "quick")[0], train=1000)
    with pytest.raises(ValueError, match="train=1000 must be a multiple of batch_size=256"):
        experiment.train(config)


@pytest.mark.slow
def test_one_tiny_ghost_run_records_every_epoch():
    config = dict(
        next(c for c in experiment_configs("bn-noise", "quick") if c["variant"] == "ghost"),
        train=512,
        test=200,
        epochs=2,
    )
    outcome = experiment.train(config)
    h = outcome["history"]
    for key in ("train_accuracy", "test_accuracy", "accuracy_training_mode", "loss"):
        assert len(h[key]) == 2 and all(0.0 <= v for v in h[key])
    assert all(0.0 <= v <= 1.0 for v in h["train_accuracy"] + h["test_accuracy"])
    assert outcome["test"]["accuracy"] == h["test_accuracy"][-1]
    assert len(outcome["epoch_seconds"]) == 2


@pytest.mark.keras_backend
def test_expected_batch_statistics_average_the_batches(rng):
    x = rng.normal(5.0, 10.0, size=(24, 3)).astype("float32")
    model = keras.Sequential(
        [keras.Input((3,)), keras.layers.Dense(4, use_bias=False), BatchNorm(), keras.layers.ReLU()]
    )
    bn_noise.expected_batch_statistics(model, x, 6, seed=3)
    h = np_(model.layers[0](x)).astype(np.float64)
    batches = h[np.random.default_rng(3).permutation(24)].reshape(4, 6, 4)
    bn = model.layers[1]
    np.testing.assert_allclose(np_(bn.moving_mean), batches.mean(axis=1).mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(np_(bn.moving_variance), batches.var(axis=1).mean(axis=0), rtol=1e-5)
    # one batch of everything: the statistics of the whole set, as recompute_bn_statistics
    bn_noise.expected_batch_statistics(model, x, 24)
    np.testing.assert_allclose(np_(bn.moving_variance), h.var(axis=0), rtol=1e-5)
    # the average batch variance is smaller than the whole set's by about (B - 1) / B
    bn_noise.expected_batch_statistics(model, np.tile(x, (50, 1)), 2)
    np.testing.assert_allclose(np_(bn.moving_variance), h.var(axis=0) / 2, rtol=0.25)
    with pytest.raises(ValueError, match="x must hold at least batch_size=32 examples"):
        bn_noise.expected_batch_statistics(model, x, 32)
