"""bncourse.keras_bn.BatchNorm against keras.layers.BatchNormalization, the oracle.

These tests run under every backend `make test` covers (TensorFlow, then JAX).
"""

import inspect

import numpy as np
import pytest

import keras

from bncourse import numpy_bn
from bncourse.keras_bn import BatchNorm

pytestmark = pytest.mark.keras_backend

SHAPES = [((16, 5), -1), ((16, 5), 1), ((6, 4, 4, 3), -1), ((6, 3, 4, 4), 1)]
SHAPE_IDS = ["2d-last", "2d-axis1", "4d-last", "4d-axis1"]


def np_(x):
    return keras.ops.convert_to_numpy(x)


def off_centre(rng, shape, dtype="float32"):
    """Data far from zero and widely spread, as Keras's own tests use."""
    return rng.normal(loc=5.0, scale=10.0, size=shape).astype(dtype)


def pair(**kwargs):
    return keras.layers.BatchNormalization(**kwargs), BatchNorm(**kwargs)


@pytest.mark.parametrize("shape, axis", SHAPES, ids=SHAPE_IDS)
def test_same_outputs_and_moving_statistics_as_keras(rng, shape, axis):
    theirs, ours = pair(axis=axis, momentum=0.8)
    for layer in (theirs, ours):
        layer.build(shape)
    gamma = rng.normal(1.0, 0.3, shape[axis]).astype("float32")
    beta = rng.normal(0.0, 0.3, shape[axis]).astype("float32")
    for layer in (theirs, ours):
        layer.gamma.assign(gamma)
        layer.beta.assign(beta)
    for _ in range(10):
        x = off_centre(rng, shape)
        np.testing.assert_allclose(
            np_(ours(x, training=True)), np_(theirs(x, training=True)), atol=1e-5
        )
        np.testing.assert_allclose(np_(ours.moving_mean), np_(theirs.moving_mean), rtol=1e-5)
        np.testing.assert_allclose(
            np_(ours.moving_variance), np_(theirs.moving_variance), rtol=1e-5
        )
    x = off_centre(rng, shape)
    np.testing.assert_allclose(np_(ours(x)), np_(theirs(x)), atol=1e-5)


@pytest.mark.parametrize("shape, axis", SHAPES, ids=SHAPE_IDS)
def test_momentum_zero_trick(rng, shape, axis):
    """With momentum 0, inference after one training call equals that training output."""
    layer = BatchNorm(axis=axis, momentum=0.0)
    x = off_centre(rng, shape)
    before = np_(layer(x, training=False))
    train = np_(layer(x, training=True))
    after = np_(layer(x, training=False))
    assert np.max(np.abs(before - train)) > 1.0  # untrained moving statistics are (0, 1)
    np.testing.assert_allclose(after, train, atol=1e-5)
    np.testing.assert_allclose(
        train.mean(axis=tuple(i for i in range(len(shape)) if i != axis % len(shape))), 0, atol=1e-4
    )


def test_training_none_means_inference(rng):
    layer = BatchNorm()
    x = off_centre(rng, (8, 3))
    np.testing.assert_allclose(np_(layer(x)), x / np.sqrt(1.0 + 1e-3), rtol=1e-6)
    np.testing.assert_array_equal(np_(layer.moving_mean), np.zeros(3))


def test_trainable_false_means_inference_even_in_training(rng):
    layer = BatchNorm(momentum=0.5)
    x = off_centre(rng, (8, 3))
    layer.build(x.shape)
    layer.trainable = False
    np.testing.assert_allclose(np_(layer(x, training=True)), np_(layer(x, training=False)))
    np.testing.assert_array_equal(np_(layer.moving_mean), np.zeros(3))
    # And in fit: the moving statistics of a frozen layer do not move.
    model = keras.Sequential([keras.Input((3,)), layer, keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    model.fit(x, np.zeros((8, 1)), epochs=2, batch_size=4, verbose=0)
    np.testing.assert_array_equal(np_(layer.moving_mean), np.zeros(3))
    np.testing.assert_array_equal(np_(layer.moving_variance), np.ones(3))


def test_fit_trains_in_training_mode(rng):
    """model.fit passes training=True down: the moving statistics move towards the data."""
    layer = BatchNorm(momentum=0.5)
    model = keras.Sequential([keras.Input((3,)), layer, keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    x = off_centre(rng, (64, 3))
    model.fit(x, np.zeros((64, 1)), epochs=1, batch_size=64, verbose=0)
    np.testing.assert_allclose(np_(layer.moving_mean), 0.5 * x.mean(axis=0), rtol=1e-4)


@pytest.mark.parametrize("shape, axis", SHAPES, ids=SHAPE_IDS)
def test_agrees_with_the_numpy_reference(rng, shape, axis):
    layer = BatchNorm(axis=axis, momentum=0.9)
    ref = numpy_bn.BatchNorm(shape[axis], axis=axis, momentum=0.9)
    layer.build(shape)
    ref.gamma = rng.normal(1.0, 0.3, shape[axis]).astype("float32")
    ref.beta = rng.normal(0.0, 0.3, shape[axis]).astype("float32")
    layer.gamma.assign(ref.gamma)
    layer.beta.assign(ref.beta)
    for _ in range(3):
        x = off_centre(rng, shape)
        np.testing.assert_allclose(np_(layer(x, training=True)), ref(x, training=True), atol=1e-5)
    np.testing.assert_allclose(np_(layer.moving_variance), ref.moving_var, rtol=1e-5)
    x = off_centre(rng, shape)
    np.testing.assert_allclose(np_(layer(x)), ref(x), atol=1e-5)


def _copies_of_a_small_model(bn_factory, seed):
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((12,)),
            keras.layers.Dense(16, use_bias=False),
            bn_factory(),
            keras.layers.Activation("relu"),
            keras.layers.Dense(8, activation="relu"),
            bn_factory(momentum=0.9),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )


def test_training_equivalence_with_keras_over_twenty_sgd_steps(rng):
    """Same initial weights, same 20 batches: same weights, statistics and predictions."""
    theirs = _copies_of_a_small_model(keras.layers.BatchNormalization, seed=1)
    ours = _copies_of_a_small_model(BatchNorm, seed=2)
    ours.set_weights(theirs.get_weights())
    for model in (theirs, ours):
        model.compile(
            optimizer=keras.optimizers.SGD(learning_rate=0.05, momentum=0.9),
            loss="sparse_categorical_crossentropy",
        )
    x = off_centre(rng, (20 * 32, 12))
    y = rng.integers(0, 3, size=20 * 32)
    for step in range(20):
        batch = slice(32 * step, 32 * (step + 1))
        theirs.train_on_batch(x[batch], y[batch])
        ours.train_on_batch(x[batch], y[batch])
    names = [w.path for w in theirs.weights]
    assert any("moving_variance" in n for n in names)
    assert len(ours.get_weights()) == len(names)  # zip below would stop at the shorter
    for name, a, b in zip(names, theirs.get_weights(), ours.get_weights()):
        np.testing.assert_allclose(b, a, atol=1e-5, err_msg=name)
    x_new = off_centre(rng, (50, 12))
    np.testing.assert_allclose(
        ours.predict(x_new, verbose=0), theirs.predict(x_new, verbose=0), atol=1e-5
    )


def test_variables_and_their_trainability():
    layer = BatchNorm()
    layer.build((None, 4))
    assert [v.name for v in layer.trainable_weights] == ["gamma", "beta"]
    assert [v.name for v in layer.non_trainable_weights] == ["moving_mean", "moving_variance"]
    bare = BatchNorm(center=False, scale=False)
    bare.build((None, 4))
    assert bare.gamma is None and bare.beta is None and not bare.trainable_weights


def test_initializers_regularizers_and_constraints_as_keras(rng):
    kwargs = dict(
        gamma_initializer=keras.initializers.Constant(2.0),
        beta_initializer=keras.initializers.Constant(-1.0),
        moving_mean_initializer=keras.initializers.Constant(3.0),
        moving_variance_initializer=keras.initializers.Constant(4.0),
        gamma_regularizer=keras.regularizers.L2(0.1),
        beta_regularizer=keras.regularizers.L1(0.2),
        gamma_constraint=keras.constraints.NonNeg(),
        beta_constraint=keras.constraints.MaxNorm(1.0),
    )
    theirs, ours = pair(**kwargs)
    x = off_centre(rng, (8, 3))
    np.testing.assert_allclose(np_(ours(x)), np_(theirs(x)), atol=1e-6)
    np.testing.assert_allclose(np_(ours(x)), 2.0 * (x - 3.0) / np.sqrt(4.001) - 1.0, rtol=1e-5)
    np.testing.assert_allclose(sum(np_(l) for l in ours.losses), sum(np_(l) for l in theirs.losses))
    assert float(sum(np_(l) for l in ours.losses)) == pytest.approx(0.1 * 4 * 3 + 0.2 * 3)
    assert ours.gamma.constraint is ours.gamma_constraint


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_half_precision_inputs_are_computed_in_float32(rng, policy):
    x = rng.normal(loc=50.0, scale=3.0, size=(64, 4)).astype("float32")
    half = BatchNorm(dtype=policy)
    full = BatchNorm()
    out_half = half(x, training=True)
    assert keras.backend.standardize_dtype(out_half.dtype) == policy.split("_")[1]
    assert keras.backend.standardize_dtype(half.moving_mean.dtype) == "float32"
    np.testing.assert_allclose(
        np_(out_half).astype("float32"), np_(full(x, training=True)), atol=0.05
    )
    # The statistics themselves are float32-accurate, not half-accurate.
    np.testing.assert_allclose(np_(half.moving_mean), np_(full.moving_mean), rtol=1e-3)


def test_mask_leaves_positions_out_of_the_statistics_as_keras(rng):
    x = off_centre(rng, (4, 6, 3))
    mask = rng.random((4, 6)) > 0.3
    theirs, ours = pair(momentum=0.5)
    np.testing.assert_allclose(
        np_(ours(x, training=True, mask=mask)), np_(theirs(x, training=True, mask=mask)), atol=1e-4
    )
    np.testing.assert_allclose(np_(ours.moving_mean), np_(theirs.moving_mean), rtol=1e-5)
    with pytest.raises(ValueError, match="one dimension less"):
        ours(x, training=True, mask=mask[..., None])


def test_config_round_trip(rng):
    layer = BatchNorm(
        axis=1,
        momentum=0.9,
        epsilon=1e-4,
        center=False,
        gamma_regularizer=keras.regularizers.L2(0.01),
        name="bn",
    )
    config = layer.get_config()
    clone = BatchNorm.from_config(config)
    assert clone.get_config() == config
    assert config["axis"] == 1 and config["momentum"] == 0.9 and config["center"] is False
    # The same keys as Keras's layer, less the out-of-scope ones.
    keras_keys = set(keras.layers.BatchNormalization().get_config())
    assert set(config) == keras_keys - {
        "renorm",
        "renorm_clipping",
        "renorm_momentum",
        "synchronized",
    }


def test_save_and_load_in_the_keras_format(rng, tmp_path):
    keras.utils.set_random_seed(3)
    model = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.Conv2D(4, 3),
            BatchNorm(momentum=0.5),
            keras.layers.Flatten(),
            keras.layers.Dense(3),
        ]
    )
    model.compile(optimizer="adam", loss="mse")
    x = rng.random((16, 28, 28, 1)).astype("float32")
    model.fit(x, rng.random((16, 3)), epochs=2, verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.layers[1], BatchNorm)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert len(loaded.get_weights()) == len(model.get_weights()) == 8  # conv 2, BN 4, dense 2
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_keras_accepts_nonsense_that_we_refuse(rng):
    """Keras builds these layers without a word and then computes garbage; ours refuses."""
    x = rng.normal(size=(32, 3)).astype("float32")  # variance about 1 < |epsilon|
    silly = keras.layers.BatchNormalization(epsilon=-1.0)
    assert np.isnan(np_(silly(x, training=True))).any()
    keras.layers.BatchNormalization(momentum=2.0)  # accepted as well
    with pytest.raises(ValueError, match="epsilon must be a finite number > 0, got -1.0"):
        BatchNorm(epsilon=-1.0)
    with pytest.raises(ValueError, match="epsilon must be a finite number > 0, got 0"):
        BatchNorm(epsilon=0)
    with pytest.raises(ValueError, match=r"momentum must be a number in \[0, 1\], got 2.0"):
        BatchNorm(momentum=2.0)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"axis": 1.5}, TypeError, "axis must be an integer, got 1.5"),
        ({"axis": "channels"}, TypeError, "axis must be an integer"),
        ({"momentum": -0.1}, ValueError, "momentum must be"),
        ({"epsilon": float("nan")}, ValueError, "epsilon"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        BatchNorm(**kwargs)


OUT_OF_SCOPE = ["renorm", "renorm_clipping", "renorm_momentum", "synchronized"]


def _keras_default(name):
    return inspect.signature(keras.layers.BatchNormalization.__init__).parameters[name].default


@pytest.mark.parametrize(
    "names", [[n] for n in OUT_OF_SCOPE] + [OUT_OF_SCOPE], ids=OUT_OF_SCOPE + ["all four"]
)
def test_out_of_scope_arguments_at_keras_defaults_are_accepted(rng, names):
    """Code written for Keras's layer passes them at their defaults: a drop-in accepts that."""
    defaults = {name: _keras_default(name) for name in names}
    given = BatchNorm(momentum=0.5, name="given", **defaults)
    plain = BatchNorm(momentum=0.5, name="plain")
    assert {**given.get_config(), "name": "plain"} == plain.get_config()
    x = off_centre(rng, (8, 3))
    np.testing.assert_array_equal(np_(given(x, training=True)), np_(plain(x, training=True)))
    np.testing.assert_array_equal(np_(given.moving_variance), np_(plain.moving_variance))


def test_the_configuration_of_a_keras_layer_builds_ours():
    """Keras's config holds the four out-of-scope arguments at their defaults."""
    config = keras.layers.BatchNormalization(axis=1, momentum=0.9, name="bn").get_config()
    assert {name: config[name] for name in OUT_OF_SCOPE} == {
        name: _keras_default(name) for name in OUT_OF_SCOPE
    }
    ours = BatchNorm.from_config(config)
    assert ours.get_config() == {k: v for k, v in config.items() if k not in OUT_OF_SCOPE}


REFUSED = [
    ("renorm", True),
    ("renorm", 0),
    ("renorm_clipping", {"rmax": 3.0}),
    ("renorm_momentum", 0.9),
    ("synchronized", True),
]


@pytest.mark.parametrize("name, value", REFUSED, ids=[f"{n}={v!r}" for n, v in REFUSED])
def test_out_of_scope_arguments_at_other_values_are_refused(name, value):
    """The refusal names the argument, the value given and the one value accepted."""
    expected = (
        f"{name}={value!r} is not supported by bncourse's BatchNorm",
        f"only the default {name}={_keras_default(name)!r} is accepted",
    )
    with pytest.raises(ValueError) as excinfo:
        BatchNorm(**{name: value})
    assert all(part in str(excinfo.value) for part in expected), str(excinfo.value)


@pytest.mark.parametrize(
    "kwargs",
    [{"renorm": True}, {"no_such_argument": 1}],
    ids=["refused by BatchNorm", "refused by keras.layers.Layer"],
)
def test_a_layer_whose_constructor_raised_still_has_a_repr(kwargs):
    """Tracebacks and debuggers show the half-made object (pytest --showlocals does)."""
    with pytest.raises(ValueError) as excinfo:
        BatchNorm(**kwargs)
    half_made = [
        entry.locals["self"]
        for entry in excinfo.traceback
        if isinstance(entry.locals.get("self"), BatchNorm)
    ]
    assert half_made
    assert repr(half_made[0]) == "<BatchNorm, not constructed: its __init__ raised>"
    assert "raised in repr()" not in str(excinfo.getrepr(showlocals=True))
    assert repr(BatchNorm(name="whole")) == "<BatchNorm name=whole, built=False>"


def test_axis_out_of_range_for_the_input():
    with pytest.raises(ValueError, match=r"axis=3 is out of range for inputs of shape \(None, 4\)"):
        BatchNorm(axis=3).build((None, 4))
    with pytest.raises(ValueError, match="batch axis"):
        BatchNorm(axis=0).build((None, 4))
