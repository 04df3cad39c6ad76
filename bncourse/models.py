"""The tutorials' architectures, with and without Batch Normalization.

Each builder returns a Keras model that is built but not compiled. ``bn`` chooses where BN
goes; ``bn_layer`` chooses whose BN it is: ``"keras"`` for
``keras.layers.BatchNormalization``, ``"bncourse"`` for :class:`bncourse.keras_bn.BatchNorm`,
or any callable that takes ``name=`` and returns a layer.

Placements, for a hidden layer with a ReLU:

* ``bn=None``:     Dense(relu)
* ``bn="before"``: Dense(use_bias=False) -> BN -> ReLU   (BN's beta replaces the bias)
* ``bn="after"``:  Dense(relu) -> BN                      (the tutorials' CNN placement)
"""

from __future__ import annotations

import keras

from bncourse.keras_bn import BatchNorm

__all__ = ["BN_PLACEMENTS", "build_cnn", "build_mlp", "build_small", "make_bn_layer"]

BN_PLACEMENTS = (None, "before", "after")


def make_bn_layer(bn_layer, name: str):
    """A BN layer of the requested kind: 'keras', 'bncourse' or a callable(name=...)."""
    if bn_layer == "keras":
        return keras.layers.BatchNormalization(name=name)
    if bn_layer == "bncourse":
        return BatchNorm(name=name)
    if callable(bn_layer):
        return bn_layer(name=name)
    raise ValueError(
        f"bn_layer must be 'keras', 'bncourse' or a callable returning a layer, got {bn_layer!r}"
    )


def _check_bn(bn):
    if bn not in BN_PLACEMENTS:
        raise ValueError(f"bn must be None, 'before' or 'after', got {bn!r}")


def _hidden(layer_cls, units_arg, *, bn, bn_layer, use_bias, name, **kwargs):
    """One hidden layer with a ReLU, and BN where ``bn`` puts it."""
    if bn == "before":
        bias = False if use_bias is None else use_bias
        return [
            layer_cls(units_arg, use_bias=bias, name=name, **kwargs),
            make_bn_layer(bn_layer, f"{name}_bn"),
            keras.layers.Activation("relu", name=f"{name}_relu"),
        ]
    bias = True if use_bias is None else use_bias
    layers = [layer_cls(units_arg, activation="relu", use_bias=bias, name=name, **kwargs)]
    if bn == "after":
        layers.append(make_bn_layer(bn_layer, f"{name}_bn"))
    return layers


def build_mlp(
    bn=None,
    *,
    bn_layer="keras",
    use_bias=None,
    hidden_units=(300, 200, 100),
    input_shape=(28, 28),
    num_classes=10,
    kernel_initializer="glorot_uniform",
    name=None,
):
    """The first tutorial's MLP: Flatten, Dense 300, 200, 100 (ReLU), Dense 10 softmax.

    Args:
        bn: None, 'before' or 'after' the ReLU of every hidden layer.
        bn_layer: 'keras', 'bncourse' or a callable(name=...) returning a BN layer.
        use_bias: bias of the hidden Dense layers. None (default) means False exactly where
            BN follows the Dense layer directly (``bn='before'``), True elsewhere.
        hidden_units: sizes of the hidden layers.
        input_shape: shape of one input image.
        num_classes: size of the softmax output.
        kernel_initializer: initializer of the hidden Dense kernels.
        name: model name; defaults to ``mlp_<placement>``.
    """
    _check_bn(bn)
    layers = [keras.Input(shape=input_shape), keras.layers.Flatten(name="flatten")]
    for i, units in enumerate(hidden_units, start=1):
        layers += _hidden(
            keras.layers.Dense,
            units,
            bn=bn,
            bn_layer=bn_layer,
            use_bias=use_bias,
            name=f"dense{i}",
            kernel_initializer=kernel_initializer,
        )
    layers.append(keras.layers.Dense(num_classes, activation="softmax", name="output"))
    return keras.Sequential(layers, name=name or f"mlp_{bn or 'nobn'}")


def build_cnn(
    bn=None,
    *,
    bn_layer="keras",
    use_bias=None,
    input_shape=(28, 28, 1),
    num_classes=10,
    name=None,
):
    """The tutorials' CNN: Conv 32, MaxPool, Conv 64, MaxPool, Flatten, Dense 256, Dense 10.

    Convolutions are 3x3 with 'valid' padding, pools 2x2, activations ReLU.

    Args:
        bn: None (no BN at all, the baseline); 'after', the tutorials' placement: BN after
            each activation and after each pooling (five BN layers); or 'before' each
            activation, with ``use_bias=False`` in the layer before BN (three BN layers).
        bn_layer: 'keras', 'bncourse' or a callable(name=...) returning a BN layer.
        use_bias: bias of the Conv and hidden Dense layers; None means False exactly where
            BN follows the layer directly.
        input_shape: shape of one input image, channels last.
        num_classes: size of the softmax output.
        name: model name; defaults to ``cnn_<placement>``.
    """
    _check_bn(bn)
    common = {"bn": bn, "bn_layer": bn_layer, "use_bias": use_bias}
    layers = [keras.Input(shape=input_shape)]
    for i, filters in enumerate((32, 64), start=1):
        layers += _hidden(keras.layers.Conv2D, filters, kernel_size=3, name=f"conv{i}", **common)
        layers.append(keras.layers.MaxPooling2D(2, name=f"pool{i}"))
        if bn == "after":
            layers.append(make_bn_layer(bn_layer, f"pool{i}_bn"))
    layers.append(keras.layers.Flatten(name="flatten"))
    layers += _hidden(keras.layers.Dense, 256, name="dense1", **common)
    layers.append(keras.layers.Dense(num_classes, activation="softmax", name="output"))
    return keras.Sequential(layers, name=name or f"cnn_{bn or 'nobn'}")


def build_small(
    bn="after", *, bn_layer="keras", use_bias=None, input_dim=64, num_classes=10, name=None
):
    """The toy model: Dense 32 on 64 inputs, BN, Dense 10 softmax.

    Args:
        bn: 'after' (default: Dense 32 with ReLU, then BN), 'before' the ReLU, or None.
        bn_layer: 'keras', 'bncourse' or a callable(name=...) returning a BN layer.
        use_bias: bias of the Dense 32; None means False exactly where BN follows it.
        input_dim: number of input features.
        num_classes: size of the softmax output.
        name: model name; defaults to ``small_<placement>``.
    """
    _check_bn(bn)
    layers = [keras.Input(shape=(input_dim,))]
    layers += _hidden(
        keras.layers.Dense, 32, bn=bn, bn_layer=bn_layer, use_bias=use_bias, name="dense1"
    )
    layers.append(keras.layers.Dense(num_classes, activation="softmax", name="output"))
    return keras.Sequential(layers, name=name or f"small_{bn or 'nobn'}")
