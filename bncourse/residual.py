"""Residual networks with BN, and the ways to train them deep without it.

:func:`build_resnet` builds one small residual network for 28x28x1 images (a stem
convolution, ``blocks`` residual blocks of two 3x3 convolutions, global average pooling, a
dense softmax), normalised in one of the ways of :data:`NORMS`:

* ``"none"``: no normalisation, He-normal weights, biases;
  block ``y = relu(x + conv(relu(conv(x))))``;
* ``"bn"``: BN on the branch, before the addition (He et al. 2016);
  block ``y = relu(x + BN(conv(relu(BN(conv(x))))))``;
* ``"bn-zero-gamma"``: the same with the last BN of each branch starting at gamma = 0
  (Goyal et al. 2017): every block starts as the identity;
* ``"bn-after-add"``: BN after the addition, ``y = relu(BN(x + conv(relu(BN(conv(x))))))``,
  the placement that normalises the identity path too (for comparison only);
* ``"fixup"``: no normalisation; the branch's first convolution He-normal scaled by
  ``L ** (-1 / (2m - 2))``, its last convolution and the classifier zero, scalar biases
  and a scalar multiplier (Zhang et al. 2019), :func:`fixup_scale`, :class:`ScalarAffine`;
  its authors train the scalars at a tenth of the learning rate (:class:`SGDWithMultipliers`);
* ``"selu"``: no normalisation; SELU activations and LeCun-normal weights (Klambauer et
  al. 2017), :func:`selu`;
* ``"nf"``: a normaliser-free network (Brock et al. 2021): pre-activation blocks
  ``h + alpha * f(h / beta)`` with the expected standard deviation ``beta`` of ``h``,
  convolutions with scaled weight standardisation (:class:`WSConv2D`), ReLUs multiplied
  by :func:`relu_gain`, trained with adaptive gradient clipping (:class:`SGDWithAGC`).

:func:`block_statistics` measures how the signal travels through the blocks at
initialisation. Every layer here uses the public Keras 3 API; :class:`SGDWithAGC` clips
inside ``optimizer.apply``, which the TensorFlow backend's ``fit`` calls.
"""

from __future__ import annotations

import math
import numbers

import keras
import numpy as np
from keras import ops

__all__ = [
    "BN_MOMENTUM",
    "NF_ALPHA",
    "NORMS",
    "SELU_ALPHA",
    "SELU_SCALE",
    "SGDWithAGC",
    "SGDWithMultipliers",
    "ScalarAffine",
    "WSConv2D",
    "adaptive_clip",
    "block_statistics",
    "build_resnet",
    "fixup_scale",
    "nf_betas",
    "relu_gain",
    "selu",
    "standardize_kernel",
    "unitwise_norm",
]

NORMS = ("none", "bn", "bn-zero-gamma", "bn-after-add", "fixup", "selu", "nf")
BN_MOMENTUM = 0.9  # of the BN layers here, not Keras's 0.99: see _bn
NF_ALPHA = 0.2  # variance added per NF block, the value of Brock et al. (2021)
# SELU's constants alpha_01 and lambda_01 (Klambauer et al. 2017)
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


def _positive(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0:
        raise ValueError(f"{name} must be a number > 0, got {value!r}")
    return float(value)


# --------------------------------------------------------------------------- the maths


def relu_gain() -> float:
    """The gain gamma that gives ``gamma * relu(z)`` unit variance for z ~ N(0, 1).

    ``E[relu(z)] = 1 / sqrt(2 pi)`` and ``E[relu(z)^2] = 1 / 2``, so
    ``Var[relu(z)] = (1 - 1 / pi) / 2`` and ``gamma = sqrt(2 / (1 - 1 / pi))``.
    """
    return math.sqrt(2.0 / (1.0 - 1.0 / math.pi))


def selu(x):
    """SELU, ``scale * (x if x > 0 else alpha * (exp(x) - 1))``, on a NumPy array."""
    x = np.asarray(x, dtype=np.float64)
    return SELU_SCALE * np.where(x > 0, x, SELU_ALPHA * np.expm1(np.minimum(x, 0.0)))


def fixup_scale(blocks: int, layers_per_branch: int = 2) -> float:
    """Fixup's factor ``L ** (-1 / (2m - 2))`` on the He-normal standard deviation of the
    branch's layers before the last, for ``L`` residual branches of ``m`` layers each."""
    if isinstance(blocks, bool) or not isinstance(blocks, numbers.Integral) or blocks < 1:
        raise ValueError(f"blocks must be an integer >= 1, got {blocks!r}")
    m = layers_per_branch
    if isinstance(m, bool) or not isinstance(m, numbers.Integral) or m < 2:
        raise ValueError(f"layers_per_branch must be an integer >= 2, got {m!r}")
    return float(blocks) ** (-1.0 / (2 * m - 2))


def nf_betas(blocks: int, alpha: float = NF_ALPHA) -> list:
    """The expected standard deviation of the input of each NF block,
    ``beta_l = sqrt(1 + l * alpha^2)`` for l = 0, 1, ..., when the stem's output has unit
    variance and each block adds a branch of variance ``alpha^2``."""
    alpha = _positive("alpha", alpha)
    return [math.sqrt(1.0 + i * alpha**2) for i in range(blocks)]


def standardize_kernel(kernel, gain=None, epsilon=1e-4):
    """Scaled weight standardisation of a kernel whose last axis is the output unit.

    For each output unit, with ``mean`` and the biased ``var`` over its ``fan_in`` inputs
    (every other axis)::

        w_hat = gain * (w - mean) / sqrt(max(fan_in * var, epsilon))

    so each output unit's weights have mean 0 and variance ``gain^2 / fan_in`` (as long as
    ``fan_in * var >= epsilon``).

    Args:
        kernel: tensor of shape (..., units), e.g. (kh, kw, channels_in, filters).
        gain: None or a tensor of shape (units,).
        epsilon: number > 0, a floor under ``fan_in * var``.
    """
    epsilon = _positive("epsilon", epsilon)
    shape = ops.shape(kernel)
    if len(shape) < 2:
        raise ValueError(f"kernel must have at least 2 axes, got shape {tuple(shape)}")
    axes = tuple(range(len(shape) - 1))
    fan_in = math.prod(shape[:-1])
    mean = ops.mean(kernel, axis=axes, keepdims=True)
    var = ops.mean(ops.square(kernel - mean), axis=axes, keepdims=True)  # two passes
    out = (kernel - mean) * ops.rsqrt(ops.maximum(var * fan_in, epsilon))
    return out if gain is None else out * gain


def unitwise_norm(x):
    """The norm of each output unit of a weight or gradient ``x`` (Brock et al. 2021).

    A kernel of shape (..., units) has one norm per unit, over every other axis (keeping
    them, so that the result broadcasts against ``x``); a vector or a scalar (biases,
    gains) has a single norm.
    """
    if len(ops.shape(x)) <= 1:
        return ops.sqrt(ops.sum(ops.square(x)))
    axes = tuple(range(len(ops.shape(x)) - 1))
    return ops.sqrt(ops.sum(ops.square(x), axis=axes, keepdims=True))


def adaptive_clip(grad, weight, clipping=0.01, epsilon=1e-3):
    """Adaptive gradient clipping, unit-wise.

    For each unit i, with ``max_i = clipping * max(||w_i||, epsilon)``::

        g_i <- g_i * max_i / ||g_i||   if ||g_i|| > max_i,   else g_i unchanged

    Args:
        grad: gradient of the loss with respect to ``weight``, the same shape.
        weight: the weight, shape (..., units), (units,) or ().
        clipping: lambda > 0, the largest ratio of gradient norm to weight norm.
        epsilon: number > 0 that keeps weights at zero (fresh biases) from freezing.
    """
    clipping = _positive("clipping", clipping)
    epsilon = _positive("epsilon", epsilon)
    if tuple(ops.shape(grad)) != tuple(ops.shape(weight)):
        raise ValueError(
            f"grad and weight must have one shape, got {tuple(ops.shape(grad))} and "
            f"{tuple(ops.shape(weight))}"
        )
    weight = ops.convert_to_tensor(weight)
    grad = ops.cast(grad, weight.dtype)
    max_norm = clipping * ops.maximum(unitwise_norm(weight), epsilon)
    grad_norm = unitwise_norm(grad)
    # The floor under grad_norm only avoids 0/0; where it matters the ratio is not used.
    clipped = grad * (max_norm / ops.maximum(grad_norm, 1e-6))
    return ops.where(grad_norm > max_norm, clipped, grad)


# --------------------------------------------------------------------------- layers


@keras.saving.register_keras_serializable(package="bncourse")
class WSConv2D(keras.layers.Conv2D):
    """A Conv2D whose kernel is standardised (:func:`standardize_kernel`) every time it is
    used, with a learnable gain per filter (initialised to 1).

    The stored kernel stays free; the gradient flows through the standardisation, which
    makes the layer's output invariant to the scale and offset of each filter's stored
    weights. Arguments are Conv2D's, plus ``epsilon`` (a floor under ``fan_in * var``).
    """

    def __init__(self, filters, kernel_size, *, epsilon=1e-4, **kwargs):
        super().__init__(filters, kernel_size, **kwargs)
        self.epsilon = _positive("epsilon", epsilon)

    def build(self, input_shape):
        super().build(input_shape)
        self.gain = self.add_weight(
            shape=(self.filters,), initializer="ones", name="gain", trainable=True
        )

    def convolution_op(self, inputs, kernel):
        return super().convolution_op(inputs, standardize_kernel(kernel, self.gain, self.epsilon))

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package="bncourse")
class ScalarAffine(keras.layers.Layer):
    """Fixup's scalars: ``x + bias``, or ``x * scale + bias`` with ``scale=True``; one
    learnable number each (bias starts at 0, scale at 1), shared by every feature."""

    def __init__(self, scale=False, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(scale, bool):
            raise TypeError(f"scale must be True or False, got {scale!r}")
        self.scale = scale

    def build(self, input_shape):
        self.bias = self.add_weight(shape=(), initializer="zeros", name="bias")
        if self.scale:
            self.multiplier = self.add_weight(shape=(), initializer="ones", name="multiplier")

    def call(self, inputs):
        if self.scale:
            inputs = inputs * self.multiplier
        return inputs + self.bias

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "scale": self.scale}


@keras.saving.register_keras_serializable(package="bncourse")
class SGDWithMultipliers(keras.optimizers.SGD):
    """SGD (with momentum, optionally Nesterov's) with the gradients of some variables
    multiplied by a factor before the step, which for SGD is the same as a learning rate
    that many times the base one. Fixup's authors train every bias and scalar multiplier
    at a tenth of the learning rate (Zhang et al. 2019, their code).

    Args:
        multipliers: ``{variable name: factor > 0}``, e.g. ``{"bias": 0.1}``; a variable is
            matched by its name (the last part of its path).
        The other arguments are ``keras.optimizers.SGD``'s (``weight_decay`` is refused: it
            would not be scaled alike).
    """

    def __init__(self, learning_rate=0.01, *, multipliers=None, **kwargs):
        if kwargs.get("weight_decay"):
            raise ValueError(f"weight_decay is not supported, got {kwargs['weight_decay']!r}")
        super().__init__(learning_rate=learning_rate, **kwargs)
        multipliers = dict(multipliers or {})
        for key, value in multipliers.items():
            if not isinstance(key, str):
                raise TypeError(f"multipliers must map variable names to factors, got {key!r}")
            _positive(f"multipliers[{key!r}]", value)
        self.multipliers = {k: float(v) for k, v in multipliers.items()}

    def apply(self, grads, trainable_variables=None):
        variables = trainable_variables
        if variables is None:  # fit on the JAX backend passes only the gradients
            variables = self._trainable_variables
        grads = [
            g * self.multipliers[v.name] if g is not None and v.name in self.multipliers else g
            for g, v in zip(grads, variables)
        ]
        return super().apply(grads, trainable_variables)

    def get_config(self):
        return {**super().get_config(), "multipliers": dict(self.multipliers)}


@keras.saving.register_keras_serializable(package="bncourse")
class SGDWithAGC(keras.optimizers.SGD):
    """SGD (with momentum, optionally Nesterov's) on gradients clipped by
    :func:`adaptive_clip`, unit by unit, before the update.

    Args:
        clipping: lambda > 0 of :func:`adaptive_clip`.
        agc_epsilon: its epsilon (1e-3, as Brock et al. 2021).
        exclude: names of layers whose variables are not clipped (Brock et al. leave the
            final linear layer out); a variable is matched by the layer names in its path.
        The other arguments are ``keras.optimizers.SGD``'s.
    """

    def __init__(
        self, learning_rate=0.01, *, clipping=0.01, agc_epsilon=1e-3, exclude=(), **kwargs
    ):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.clipping = _positive("clipping", clipping)
        self.agc_epsilon = _positive("agc_epsilon", agc_epsilon)
        if isinstance(exclude, str) or not all(isinstance(e, str) for e in exclude):
            raise TypeError(f"exclude must be a sequence of layer names, got {exclude!r}")
        self.exclude = tuple(exclude)

    def _clipped(self, variable) -> bool:
        # a path is "<layer>/<variable>", inside a Sequential "<model>/<layer>/<variable>"
        return not set(variable.path.split("/")[:-1]) & set(self.exclude)

    def apply(self, grads, trainable_variables=None):
        variables = trainable_variables
        if variables is None:  # fit on the JAX backend passes only the gradients
            variables = self._trainable_variables
        grads = [
            adaptive_clip(g, v, self.clipping, self.agc_epsilon)
            if g is not None and self._clipped(v)
            else g
            for g, v in zip(grads, variables)
        ]
        return super().apply(grads, trainable_variables)

    def get_config(self):
        return {
            **super().get_config(),
            "clipping": self.clipping,
            "agc_epsilon": self.agc_epsilon,
            "exclude": list(self.exclude),
        }


# --------------------------------------------------------------------------- the network


def _conv(norm, width, name, **kwargs):
    """A 3x3 'same' convolution of ``width`` filters as variant ``norm`` wants it."""
    if norm == "nf":
        return WSConv2D(
            width, 3, padding="same", kernel_initializer="he_normal", name=name, **kwargs
        )
    defaults = {
        "kernel_initializer": "lecun_normal" if norm == "selu" else "he_normal",
        # BN's beta replaces the bias of the convolution in front of it
        "use_bias": not norm.startswith("bn"),
    }
    return keras.layers.Conv2D(width, 3, padding="same", name=name, **{**defaults, **kwargs})


def _bn(name, zero_gamma=False):
    # momentum 0.9, not Keras's 0.99: runs of a few hundred steps must not leave the moving
    # statistics remembering the first steps (see the chapter on train and inference)
    return keras.layers.BatchNormalization(
        momentum=BN_MOMENTUM, gamma_initializer="zeros" if zero_gamma else "ones", name=name
    )


def _block(norm, x, width, i, blocks):
    """Residual block ``i`` (0-based) of ``blocks``, on ``x``; returns its output."""
    L = keras.layers
    p = f"block{i}"
    if norm in ("none", "selu"):
        act = "selu" if norm == "selu" else "relu"
        h = L.Activation(act, name=f"{p}_act1")(_conv(norm, width, f"{p}_conv1")(x))
        h = _conv(norm, width, f"{p}_conv2")(h)
        return L.Activation(act, name=f"{p}_out")(L.Add(name=f"{p}_add")([x, h]))
    if norm.startswith("bn"):
        h = _bn(f"{p}_bn1")(_conv(norm, width, f"{p}_conv1")(x))
        h = _conv(norm, width, f"{p}_conv2")(L.Activation("relu", name=f"{p}_act1")(h))
        if norm == "bn-after-add":
            s = _bn(f"{p}_bn2")(L.Add(name=f"{p}_add")([x, h]))
        else:
            s = L.Add(name=f"{p}_add")([x, _bn(f"{p}_bn2", norm == "bn-zero-gamma")(h)])
        return L.Activation("relu", name=f"{p}_out")(s)
    if norm == "fixup":
        init = keras.initializers.VarianceScaling(2.0 * fixup_scale(blocks) ** 2, "fan_in")
        h = ScalarAffine(name=f"{p}_bias1a")(x)
        h = _conv(norm, width, f"{p}_conv1", kernel_initializer=init, use_bias=False)(h)
        h = L.Activation("relu", name=f"{p}_act1")(ScalarAffine(name=f"{p}_bias1b")(h))
        h = ScalarAffine(name=f"{p}_bias2a")(h)
        h = _conv(norm, width, f"{p}_conv2", kernel_initializer="zeros", use_bias=False)(h)
        h = ScalarAffine(scale=True, name=f"{p}_scale")(h)  # x * multiplier + bias2b
        return L.Activation("relu", name=f"{p}_out")(L.Add(name=f"{p}_add")([x, h]))
    # nf: h + alpha * f(h / beta), f = conv(gain * relu(conv(gain * relu(.))))
    gamma, beta = relu_gain(), nf_betas(blocks)[i]
    h = L.Rescaling(1.0 / beta, name=f"{p}_downscale")(x)
    h = L.Rescaling(gamma, name=f"{p}_gain1")(L.Activation("relu", name=f"{p}_act1")(h))
    h = _conv(norm, width, f"{p}_conv1")(h)
    h = L.Rescaling(gamma, name=f"{p}_gain2")(L.Activation("relu", name=f"{p}_act2")(h))
    h = L.Rescaling(NF_ALPHA, name=f"{p}_alpha")(_conv(norm, width, f"{p}_conv2")(h))
    return L.Add(name=f"{p}_out")([x, h])


def build_resnet(
    norm="bn",
    *,
    blocks=8,
    width=16,
    stem_stride=2,
    input_shape=(28, 28, 1),
    num_classes=10,
    name=None,
):
    """A small residual network: stem, ``blocks`` residual blocks, pooling, softmax.

    The stem is a 3x3 convolution of ``width`` filters with stride ``stem_stride`` (its
    activation and BN as the variant's blocks have them; none for ``"nf"``, whose blocks
    begin with one). Each block keeps the size and width; its output layer is named
    ``block<i>_out`` and the stem's ``stem_out``. Global average pooling and a dense
    softmax close the network (``output``; zero-initialised for ``"fixup"``).

    Args:
        norm: one of :data:`NORMS` (see the module's docstring).
        blocks: number of residual blocks, >= 1.
        width: filters of every convolution, >= 1.
        stem_stride: stride of the stem convolution (2 halves each side).
        input_shape: shape of one image, channels last.
        num_classes: size of the softmax output.
        name: model name; defaults to ``resnet<blocks>_<norm>``.
    """
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {', '.join(map(repr, NORMS))}, got {norm!r}")
    for arg, value in (("blocks", blocks), ("width", width), ("stem_stride", stem_stride)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"{arg} must be an integer >= 1, got {value!r}")
    L = keras.layers
    inputs = keras.Input(shape=input_shape)
    if norm == "fixup":  # a scalar bias in place of the stem's per-filter ones
        x = _conv(norm, width, "stem_conv", strides=stem_stride, use_bias=False)(inputs)
        x = ScalarAffine(name="stem_bias")(x)
    else:
        x = _conv(norm, width, "stem_conv", strides=stem_stride)(inputs)
    if norm.startswith("bn"):
        x = _bn("stem_bn")(x)
    if norm == "nf":
        x = L.Identity(name="stem_out")(x)
    else:
        x = L.Activation("selu" if norm == "selu" else "relu", name="stem_out")(x)
    for i in range(blocks):
        x = _block(norm, x, width, i, blocks)
    if norm == "nf":
        x = L.Rescaling(relu_gain(), name="head_gain")(L.Activation("relu", name="head_act")(x))
    x = L.GlobalAveragePooling2D(name="pool")(x)
    if norm == "fixup":
        x = ScalarAffine(name="head_bias")(x)
    outputs = L.Dense(
        num_classes,
        activation="softmax",
        kernel_initializer="zeros" if norm == "fixup" else "glorot_uniform",
        name="output",
    )(x)
    return keras.Model(inputs, outputs, name=name or f"resnet{blocks}_{norm}")


def block_statistics(model, x) -> dict:
    """How the signal travels through a network of :func:`build_resnet` on inputs ``x``.

    Runs ``x`` through the network in training mode (BN with the batch's statistics, as
    while learning; its moving statistics are put back afterwards) and returns lists with
    one entry per block:

    * ``"std"``: the standard deviation of all values of the block's output (the stem's
      output first, so this list is one longer);
    * ``"skip_share"``: ``Var(x) / Var(x + branch)`` at the block's addition, the share of
      the sum's variance that the identity path carries (1: the block passes its input
      through; 1/2: input and branch weigh alike). With BN after the addition it is taken
      before that BN.
    """
    blocks = sorted(
        int(layer.name[len("block") : -len("_add")])
        for layer in model.layers
        if layer.name.startswith("block") and layer.name.endswith("_add")
    )
    if not blocks:
        blocks = sorted(
            int(layer.name[len("block") : -len("_out")])
            for layer in model.layers
            if layer.name.startswith("block") and layer.name.endswith("_out")
        )
    outs = ["stem_out"] + [f"block{i}_out" for i in blocks]
    # NF blocks end with their addition; the others add, then activate or normalise
    adds = [
        f"block{i}_add" if f"block{i}_add" in {la.name for la in model.layers} else f"block{i}_out"
        for i in blocks
    ]
    probe = keras.Model(model.input, [model.get_layer(n).output for n in outs + adds])
    saved = [v.numpy() for v in model.non_trainable_variables]
    try:
        values = [np.asarray(ops.convert_to_numpy(v), np.float64) for v in probe(x, training=True)]
    finally:
        for variable, value in zip(model.non_trainable_variables, saved):
            variable.assign(value)
    out_values, add_values = values[: len(outs)], values[len(outs) :]
    return {
        "std": [float(v.std()) for v in out_values],
        "skip_share": [
            float(out_values[i].var() / add_values[i].var()) for i in range(len(blocks))
        ],
    }
