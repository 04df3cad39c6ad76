"""Fold Batch Normalization into neighbouring layers for fast inference.

In inference a BN layer is a fixed per-channel affine map,
``y = s * x + t`` with ``s = gamma / sqrt(moving_variance + epsilon)`` and
``t = beta - s * moving_mean``, so it can be merged into a linear layer next to it:

* **backward**, into the Dense or Conv2D just before it when that layer has a linear
  activation (BN before the activation): ``W' = W * s`` on the output channels,
  ``b' = s * b + t``;
* **forward**, into the next Dense or Conv2D when only layers that commute with it come in
  between (BN after the activation): ``W' = W * s`` on the input channels,
  ``b' = b + W^T t``. It passes through ``Flatten`` (``s`` and ``t`` tiled in channels-last
  order), through ``MaxPooling2D`` when every ``s >= 0`` (a max commutes with a
  non-decreasing map, not with a decreasing one), through ``Dropout`` (the identity in
  inference), and into a Conv2D only with ``padding="valid"`` (zero padding would not be
  shifted by ``t``). Consecutive BN layers compose into one affine first.

A BN that cannot be folded exactly becomes a fixed :class:`ChannelAffine` layer, and
:func:`fold_batchnorm` says which and why.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import keras
import numpy as np

from bncourse._checks import check_integer, check_positive_integer
from bncourse.keras_bn import BatchNorm

__all__ = ["ChannelAffine", "FoldReport", "bn_affine", "fold_batchnorm"]


@keras.saving.register_keras_serializable(package="bncourse")
class ChannelAffine(keras.layers.Layer):
    """A fixed per-channel affine map: ``out = scale * x + shift`` along ``axis``.

    What a BN layer computes in inference, without its bookkeeping; its two variables are
    not trainable.

    Args:
        units: number of channels (the size of the ``axis`` dimension).
        axis: the channel axis (-1, the last, by default).
    """

    def __init__(self, units, axis=-1, **kwargs):
        super().__init__(**kwargs)
        self.units = check_positive_integer(units, "units")
        self.axis = check_integer(axis, "axis")

    def build(self, input_shape):
        if input_shape[self.axis] != self.units:
            raise ValueError(
                f"inputs have {input_shape[self.axis]} channels on axis {self.axis}, "
                f"expected {self.units}"
            )
        axis = self.axis % len(input_shape)
        self._broadcast_shape = tuple(
            self.units if i == axis else 1 for i in range(len(input_shape))
        )
        self.scale = self.add_weight(
            shape=(self.units,), name="scale", initializer="ones", trainable=False
        )
        self.shift = self.add_weight(
            shape=(self.units,), name="shift", initializer="zeros", trainable=False
        )

    def call(self, inputs):
        scale = keras.ops.reshape(keras.ops.cast(self.scale, inputs.dtype), self._broadcast_shape)
        shift = keras.ops.reshape(keras.ops.cast(self.shift, inputs.dtype), self._broadcast_shape)
        return inputs * scale + shift

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "units": self.units, "axis": self.axis}


@dataclass
class FoldReport:
    """What :func:`fold_batchnorm` did with each BN layer."""

    folded: list = field(default_factory=list)  # (bn names, target layer, "backward"/"forward")
    unfolded: list = field(default_factory=list)  # (bn names, reason)

    def __str__(self):
        lines = [
            f"folded {', '.join(names)} {how} into {target}" for names, target, how in self.folded
        ]
        lines += [f"could not fold {', '.join(names)}: {why}" for names, why in self.unfolded]
        return "\n".join(lines) or "no BN layers"


def _is_bn(layer) -> bool:
    return isinstance(layer, (keras.layers.BatchNormalization, BatchNorm))


def bn_affine(layer):
    """``(s, t)``, float64 arrays of shape (C,), with ``bn(x) = s * x + t`` in inference."""

    def value(variable):
        return np.asarray(variable.numpy(), np.float64)

    moving_mean, moving_var = value(layer.moving_mean), value(layer.moving_variance)
    gamma = value(layer.gamma) if layer.scale else np.ones_like(moving_mean)
    beta = value(layer.beta) if layer.center else np.zeros_like(moving_mean)
    s = gamma / np.sqrt(moving_var + layer.epsilon)
    return s, beta - s * moving_mean


class _Entry:
    """A layer of the folded model: its class, config and (possibly changed) weights."""

    def __init__(self, layer):
        self.layer = layer
        self.cls = type(layer)
        self.config = layer.get_config()
        self.weights = [np.asarray(w, np.float64) for w in layer.get_weights()]

    def is_linear_layer(self) -> bool:
        return isinstance(self.layer, (keras.layers.Dense, keras.layers.Conv2D))

    def kernel_and_bias(self):
        kernel = self.weights[0]
        bias = self.weights[1] if self.config.get("use_bias", True) else np.zeros(kernel.shape[-1])
        return kernel, bias

    def set_kernel_and_bias(self, kernel, bias):
        self.config["use_bias"] = True
        self.weights = [kernel, bias]

    def build(self):
        layer = self.cls.from_config(self.config)
        return layer


class _Pending:
    """An affine map ``s * x + t`` on a channel axis, waiting for a layer to go into."""

    def __init__(self, s, t, names, axis=-1):
        self.s, self.t, self.names, self.axis = s, t, list(names), axis

    def compose(self, s, t, names):
        # s2 * (s1 * x + t1) + t2
        self.s, self.t = s * self.s, s * self.t + t
        self.names += names


def _fold_backward(entry: _Entry, s, t):
    kernel, bias = entry.kernel_and_bias()
    entry.set_kernel_and_bias(kernel * s, bias * s + t)  # s broadcasts on output channels


def _fold_forward(entry: _Entry, s, t):
    kernel, bias = entry.kernel_and_bias()
    if isinstance(entry.layer, keras.layers.Dense):  # kernel (in, out)
        entry.set_kernel_and_bias(kernel * s[:, None], bias + t @ kernel)
    else:  # Conv2D kernel (kh, kw, in, out)
        entry.set_kernel_and_bias(
            kernel * s[None, None, :, None], bias + np.einsum("hwio,i->o", kernel, t)
        )


def _forward_blocker(entry: _Entry):
    """Why an affine cannot go into this Dense/Conv2D, or None if it can."""
    if isinstance(entry.layer, keras.layers.Dense):
        return None
    cfg = entry.config
    if cfg.get("padding") != "valid":
        return f"{entry.layer.name} pads with zeros (padding={cfg.get('padding')!r})"
    if cfg.get("data_format", "channels_last") != "channels_last" or cfg.get("groups", 1) != 1:
        return f"{entry.layer.name} is not a plain channels-last convolution"
    return None


def _merge_activations(entries):
    """Merge an Activation layer into the linear Dense/Conv2D before it.

    BN before the activation leaves ``Dense(linear) -> Activation``; once BN is folded
    away, ``Dense(activation)`` computes the same with one layer fewer.
    """
    merged = []
    for entry in entries:
        previous = merged[-1] if merged else None
        if (
            isinstance(entry.layer, keras.layers.Activation)
            and previous is not None
            and previous.is_linear_layer()
            and previous.config.get("activation") == "linear"
        ):
            previous.config["activation"] = entry.config["activation"]
            continue
        merged.append(entry)
    return merged


def fold_batchnorm(model, *, return_report=False):
    """A new inference-only model without BN layers that predicts what ``model`` predicts.

    Each BN layer is folded into a neighbouring Dense or Conv2D where that is exact (see the
    module docstring); one that cannot be is replaced by a :class:`ChannelAffine` layer,
    and a ``UserWarning`` names it and says why. Dropout layers are left out (they are the
    identity in inference), and an Activation layer right after a linear Dense/Conv2D is
    merged into it.

    Args:
        model: a built ``keras.Sequential`` model; BN layers may be Keras's or bncourse's,
            with the channel axis last.
        return_report: also return a :class:`FoldReport`.

    Returns:
        the folded ``keras.Sequential`` model, or ``(model, report)``.
    """
    if not isinstance(model, keras.Sequential):
        raise TypeError(
            f"fold_batchnorm takes a keras.Sequential model, got {type(model).__name__}"
        )
    if not model.built:
        raise ValueError("the model must be built (give it an Input) before folding")
    report = FoldReport()
    out: list[_Entry] = []
    shape = tuple(model.input_shape)
    pending = None
    # True while the last entry of `out` produced the current tensor directly, so that a
    # BN can go backward into it.
    adjacent = False

    def flush(reason):
        nonlocal pending
        units = pending.s.shape[0]
        affine = ChannelAffine(units, axis=pending.axis, name=f"{pending.names[0]}_affine")
        entry = _Entry.__new__(_Entry)
        entry.layer, entry.cls = affine, ChannelAffine
        entry.config = affine.get_config()
        entry.weights = [pending.s, pending.t]
        out.append(entry)
        report.unfolded.append((pending.names, reason))
        pending = None

    for layer in model.layers:
        in_shape = shape
        shape = tuple(layer.compute_output_shape(in_shape))
        if _is_bn(layer):
            if layer.axis not in (-1, len(in_shape) - 1):
                if pending:
                    flush(f"followed by {layer.name}, which normalises another axis")
                s, t = bn_affine(layer)
                pending = _Pending(s, t, [layer.name], axis=layer.axis)
                flush(f"it normalises axis {layer.axis}, not the last (channel) axis")
                adjacent = False
                continue
            s, t = bn_affine(layer)
            if pending:
                pending.compose(s, t, [layer.name])
            elif (
                adjacent
                and out[-1].is_linear_layer()
                and out[-1].config.get("activation") == "linear"
            ):
                _fold_backward(out[-1], s, t)
                report.folded.append(([layer.name], out[-1].layer.name, "backward"))
            else:
                pending = _Pending(s, t, [layer.name])
            continue
        if isinstance(layer, keras.layers.Dropout):
            continue
        entry = _Entry(layer)
        if pending:
            if isinstance(layer, keras.layers.MaxPooling2D) and np.all(pending.s >= 0):
                pass  # max(s * x + t) = s * max(x) + t for s >= 0
            elif isinstance(layer, keras.layers.MaxPooling2D):
                flush(f"a negative scale comes before the max-pooling {layer.name}")
            elif isinstance(layer, keras.layers.Flatten):
                repeats = math.prod(in_shape[1:-1])
                pending.s, pending.t = np.tile(pending.s, repeats), np.tile(pending.t, repeats)
            elif entry.is_linear_layer():
                blocker = _forward_blocker(entry)
                if blocker:
                    flush(blocker)
                else:
                    _fold_forward(entry, pending.s, pending.t)
                    report.folded.append((pending.names, layer.name, "forward"))
                    pending = None
            else:
                flush(f"{layer.name} ({type(layer).__name__}) comes next, and does not commute")
        out.append(entry)
        adjacent = True
    if pending:
        flush("it is at the end of the model: there is no layer after it")

    out = _merge_activations(out)
    layers = [keras.Input(shape=tuple(model.input_shape[1:]))]
    built = []
    for entry in out:
        layer = entry.build()
        layers.append(layer)
        built.append((layer, entry))
    folded = keras.Sequential(layers, name=f"{model.name}_folded")
    for layer, entry in built:
        targets = layer.get_weights()
        layer.set_weights([w.astype(t.dtype) for w, t in zip(entry.weights, targets)])
    for names, why in report.unfolded:
        warnings.warn(f"fold_batchnorm could not fold {', '.join(names)}: {why}", stacklevel=2)
    return (folded, report) if return_report else folded
