"""The tutorials' architectures: layers in order, biases, and parameter counts by hand."""

import numpy as np
import pytest

import keras

from bncourse import models
from bncourse.keras_bn import BatchNorm

pytestmark = pytest.mark.keras_backend


def counts(model):
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    frozen = sum(int(np.prod(w.shape)) for w in model.non_trainable_weights)
    return trainable, frozen


def kinds(model):
    return [type(layer).__name__ for layer in model.layers]


# Dense layers of the MLP: inputs x outputs (+ bias).
MLP_KERNELS = 784 * 300 + 300 * 200 + 200 * 100 + 100 * 10
MLP_HIDDEN = 300 + 200 + 100


def test_mlp_without_bn():
    model = models.build_mlp()
    assert kinds(model) == ["Flatten"] + ["Dense"] * 4
    assert counts(model) == (MLP_KERNELS + MLP_HIDDEN + 10, 0)
    assert model.output_shape == (None, 10)


def test_mlp_bn_before_the_relu_drops_the_biases():
    model = models.build_mlp("before")
    assert kinds(model) == ["Flatten"] + ["Dense", "BatchNormalization", "Activation"] * 3 + [
        "Dense"
    ]
    assert [layer.use_bias for layer in model.layers if isinstance(layer, keras.layers.Dense)] == [
        False,
        False,
        False,
        True,
    ]
    # gamma and beta trainable, moving mean and variance not, per hidden unit.
    assert counts(model) == (MLP_KERNELS + 10 + 2 * MLP_HIDDEN, 2 * MLP_HIDDEN)


def test_mlp_bn_after_the_relu_keeps_the_biases():
    model = models.build_mlp("after")
    assert kinds(model) == ["Flatten"] + ["Dense", "BatchNormalization"] * 3 + ["Dense"]
    assert counts(model) == (MLP_KERNELS + MLP_HIDDEN + 10 + 2 * MLP_HIDDEN, 2 * MLP_HIDDEN)


def test_use_bias_can_be_forced():
    model = models.build_mlp("before", use_bias=True)
    assert all(layer.use_bias for layer in model.layers if isinstance(layer, keras.layers.Dense))
    assert counts(models.build_mlp(use_bias=False))[0] == MLP_KERNELS + 10


# CNN: conv1 3x3x1x32, conv2 3x3x32x64; 28 -> 26 -> pool 13 -> 11 -> pool 5: 5*5*64 = 1600.
CNN_KERNELS = 3 * 3 * 1 * 32 + 3 * 3 * 32 * 64 + 1600 * 256 + 256 * 10
CNN_BIASES = 32 + 64 + 256 + 10


def test_cnn_without_bn():
    model = models.build_cnn()
    assert kinds(model) == [
        "Conv2D",
        "MaxPooling2D",
        "Conv2D",
        "MaxPooling2D",
        "Flatten",
        "Dense",
        "Dense",
    ]
    assert counts(model) == (CNN_KERNELS + CNN_BIASES, 0)


def test_cnn_tutorial_placement_has_five_bn_layers():
    model = models.build_cnn("after")
    assert kinds(model) == [
        "Conv2D",
        "BatchNormalization",
        "MaxPooling2D",
        "BatchNormalization",
        "Conv2D",
        "BatchNormalization",
        "MaxPooling2D",
        "BatchNormalization",
        "Flatten",
        "Dense",
        "BatchNormalization",
        "Dense",
    ]
    bn_channels = 32 + 32 + 64 + 64 + 256
    assert counts(model) == (CNN_KERNELS + CNN_BIASES + 2 * bn_channels, 2 * bn_channels)


def test_cnn_bn_before_the_activations():
    model = models.build_cnn("before")
    assert kinds(model) == [
        "Conv2D",
        "BatchNormalization",
        "Activation",
        "MaxPooling2D",
        "Conv2D",
        "BatchNormalization",
        "Activation",
        "MaxPooling2D",
        "Flatten",
        "Dense",
        "BatchNormalization",
        "Activation",
        "Dense",
    ]
    bn_channels = 32 + 64 + 256
    assert counts(model) == (CNN_KERNELS + 10 + 2 * bn_channels, 2 * bn_channels)


def test_small_model():
    model = models.build_small()
    assert kinds(model) == ["Dense", "BatchNormalization", "Dense"]
    assert counts(model) == (64 * 32 + 32 + 2 * 32 + 32 * 10 + 10, 2 * 32)
    assert counts(models.build_small(None)) == (64 * 32 + 32 + 32 * 10 + 10, 0)


@pytest.mark.parametrize("build", [models.build_mlp, models.build_cnn, models.build_small])
def test_bn_layer_choice(build):
    model = build("before", bn_layer="bncourse")
    bns = [layer for layer in model.layers if isinstance(layer, BatchNorm)]
    assert bns and not any(
        isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers
    )
    custom = build("before", bn_layer=lambda name: BatchNorm(momentum=0.9, name=name))
    assert {layer.momentum for layer in custom.layers if isinstance(layer, BatchNorm)} == {0.9}


def test_same_seed_same_model():
    keras.utils.set_random_seed(5)
    a = models.build_mlp("after").get_weights()
    keras.utils.set_random_seed(5)
    b = models.build_mlp("after").get_weights()
    assert len(a) == len(b) == 20  # 4 Dense (kernel, bias), 3 BN (4 variables each)
    for wa, wb in zip(a, b):
        np.testing.assert_array_equal(wa, wb)


def test_models_are_not_compiled_and_predict():
    model = models.build_cnn("after")
    assert not model.compiled
    out = model.predict(np.zeros((2, 28, 28, 1), "float32"), verbose=0)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: models.build_mlp("middle"), "bn must be None, 'before' or 'after'"),
        (lambda: models.build_cnn("after", bn_layer="torch"), "bn_layer must be 'keras'"),
    ],
)
def test_bad_options(call, match):
    with pytest.raises(ValueError, match=match):
        call()
