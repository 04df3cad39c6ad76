"""Batch Normalization as a Keras 3 layer, written from scratch with the public API.

:class:`BatchNorm` is a drop-in equivalent of ``keras.layers.BatchNormalization`` (same
arguments, defaults, variables and semantics) built from ``keras.layers.Layer``,
``add_weight``, ``keras.ops`` and ``Variable.assign`` only, so it runs on every Keras
backend (TensorFlow, JAX, PyTorch). Batch renormalisation and synchronised statistics are
out of its scope: their four arguments are accepted at Keras's defaults and refused otherwise.
"""

from __future__ import annotations

import numbers

import keras
from keras import ops

from bncourse._checks import check_epsilon, check_integer, check_momentum

__all__ = ["BatchNorm"]

# Arguments of keras.layers.BatchNormalization that are out of this layer's scope (batch
# renormalisation, statistics synchronised across devices), with Keras's defaults. Passing
# the default asks for nothing, so it is accepted: code written for Keras's layer runs.
_OUT_OF_SCOPE = {
    "renorm": False,
    "renorm_clipping": None,
    "renorm_momentum": 0.99,
    "synchronized": False,
}


def _is_default(value, default) -> bool:
    """Whether ``value`` is Keras's ``default``: False or None itself, or an equal number."""
    if default is None or isinstance(default, bool):
        return value is default  # 0 or an empty dict is not False or None
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and value == default


@keras.saving.register_keras_serializable(package="bncourse")
class BatchNorm(keras.layers.Layer):
    """Normalise each feature with batch statistics in training, moving ones in inference.

    In training (``training=True`` and ``layer.trainable``), with ``mean`` and the biased
    ``var`` taken over every axis except ``axis``::

        out = gamma * (x - mean) / sqrt(var + epsilon) + beta
        moving_mean     = moving_mean * momentum     + mean * (1 - momentum)
        moving_variance = moving_variance * momentum + var  * (1 - momentum)

    Otherwise (``training`` False or None, or ``trainable=False``) it uses ``moving_mean``
    and ``moving_variance`` in place of the batch statistics and updates nothing.

    Args:
        axis: the feature axis, an integer (-1 for channels-last, 1 for channels-first).
        momentum: weight of the old value in the moving averages, in [0, 1].
        epsilon: number > 0 added to the variance inside the square root.
        center: learn an offset ``beta``; if False there is none.
        scale: learn a scale ``gamma``; if False there is none (a following ReLU or linear
            layer can do the scaling).
        beta_initializer, gamma_initializer: initializers of beta (zeros) and gamma (ones).
        moving_mean_initializer, moving_variance_initializer: initial moving statistics
            (zeros and ones).
        beta_regularizer, gamma_regularizer: optional regularizers.
        beta_constraint, gamma_constraint: optional constraints.
        **kwargs: the base Layer's arguments (``name``, ``dtype``, ``trainable``), and
            Keras's out-of-scope ``renorm``, ``renorm_clipping``, ``renorm_momentum`` and
            ``synchronized``, accepted at their defaults (False, None, 0.99, False) only.

    Input: an array of any rank >= 2 whose ``axis`` dimension is known. Float16 and
    bfloat16 inputs are computed in float32. Output: the same shape.

    Call arguments:
        inputs: the input tensor.
        training: True for training mode; False or None (the default) for inference.
        mask: optional boolean tensor of shape ``inputs.shape[:-1]``; masked-out positions
            do not count in the batch statistics.
    """

    def __init__(
        self,
        axis=-1,
        momentum=0.99,
        epsilon=1e-3,
        center=True,
        scale=True,
        beta_initializer="zeros",
        gamma_initializer="ones",
        moving_mean_initializer="zeros",
        moving_variance_initializer="ones",
        beta_regularizer=None,
        gamma_regularizer=None,
        beta_constraint=None,
        gamma_constraint=None,
        **kwargs,
    ):
        for name, default in _OUT_OF_SCOPE.items():
            value = kwargs.pop(name, default)
            if not _is_default(value, default):
                raise ValueError(
                    f"{name}={value!r} is not supported by bncourse's BatchNorm (batch "
                    "renormalisation and synchronised statistics are out of its scope; only "
                    f"the default {name}={default!r} is accepted); use "
                    "keras.layers.BatchNormalization for it"
                )
        super().__init__(**kwargs)
        self.axis = check_integer(axis, "axis")
        self.momentum = check_momentum(momentum)
        self.epsilon = check_epsilon(epsilon)
        self.center = bool(center)
        self.scale = bool(scale)
        self.beta_initializer = keras.initializers.get(beta_initializer)
        self.gamma_initializer = keras.initializers.get(gamma_initializer)
        self.moving_mean_initializer = keras.initializers.get(moving_mean_initializer)
        self.moving_variance_initializer = keras.initializers.get(moving_variance_initializer)
        self.beta_regularizer = keras.regularizers.get(beta_regularizer)
        self.gamma_regularizer = keras.regularizers.get(gamma_regularizer)
        self.beta_constraint = keras.constraints.get(beta_constraint)
        self.gamma_constraint = keras.constraints.get(gamma_constraint)
        self.supports_masking = True
        self.gamma = None
        self.beta = None
        self.moving_mean = None
        self.moving_variance = None

    def _checked_axis(self, input_shape) -> int:
        ndim = len(input_shape)
        if not -ndim <= self.axis < ndim:
            raise ValueError(
                f"axis={self.axis} is out of range for inputs of shape {tuple(input_shape)} "
                f"(rank {ndim}); expected an integer in [{-ndim}, {ndim - 1}]"
            )
        return self.axis % ndim

    def build(self, input_shape):
        axis = self._checked_axis(input_shape)
        if axis == 0 and len(input_shape) > 1:
            raise ValueError(
                f"axis={self.axis} is the batch axis of inputs of shape {tuple(input_shape)}; "
                "the feature axis must be another one"
            )
        num_features = input_shape[axis]
        if num_features is None:
            raise ValueError(
                f"the feature axis {self.axis} of inputs of shape {tuple(input_shape)} must "
                "have a known size"
            )
        shape = (num_features,)
        if self.scale:
            self.gamma = self.add_weight(
                shape=shape,
                name="gamma",
                initializer=self.gamma_initializer,
                regularizer=self.gamma_regularizer,
                constraint=self.gamma_constraint,
                trainable=True,
                autocast=False,
            )
        if self.center:
            self.beta = self.add_weight(
                shape=shape,
                name="beta",
                initializer=self.beta_initializer,
                regularizer=self.beta_regularizer,
                constraint=self.beta_constraint,
                trainable=True,
                autocast=False,
            )
        self.moving_mean = self.add_weight(
            shape=shape,
            name="moving_mean",
            initializer=self.moving_mean_initializer,
            trainable=False,
            autocast=False,
        )
        self.moving_variance = self.add_weight(
            shape=shape,
            name="moving_variance",
            initializer=self.moving_variance_initializer,
            trainable=False,
            autocast=False,
        )
        self.input_spec = keras.layers.InputSpec(ndim=len(input_shape), axes={axis: num_features})
        self._reduction_axes = tuple(i for i in range(len(input_shape)) if i != axis)
        self._broadcast_shape = tuple(
            num_features if i == axis else 1 for i in range(len(input_shape))
        )

    def _moments(self, x, mask):
        """Batch mean and biased variance, in two passes; masked-out positions left out."""
        axes = self._reduction_axes
        if mask is None:
            mean = ops.mean(x, axis=axes, keepdims=True)
            var = ops.mean(ops.square(x - mean), axis=axes, keepdims=True)
            return mean, var
        if len(mask.shape) != len(x.shape) - 1:
            raise ValueError(
                f"mask must have one dimension less than the inputs, got mask of shape "
                f"{tuple(mask.shape)} for inputs of shape {tuple(x.shape)}"
            )
        weights = ops.broadcast_to(ops.expand_dims(ops.cast(mask, x.dtype), -1), ops.shape(x))
        # Keras adds its fuzz factor to the count so that an all-masked batch gives 0, not NaN.
        count = ops.sum(weights, axis=axes, keepdims=True) + keras.config.epsilon()
        mean = ops.sum(x * weights, axis=axes, keepdims=True) / count
        var = ops.sum(ops.square(x - mean) * weights, axis=axes, keepdims=True) / count
        return mean, var

    def call(self, inputs, training=None, mask=None):
        # Half precision has too little range for statistics: compute in float32.
        compute = (
            "float64" if keras.backend.standardize_dtype(inputs.dtype) == "float64" else "float32"
        )
        x = ops.cast(inputs, compute)
        shape = self._broadcast_shape
        if training and self.trainable:
            mean, var = self._moments(x, mask)
            m = self.momentum
            self.moving_mean.assign(
                ops.cast(self.moving_mean, compute) * m + ops.reshape(mean, (-1,)) * (1.0 - m)
            )
            self.moving_variance.assign(
                ops.cast(self.moving_variance, compute) * m + ops.reshape(var, (-1,)) * (1.0 - m)
            )
        else:
            mean = ops.reshape(ops.cast(self.moving_mean, compute), shape)
            var = ops.reshape(ops.cast(self.moving_variance, compute), shape)
        inv_std = ops.rsqrt(var + self.epsilon)
        if self.scale:
            inv_std = inv_std * ops.reshape(ops.cast(self.gamma, compute), shape)
        out = (x - mean) * inv_std
        if self.center:
            out = out + ops.reshape(ops.cast(self.beta, compute), shape)
        return ops.cast(out, self.compute_dtype)

    def __repr__(self):
        # A constructor that raised (a refused argument) leaves an object without the
        # attributes Layer.__init__ sets; a traceback or debugger that shows it calls this.
        if not hasattr(self, "built"):
            return f"<{type(self).__name__}, not constructed: its __init__ raised>"
        return super().__repr__()

    def compute_output_shape(self, input_shape):
        self._checked_axis(input_shape)
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "axis": self.axis,
                "momentum": self.momentum,
                "epsilon": self.epsilon,
                "center": self.center,
                "scale": self.scale,
                "beta_initializer": keras.initializers.serialize(self.beta_initializer),
                "gamma_initializer": keras.initializers.serialize(self.gamma_initializer),
                "moving_mean_initializer": keras.initializers.serialize(
                    self.moving_mean_initializer
                ),
                "moving_variance_initializer": keras.initializers.serialize(
                    self.moving_variance_initializer
                ),
                "beta_regularizer": keras.regularizers.serialize(self.beta_regularizer),
                "gamma_regularizer": keras.regularizers.serialize(self.gamma_regularizer),
                "beta_constraint": keras.constraints.serialize(self.beta_constraint),
                "gamma_constraint": keras.constraints.serialize(self.gamma_constraint),
            }
        )
        return config
