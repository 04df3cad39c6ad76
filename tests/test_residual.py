"""bncourse.residual: the residual network's variants and the from-scratch pieces of the
normaliser-free alternatives, each against a reference or a property; and the experiment
that trains them."""

import math

import keras
import numpy as np
import pytest

from bncourse import residual
from bncourse.experiments import experiment_configs
from bncourse.experiments import residual as experiment

# The custom optimizers take fit's JAX path (gradients without their variables) too.
pytestmark = pytest.mark.keras_backend


def as_np(x):
    return np.asarray(keras.ops.convert_to_numpy(x), dtype=np.float64)


def images(rng, n=8, size=12):
    return rng.normal(size=(n, size, size, 1)).astype("float32")


# --------------------------------------------------------------------------- weight standardisation


def test_standardized_kernel_has_zero_mean_and_variance_gain_squared_over_fan_in(rng):
    kernel = rng.normal(loc=5.0, scale=10.0, size=(3, 3, 4, 6)).astype("float32")
    gain = rng.uniform(0.5, 2.0, size=6).astype("float32")
    out = as_np(residual.standardize_kernel(kernel, gain))
    fan_in = 3 * 3 * 4
    per_unit = out.reshape(fan_in, 6)
    np.testing.assert_allclose(per_unit.mean(axis=0), 0.0, atol=1e-6)
    np.testing.assert_allclose(
        per_unit.var(axis=0), gain.astype(np.float64) ** 2 / fan_in, rtol=1e-4
    )
    # the NumPy formula, in float64
    k = kernel.reshape(fan_in, 6).astype(np.float64)
    expected = gain * (k - k.mean(axis=0)) / np.sqrt(fan_in * k.var(axis=0))
    np.testing.assert_allclose(per_unit, expected, rtol=1e-4, atol=1e-6)


def test_standardization_ignores_each_filters_scale_and_offset_and_floors_a_flat_one(rng):
    kernel = rng.normal(size=(3, 3, 2, 4)).astype("float32")
    scale = np.array([0.1, 1.0, 7.0, 300.0], "float32")
    offset = np.array([-3.0, 0.0, 2.0, 50.0], "float32")
    np.testing.assert_allclose(
        as_np(residual.standardize_kernel(kernel * scale + offset)),
        as_np(residual.standardize_kernel(kernel)),
        rtol=1e-3,
        atol=1e-5,
    )
    flat = np.full((3, 3, 2, 2), 4.0, "float32")  # variance 0: epsilon keeps it finite
    assert np.all(as_np(residual.standardize_kernel(flat)) == 0.0)
    with pytest.raises(ValueError, match="epsilon must be a number > 0, got -1"):
        residual.standardize_kernel(kernel, epsilon=-1)
    with pytest.raises(ValueError, match="kernel must have at least 2 axes"):
        residual.standardize_kernel(np.ones(3, "float32"))


def test_ws_conv_equals_a_conv_with_the_standardized_kernel_and_round_trips(rng):
    x = images(rng, size=7)
    layer = residual.WSConv2D(5, 3, padding="same", name="ws")
    out = as_np(layer(x))
    layer.gain.assign(np.linspace(0.5, 2.0, 5).astype("float32"))
    plain = keras.layers.Conv2D(5, 3, padding="same")
    plain.build(x.shape)
    plain.kernel.assign(residual.standardize_kernel(layer.kernel, layer.gain))
    plain.bias.assign(layer.bias)
    np.testing.assert_allclose(as_np(layer(x)), as_np(plain(x)), rtol=1e-5, atol=1e-5)
    assert not np.allclose(out, as_np(layer(x)))  # the gain is used
    config = layer.get_config()
    assert config["epsilon"] == 1e-4
    assert residual.WSConv2D.from_config(config).get_config() == config


# --------------------------------------------------------------------------- adaptive gradient clipping


def test_agc_leaves_small_gradients_alone_and_clips_large_ones_unit_by_unit(rng):
    weight = rng.normal(size=(3, 3, 4, 5)).astype("float32")
    w_norms = np.sqrt((weight.astype(np.float64) ** 2).sum(axis=(0, 1, 2)))
    direction = rng.normal(size=weight.shape)
    direction /= np.sqrt((direction**2).sum(axis=(0, 1, 2)))
    # units 0, 2 get a gradient of half the allowed norm, the others ten times it
    factor = np.array([0.5, 10.0, 0.5, 10.0, 10.0])
    grad = (direction * factor * 0.01 * w_norms).astype("float32")
    out = as_np(residual.adaptive_clip(grad, weight, clipping=0.01))
    small = [0, 2]
    assert np.array_equal(out[..., small], grad[..., small].astype(np.float64))
    norms = np.sqrt((out**2).sum(axis=(0, 1, 2)))
    np.testing.assert_allclose(norms[[1, 3, 4]], 0.01 * w_norms[[1, 3, 4]], rtol=1e-5)
    # clipping only shortens: the direction of each unit's gradient is kept
    np.testing.assert_allclose(out[..., 1] / norms[1], direction[..., 1], atol=1e-5)


def test_agc_floors_the_weight_norm_and_treats_vectors_as_one_unit(rng):
    bias = np.zeros(4, "float32")  # a fresh bias: the norm floor epsilon sets the limit
    grad = np.array([3.0, 0.0, -4.0, 0.0], "float32")
    out = as_np(residual.adaptive_clip(grad, bias, clipping=0.1, epsilon=1e-3))
    np.testing.assert_allclose(np.linalg.norm(out), 0.1 * 1e-3, rtol=1e-5)
    np.testing.assert_allclose(out / np.linalg.norm(out), grad / 5.0, atol=1e-6)
    dense = rng.normal(size=(6, 3)).astype("float32")
    assert as_np(residual.unitwise_norm(dense)).shape == (1, 3)
    np.testing.assert_allclose(
        as_np(residual.unitwise_norm(dense))[0], np.linalg.norm(dense, axis=0), rtol=1e-6
    )
    with pytest.raises(ValueError, match="grad and weight must have one shape"):
        residual.adaptive_clip(grad, dense)
    with pytest.raises(ValueError, match="clipping must be a number > 0, got 0"):
        residual.adaptive_clip(grad, bias, clipping=0)


def test_sgd_with_agc_steps_with_clipped_gradients_and_skips_excluded_layers(rng):
    w = keras.Variable(rng.normal(size=(4, 3)).astype("float32"), name="kernel")
    b = keras.Variable(np.ones(3, "float32"), name="bias")
    g_w = (100.0 * rng.normal(size=(4, 3))).astype("float32")
    g_b = np.full(3, 1e-4, "float32")
    w0, b0 = as_np(w), as_np(b)
    opt = residual.SGDWithAGC(learning_rate=0.1, clipping=0.01)
    opt.apply([g_w, g_b], [w, b])
    np.testing.assert_allclose(
        as_np(w), w0 - 0.1 * as_np(residual.adaptive_clip(g_w, w0, 0.01)), rtol=1e-5, atol=1e-7
    )
    np.testing.assert_allclose(as_np(b), b0 - 0.1 * g_b, rtol=1e-6)  # small: untouched
    with pytest.raises(TypeError, match="exclude must be a sequence of layer names"):
        residual.SGDWithAGC(exclude="output")
    assert residual.SGDWithAGC(clipping=0.05, exclude=("output",)).get_config()["exclude"] == [
        "output"
    ]


def test_sgd_with_multipliers_scales_the_step_of_the_named_variables(rng):
    kernel = keras.Variable(rng.normal(size=(3, 2)).astype("float32"), name="kernel")
    bias = keras.Variable(np.zeros(2, "float32"), name="bias")
    g_k, g_b = rng.normal(size=(3, 2)).astype("float32"), np.ones(2, "float32")
    k0 = as_np(kernel)
    opt = residual.SGDWithMultipliers(learning_rate=0.5, momentum=0.9, multipliers={"bias": 0.1})
    for _ in range(2):  # with momentum the scaling carries over, step after step
        opt.apply([g_k, g_b], [kernel, bias])
    # two momentum steps move by lr * (1 + (1 + momentum)) * g
    np.testing.assert_allclose(as_np(kernel), k0 - 0.5 * 2.9 * g_k, rtol=1e-5)
    np.testing.assert_allclose(as_np(bias), -0.1 * 0.5 * 2.9 * g_b, rtol=1e-5)
    with pytest.raises(ValueError, match=r"multipliers\['bias'\] must be a number > 0, got 0"):
        residual.SGDWithMultipliers(multipliers={"bias": 0})
    with pytest.raises(ValueError, match="weight_decay is not supported"):
        residual.SGDWithMultipliers(weight_decay=1e-4)


def test_fit_with_agc_moves_each_unit_at_most_lr_times_lambda_of_its_norm(rng):
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((6, 6, 1)),
            keras.layers.Conv2D(4, 3, name="conv"),
            keras.layers.Flatten(),
            keras.layers.Dense(3, activation="softmax", name="output"),
        ]
    )
    lr, clipping = 0.5, 0.01
    model.compile(
        optimizer=residual.SGDWithAGC(learning_rate=lr, clipping=clipping, exclude=("output",)),
        loss="sparse_categorical_crossentropy",
    )
    kernel0 = as_np(model.get_layer("conv").kernel)
    out0 = as_np(model.get_layer("output").kernel)
    x = rng.normal(size=(16, 6, 6, 1)).astype("float32") * 50.0  # large inputs, large grads
    model.fit(x, rng.integers(0, 3, size=16), batch_size=16, epochs=1, verbose=0)
    step = as_np(model.get_layer("conv").kernel) - kernel0
    allowed = lr * clipping * np.sqrt((kernel0**2).sum(axis=(0, 1, 2)))
    moved = np.sqrt((step**2).sum(axis=(0, 1, 2)))
    assert np.all(moved <= allowed * (1 + 1e-4)) and np.all(moved > 0.5 * allowed)
    out_step = np.linalg.norm(as_np(model.get_layer("output").kernel) - out0, axis=0)
    assert np.any(out_step > 2 * lr * clipping * np.linalg.norm(out0, axis=0))  # not clipped


# --------------------------------------------------------------------------- the variants at initialisation


def test_fixup_branches_are_zero_and_its_network_starts_uniform(rng):
    assert residual.fixup_scale(16) == 0.25 and residual.fixup_scale(8, 3) == 8 ** (-0.25)
    model = residual.build_resnet("fixup", blocks=3, width=4, input_shape=(10, 10, 1))
    x = images(rng, size=10)
    probe = keras.Model(
        model.input, [model.get_layer(n).output for n in ("stem_out", "block2_out")]
    )
    stem, last = (as_np(v) for v in probe(x))
    np.testing.assert_array_equal(last, stem)  # every branch adds exactly 0
    np.testing.assert_allclose(as_np(model(x)), 0.1, rtol=1e-6)  # zero classifier
    assert np.all(as_np(model.get_layer("block1_conv2").kernel) == 0.0)
    with pytest.raises(ValueError, match="blocks must be an integer >= 1, got 0"):
        residual.fixup_scale(0)


def test_fixup_scales_the_first_convolution_of_each_branch():
    model = residual.build_resnet("fixup", blocks=16, width=16)
    kernel = as_np(model.get_layer("block5_conv1").kernel)
    he_std = math.sqrt(2.0 / (3 * 3 * 16))
    # 2,304 weights: the sample std is within 6% of the target with near certainty
    assert abs(kernel.std() / (he_std * 16 ** (-0.5)) - 1.0) < 0.06


def test_zero_gamma_blocks_start_as_the_identity_and_gamma_one_blocks_do_not(rng):
    x = images(rng, size=10)
    for norm, identity in (("bn-zero-gamma", True), ("bn", False)):
        model = residual.build_resnet(norm, blocks=2, width=4, input_shape=(10, 10, 1))
        probe = keras.Model(
            model.input, [model.get_layer(n).output for n in ("stem_out", "block1_out")]
        )
        stem, last = (as_np(v) for v in probe(x, training=True))
        assert np.array_equal(last, stem) == identity


def test_block_statistics_show_the_identity_path_gaining_weight_only_with_bn_on_the_branch(rng):
    x = images(rng, n=32, size=12)
    on_branch = residual.block_statistics(
        residual.build_resnet("bn", blocks=8, width=8, input_shape=(12, 12, 1)), x
    )
    after_add = residual.block_statistics(
        residual.build_resnet("bn-after-add", blocks=8, width=8, input_shape=(12, 12, 1)), x
    )
    assert len(on_branch["std"]) == 9 and len(on_branch["skip_share"]) == 8
    # Var(x + branch) grows by about one per block: the input's share rises towards 1
    assert on_branch["skip_share"][-1] > 0.75 > on_branch["skip_share"][0]
    assert max(after_add["skip_share"]) < 0.6
    fixup = residual.block_statistics(
        residual.build_resnet("fixup", blocks=2, width=4, input_shape=(12, 12, 1)), x
    )
    assert fixup["skip_share"] == [1.0, 1.0]


def test_nf_blocks_grow_the_variance_as_their_betas_predict(rng):
    x = rng.normal(size=(64, 14, 14, 1)).astype("float32")
    stats = residual.block_statistics(
        residual.build_resnet("nf", blocks=8, width=16, input_shape=(14, 14, 1)), x
    )
    std = np.array(stats["std"])
    betas = np.array(residual.nf_betas(9))
    np.testing.assert_allclose(std / std[0], betas, rtol=0.1)
    assert residual.nf_betas(3, alpha=0.5) == [1.0, math.sqrt(1.25), math.sqrt(1.5)]


def test_relu_gain_gives_unit_variance():
    z = np.random.default_rng(0).normal(size=1_000_000)
    gain = residual.relu_gain()
    assert abs(np.var(gain * np.maximum(z, 0.0)) - 1.0) < 0.01
    assert abs(np.mean(np.maximum(z, 0.0)) - 1.0 / math.sqrt(2.0 * math.pi)) < 0.002


def test_selu_matches_keras_and_keeps_mean_zero_variance_one_under_lecun_normal():
    rng = np.random.default_rng(1)
    z = np.linspace(-6, 6, 101)
    np.testing.assert_allclose(
        residual.selu(z), as_np(keras.activations.selu(z.astype("float32"))), rtol=1e-5, atol=1e-6
    )
    width = 256
    x = rng.normal(size=(1000, width))
    relu_x = x.copy()
    for _ in range(30):
        w = rng.normal(scale=1.0 / math.sqrt(width), size=(width, width))  # LeCun normal
        x = residual.selu(x @ w)
        relu_x = np.maximum(relu_x @ w, 0.0)
    assert abs(x.mean()) < 0.05 and abs(x.var() - 1.0) < 0.1
    assert relu_x.var() < 1e-6  # without the fixed point, LeCun-scaled ReLUs fade away


def test_build_resnet_refuses_bad_arguments_and_names_its_layers():
    with pytest.raises(ValueError, match="norm must be one of 'none', 'bn'.*got 'layer'"):
        residual.build_resnet("layer")
    with pytest.raises(ValueError, match="blocks must be an integer >= 1, got 0"):
        residual.build_resnet("bn", blocks=0)
    with pytest.raises(ValueError, match="width must be an integer >= 1, got 2.5"):
        residual.build_resnet("bn", width=2.5)
    with pytest.raises(TypeError, match="scale must be True or False"):
        residual.ScalarAffine(scale=1)
    model = residual.build_resnet("selu", blocks=3, width=4)
    assert model.name == "resnet3_selu" and model.output_shape == (None, 10)
    assert [n for n in (la.name for la in model.layers) if n.endswith("_out")] == [
        "stem_out",
        "block0_out",
        "block1_out",
        "block2_out",
    ]
    assert model.get_layer("block0_out").get_config()["activation"] == "selu"
    assert model.get_layer("stem_out").output.shape == (None, 14, 14, 4)


# --------------------------------------------------------------------------- the experiment


def test_experiment_runs_go_seed_by_seed_and_the_quick_profile_is_small():
    full = experiment_configs("residual", "full")
    assert [(c["seed"], c["variant"]) for c in full] == [
        (s, v) for s in (0, 1, 2) for v in experiment.VARIANTS
    ]
    quick = experiment_configs("residual", "quick")
    assert {c["variant"] for c in quick} == set(experiment.QUICK_VARIANTS)
    assert all(c["train"] <= 2000 and c["epochs"] == 1 for c in quick)
    with pytest.raises(ValueError, match="profile must be one of quick, full"):
        experiment.configs("medium")
    assert experiment._finite([1.0, float("nan"), float("inf")]) == [1.0, None, None]


@pytest.mark.slow
def test_a_tiny_run_records_every_epoch():
    config = {
        **experiment_configs("residual", "quick")[0],
        "variant": "nf",
        "blocks": 2,
        "train": 256,
        "test": 200,
        "epochs": 2,
    }
    seen = []
    record = experiment.train(config, on_epoch=lambda e, logs, s: seen.append(e))
    assert seen == [0, 1]
    history = record["history"]
    assert all(len(history[k]) == 2 for k in ("loss", "accuracy", "test_accuracy"))
    assert (
        record["diverged"] is False and record["test"]["accuracy"] == history["test_accuracy"][-1]
    )
    assert abs(record["input_standardisation"]["mean"] - 0.286) < 0.02
