"""Folding BN into neighbouring layers: each rule, the cases that must not fold, real data."""

import warnings

import numpy as np
import pytest

import keras
from keras import layers

from bncourse import data, models
from bncourse.fold import ChannelAffine, bn_affine, fold_batchnorm
from bncourse.keras_bn import BatchNorm

pytestmark = pytest.mark.keras_backend


def randomise_bn(model, rng, negative_gamma=False):
    """Give every BN layer statistics and parameters far from their initial values."""
    for layer in model.layers:
        if isinstance(layer, (layers.BatchNormalization, BatchNorm)):
            c = layer.moving_mean.shape[0]
            gamma = rng.uniform(0.5, 1.5, c)
            if negative_gamma:
                gamma[0] = -gamma[0]
            layer.gamma.assign(gamma.astype("float32"))
            layer.beta.assign(rng.normal(0, 0.5, c).astype("float32"))
            layer.moving_mean.assign(rng.normal(0, 0.5, c).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, c).astype("float32"))
    return model


def seq(*stack, input_shape):
    keras.utils.set_random_seed(11)
    return keras.Sequential([keras.Input(input_shape), *stack])


def bn_count(model):
    return sum(isinstance(l, (layers.BatchNormalization, BatchNorm)) for l in model.layers)


def assert_same_predictions(model, folded, x, atol=1e-5):
    expected = keras.ops.convert_to_numpy(model(x, training=False))
    got = keras.ops.convert_to_numpy(folded(x, training=False))
    np.testing.assert_allclose(got, expected, atol=atol, rtol=1e-5)


def fold_quietly(model):
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # an exact fold must not warn
        return fold_batchnorm(model, return_report=True)


def test_bn_affine_is_the_inference_map(rng):
    layer = BatchNorm()
    layer.build((None, 3))
    randomise_bn(keras.Sequential([keras.Input((3,)), layer]), rng)
    s, t = bn_affine(layer)
    x = rng.normal(size=(5, 3)).astype("float32")
    np.testing.assert_allclose(s * x + t, keras.ops.convert_to_numpy(layer(x)), rtol=1e-5)


@pytest.mark.parametrize("use_bias", [True, False])
@pytest.mark.parametrize("bn_cls", [layers.BatchNormalization, BatchNorm])
def test_backward_into_dense(rng, use_bias, bn_cls):
    model = randomise_bn(
        seq(
            layers.Dense(6, use_bias=use_bias),
            bn_cls(),
            layers.Activation("relu"),
            layers.Dense(2),
            input_shape=(4,),
        ),
        rng,
    )
    folded, report = fold_quietly(model)
    assert bn_count(folded) == 0
    assert report.folded == [([model.layers[1].name], model.layers[0].name, "backward")]
    assert folded.layers[0].use_bias
    assert_same_predictions(model, folded, rng.normal(size=(32, 4)).astype("float32"))


def test_backward_into_conv2d(rng):
    model = randomise_bn(
        seq(
            layers.Conv2D(5, 3, padding="same", use_bias=False),
            layers.BatchNormalization(),
            layers.ReLU(),
            layers.Flatten(),
            layers.Dense(2),
            input_shape=(8, 8, 2),
        ),
        rng,
    )
    folded, report = fold_quietly(model)
    assert bn_count(folded) == 0 and report.folded[0][2] == "backward"
    assert_same_predictions(model, folded, rng.normal(size=(4, 8, 8, 2)).astype("float32"))


def test_forward_into_dense(rng):
    model = randomise_bn(
        seq(
            layers.Dense(6, activation="relu"),
            layers.BatchNormalization(),
            layers.Dense(3),
            input_shape=(4,),
        ),
        rng,
    )
    folded, report = fold_quietly(model)
    assert [type(l).__name__ for l in folded.layers] == ["Dense", "Dense"]
    assert report.folded[0][2] == "forward"
    assert_same_predictions(model, folded, rng.normal(size=(32, 4)).astype("float32"))


def test_forward_through_flatten_tiles_in_channels_last_order(rng):
    model = randomise_bn(
        seq(
            layers.Conv2D(3, 3, activation="relu"),
            layers.BatchNormalization(),
            layers.Flatten(),
            layers.Dense(4),
            input_shape=(6, 5, 2),
        ),
        rng,
    )
    folded, _ = fold_quietly(model)
    assert bn_count(folded) == 0
    assert_same_predictions(model, folded, rng.normal(size=(8, 6, 5, 2)).astype("float32"))


def test_forward_through_max_pooling_into_a_valid_conv(rng):
    model = randomise_bn(
        seq(
            layers.Conv2D(4, 3, activation="relu"),
            layers.BatchNormalization(),
            layers.MaxPooling2D(2),
            layers.BatchNormalization(),
            layers.Conv2D(3, 3),
            input_shape=(12, 12, 1),
        ),
        rng,
    )
    folded, report = fold_quietly(model)
    assert [type(l).__name__ for l in folded.layers] == ["Conv2D", "MaxPooling2D", "Conv2D"]
    # The two BN layers composed into one affine, folded forward into the second conv.
    assert report.folded == [
        ([model.layers[1].name, model.layers[3].name], model.layers[4].name, "forward")
    ]
    assert_same_predictions(model, folded, rng.normal(size=(4, 12, 12, 1)).astype("float32"))


def test_consecutive_bn_layers_compose(rng):
    model = randomise_bn(
        seq(
            layers.Dense(5, activation="relu"),
            layers.BatchNormalization(),
            BatchNorm(),
            layers.Dropout(0.5),
            layers.Dense(2),
            input_shape=(3,),
        ),
        rng,
    )
    folded, report = fold_quietly(model)
    assert [type(l).__name__ for l in folded.layers] == ["Dense", "Dense"]  # dropout gone too
    assert len(report.folded) == 1 and len(report.folded[0][0]) == 2
    assert_same_predictions(model, folded, rng.normal(size=(16, 3)).astype("float32"))


def test_negative_scale_before_max_pooling_is_not_folded(rng):
    model = randomise_bn(
        seq(
            layers.Conv2D(3, 3, activation="relu"),
            layers.BatchNormalization(),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dense(2),
            input_shape=(8, 8, 1),
        ),
        rng,
        negative_gamma=True,
    )
    with pytest.warns(UserWarning, match="could not fold batch_normalization.*negative scale"):
        folded, report = fold_batchnorm(model, return_report=True)
    assert [type(l).__name__ for l in folded.layers] == [
        "Conv2D",
        "ChannelAffine",
        "MaxPooling2D",
        "Flatten",
        "Dense",
    ]
    assert "negative scale" in report.unfolded[0][1]
    x = rng.normal(size=(8, 8, 8, 1)).astype("float32")
    assert_same_predictions(model, folded, x)
    # The rule matters: pooling first and then applying the affine gives another answer.
    s, t = bn_affine(model.layers[1])
    conv = keras.ops.convert_to_numpy(model.layers[0](x))
    wrong = keras.ops.convert_to_numpy(layers.MaxPooling2D(2)(conv)) * s + t
    right = keras.ops.convert_to_numpy(layers.MaxPooling2D(2)(conv * s + t))
    assert np.max(np.abs(wrong - right)) > 1e-2


def test_same_padding_is_not_folded_forward(rng):
    model = randomise_bn(
        seq(
            layers.Conv2D(3, 3, activation="relu"),
            layers.BatchNormalization(),
            layers.Conv2D(2, 3, padding="same"),
            input_shape=(8, 8, 1),
        ),
        rng,
    )
    with pytest.warns(UserWarning, match="pads with zeros"):
        folded = fold_batchnorm(model)
    assert isinstance(folded.layers[1], ChannelAffine)
    assert_same_predictions(model, folded, rng.normal(size=(4, 8, 8, 1)).astype("float32"))


def test_bn_at_the_end_becomes_an_affine_layer(rng, tmp_path):
    model = randomise_bn(
        seq(layers.Dense(4, activation="relu"), layers.BatchNormalization(), input_shape=(3,)), rng
    )
    with pytest.warns(UserWarning, match="at the end of the model"):
        folded = fold_batchnorm(model)
    assert isinstance(folded.layers[-1], ChannelAffine)
    x = rng.normal(size=(8, 3)).astype("float32")
    assert_same_predictions(model, folded, x)
    folded.save(tmp_path / "folded.keras")  # the affine layer saves and loads
    np.testing.assert_array_equal(
        keras.saving.load_model(tmp_path / "folded.keras").predict(x, verbose=0),
        folded.predict(x, verbose=0),
    )


def test_only_sequential_models():
    inputs = keras.Input((3,))
    functional = keras.Model(inputs, layers.Dense(2)(inputs))
    with pytest.raises(TypeError, match="keras.Sequential"):
        fold_batchnorm(functional)


@pytest.mark.parametrize("bn", ["before", "after"])
def test_mlp_folds_in_both_placements(rng, bn):
    model = randomise_bn(models.build_mlp(bn), rng)
    folded, report = fold_quietly(model)
    assert bn_count(folded) == 0 and not report.unfolded
    assert folded.count_params() == models.build_mlp(None).count_params()
    (_, _), (x_test, _) = data.load_dataset("fashion_mnist")
    assert_same_predictions(model, folded, data.scale_images(x_test[:2000]))


@pytest.mark.slow
@pytest.mark.parametrize("bn", ["after", "before"])
def test_trained_cnn_folds_exactly_on_real_fashion_mnist(bn):
    """A CNN trained briefly on Fashion-MNIST folds to the no-BN architecture, same output."""
    (x_train, y_train), (x_test, _) = data.load_dataset("fashion_mnist")
    x_train = data.add_channel_axis(data.scale_images(x_train[:3000]))
    x_test = data.add_channel_axis(data.scale_images(x_test))
    keras.utils.set_random_seed(0)
    model = models.build_cnn(bn)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x_train, y_train[:3000], batch_size=250, epochs=1, verbose=0)
    folded, report = fold_quietly(model)
    baseline = models.build_cnn(None)
    assert [type(l) for l in folded.layers] == [type(l) for l in baseline.layers]
    assert folded.count_params() == baseline.count_params()
    assert not report.unfolded
    expected = model.predict(x_test, batch_size=1000, verbose=0)
    got = folded.predict(x_test, batch_size=1000, verbose=0)
    assert np.max(np.abs(got - expected)) <= 1e-5
