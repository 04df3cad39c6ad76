"""The NumPy reference's contracts that `make mutation` found untested: the precision it
computes in, the dtypes it returns, the layer's state, boundaries and the exact error
messages. Each test kills mutants that the other tests of bncourse.numpy_bn let live."""

from __future__ import annotations

import numpy as np
import pytest

from bncourse import numpy_bn as nb

# --------------------------------------------------------------------------- precision


def _params(rng, c, dtype):
    gamma = rng.uniform(0.5, 2.0, c).astype(dtype)
    beta = rng.normal(size=c).astype(dtype)
    moving_mean = rng.normal(size=c).astype(dtype)
    moving_var = rng.uniform(0.1, 3.0, c).astype(dtype)
    return gamma, beta, moving_mean, moving_var


def test_parameters_are_cast_to_the_inputs_precision_first(rng):
    """float32 input is computed in float32, as Keras does: float64 parameters give exactly
    the result of the same parameters rounded to float32 (no float64 detour)."""
    x = rng.normal(1.0, 2.0, size=(64, 5)).astype(np.float32)
    p64 = [p.astype(np.float64) / 3.0 for p in _params(rng, 5, np.float64)]
    p32 = [p.astype(np.float32) for p in p64]
    np.testing.assert_array_equal(nb.batchnorm_inference(x, *p64), nb.batchnorm_inference(x, *p32))
    np.testing.assert_array_equal(
        nb.batchnorm_forward(x, *p64[:2])[0], nb.batchnorm_forward(x, *p32[:2])[0]
    )
    x4 = rng.normal(size=(4, 3, 3, 6)).astype(np.float32)
    g64, b64 = rng.normal(size=6) / 3.0, rng.normal(size=6) / 3.0
    for forward, kw in (
        (nb.layernorm_forward, {}),
        (nb.groupnorm_forward, {"groups": 2}),
        (nb.instancenorm_forward, {}),
    ):
        np.testing.assert_array_equal(
            forward(x4, g64, b64, **kw)[0],
            forward(x4, g64.astype(np.float32), b64.astype(np.float32), **kw)[0],
        )


def test_half_precision_is_computed_in_float32_not_float64(rng):
    """float16 input is computed in float32 and rounded once at the end: bit for bit the
    float32 computation's result cast to float16. It is not the float64 computation's: that
    rounds differently in a few of these 32768 values, by one float16 step at most."""
    x = rng.normal(1.0, 2.0, size=(4096, 8)).astype(np.float16)
    gamma, beta, moving_mean, _ = _params(rng, 8, np.float32)
    # sqrt(moving_var + epsilon) is 2, 1, 4 or 0.5: 1 / sqrt is exact in both precisions,
    # so the two computations differ only in the precision of the arithmetic on x
    params = (gamma, beta, moving_mean, np.tile(np.float32([3.75, 0.75, 15.75, 0.0]), 2))
    out = nb.batchnorm_inference(x, *params, epsilon=0.25)
    np.testing.assert_array_equal(
        out, nb.batchnorm_inference(x.astype(np.float32), *params, epsilon=0.25).astype(np.float16)
    )
    in_float64 = nb.batchnorm_inference(
        x.astype(np.float64), *[p.astype(np.float64) for p in params], epsilon=0.25
    )
    in_float64 = in_float64.astype(np.float16)
    assert np.max(np.abs(out.astype(np.float64) - in_float64) / np.spacing(out)) <= 1.0
    assert np.count_nonzero(out != in_float64) > 0
    np.testing.assert_array_equal(
        nb.batchnorm_forward(x, gamma, beta)[0],
        nb.batchnorm_forward(x.astype(np.float32), gamma, beta)[0].astype(np.float16),
    )


def test_a_float64_dout_is_used_in_the_inputs_precision(rng):
    x = rng.normal(size=(32, 4)).astype(np.float32)
    gamma, beta, _, _ = _params(rng, 4, np.float32)
    dout64 = rng.normal(size=(32, 4)) / 3.0
    dout32 = dout64.astype(np.float32)
    _, cache = nb.batchnorm_forward(x, gamma, beta)
    for backward in (nb.batchnorm_backward, nb.batchnorm_backward_alt):
        for a, b in zip(backward(dout64, cache), backward(dout32, cache)):
            np.testing.assert_array_equal(a, b)
    x4 = rng.normal(size=(4, 3, 3, 6)).astype(np.float32)
    _, ln_cache = nb.layernorm_forward(x4, np.ones(6, np.float32), np.zeros(6, np.float32))
    d64 = rng.normal(size=x4.shape) / 3.0
    for a, b in zip(
        nb.layernorm_backward(d64, ln_cache),
        nb.layernorm_backward(d64.astype(np.float32), ln_cache),
    ):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "dtype, compute", [(np.float16, np.float32), (np.float32, np.float32), (np.float64, np.float64)]
)
def test_caches_hold_the_compute_dtype_and_gradients_the_inputs(rng, dtype, compute):
    x = rng.normal(size=(4, 3, 3, 6)).astype(dtype)
    gamma, beta = np.ones(6, np.float64), np.zeros(6, np.float64)
    _, cache = nb.batchnorm_forward(x, gamma, beta)
    for key in ("xhat", "mean", "var", "std", "inv_std", "gamma"):
        assert cache[key].dtype == compute, key
    for forward, backward, kw in (
        (nb.layernorm_forward, nb.layernorm_backward, {}),
        (nb.groupnorm_forward, nb.groupnorm_backward, {"groups": 3}),
        (nb.instancenorm_forward, nb.instancenorm_backward, {}),
    ):
        out, c = forward(x, gamma, beta, **kw)
        assert out.dtype == dtype
        assert c.xhat.dtype == c.inv_std.dtype == c.gamma.dtype == compute
        grads = backward(np.ones_like(x), c)
        assert [g.dtype for g in grads] == [dtype] * 3, forward.__name__
        assert [g.shape for g in grads] == [x.shape, (6,), (6,)]


def test_the_batchnorm_cache_keeps_what_it_was_given(rng):
    x = rng.normal(size=(8, 3))
    _, cache = nb.batchnorm_forward(x, np.ones(3), np.zeros(3), epsilon=0.01)
    assert set(cache) == {
        "x",
        "xhat",
        "mean",
        "var",
        "std",
        "inv_std",
        "gamma",
        "epsilon",
        "axis",
        "reduce_axes",
    }
    assert cache["epsilon"] == 0.01 and cache["axis"] == 1 and cache["reduce_axes"] == (0,)
    assert cache["x"] is x
    np.testing.assert_allclose(cache["var"], x.var(axis=0))


# --------------------------------------------------------------------------- the layer


def test_the_layer_keeps_its_dtype_in_every_array():
    for dtype in (np.float32, np.float64):
        layer = nb.BatchNorm(3, dtype=dtype)
        for array in (layer.gamma, layer.beta, layer.moving_mean, layer.moving_var):
            assert array.dtype == dtype
        layer(np.random.default_rng(0).normal(size=(5, 3)), training=True)  # float64 input
        assert layer.moving_mean.dtype == layer.moving_var.dtype == dtype
    assert nb.BatchNorm(3).moving_var.dtype == np.float32  # the default, as in Keras


def test_the_layers_backward_is_that_of_its_last_training_call(rng):
    layer = nb.BatchNorm(4, dtype=np.float64)
    x, dout = rng.normal(size=(6, 4)), rng.normal(size=(6, 4))
    layer(x, training=True)
    _, cache = nb.batchnorm_forward(x, layer.gamma, layer.beta)
    for a, b in zip(layer.backward(dout), nb.batchnorm_backward_alt(dout, cache)):
        np.testing.assert_array_equal(a, b)
    layer(x)  # an inference call forgets the training call
    with pytest.raises(RuntimeError) as err:
        layer.backward(dout)
    assert str(err.value) == "backward needs a preceding call with training=True"


# --------------------------------------------------------------------------- boundaries


def test_a_zero_moving_variance_is_allowed():
    x = np.array([[1.0, 2.0], [3.0, 4.0]])
    out = nb.batchnorm_inference(x, np.ones(2), np.zeros(2), np.zeros(2), np.zeros(2), epsilon=0.25)
    np.testing.assert_array_equal(out, x / 0.5)


def test_the_most_negative_axis_is_the_batch_axis():
    x = np.ones((4, 3, 2))
    with pytest.raises(ValueError, match="axis=0 is the batch axis"):
        nb.batchnorm_forward(x, np.ones(3), np.zeros(3), axis=-3)
    out, _ = nb.batchnorm_forward(
        np.arange(24.0).reshape(4, 3, 2), np.ones(3), np.zeros(3), axis=-2
    )
    assert out.shape == (4, 3, 2)


def test_group_norm_takes_flat_features():
    x = np.arange(12.0).reshape(2, 6)
    out, _ = nb.groupnorm_forward(x, np.ones(6), np.zeros(6), groups=2)
    ref, _ = nb.layernorm_forward(x.reshape(4, 3), np.ones(3), np.zeros(3))
    np.testing.assert_allclose(out, ref.reshape(2, 6))


def test_rel_error_values():
    assert nb.rel_error(np.zeros(0), np.zeros(0)) == 0.0
    assert nb.rel_error([0.0], [1e-9]) == pytest.approx(0.1)  # the 1e-8 floor
    assert nb.rel_error([1.0], [3.0]) == pytest.approx(0.5)
    # unsigned integers are compared as numbers, not wrapped around
    assert nb.rel_error(np.array([1], np.uint8), np.array([2], np.uint8)) == pytest.approx(1 / 3)
    assert nb.rel_error(np.array([2], np.uint8), [1.0]) == pytest.approx(1 / 3)
    # nor is abs(-128) of int8 overflowed, on either side
    assert nb.rel_error(np.array([-128], np.int8), [-127.0]) == pytest.approx(1 / 255)
    assert nb.rel_error([-127.0], np.array([-128], np.int8)) == pytest.approx(1 / 255)


def test_numerical_gradient_leaves_each_evaluation_alone():
    """f may return the same buffer every time: the gradient is still right."""
    buffer = np.zeros(2)

    def f(v):
        np.multiply(v, v, out=buffer)
        return buffer

    x = np.array([1.0, -2.0])
    np.testing.assert_allclose(nb.numerical_gradient(f, x, np.ones(2)), 2 * x, rtol=1e-6)
    np.testing.assert_array_equal(x, [1.0, -2.0])


def test_numerical_gradient_takes_any_float_dtype():
    """float64 is what a meaningful check needs, but float32 is a float array too."""
    x = np.array([1.0, -2.0], np.float32)
    grad = nb.numerical_gradient(lambda v: 3 * v, x, np.ones(2, np.float32), h=1e-2)
    assert grad.dtype == np.float32
    np.testing.assert_allclose(grad, [3.0, 3.0], rtol=1e-3)


# --------------------------------------------------------------------------- messages


@pytest.mark.parametrize(
    "call, error, message",
    [
        (
            lambda: nb.batchnorm_forward(np.ones((4, 3)), np.ones(3), np.zeros(3), axis=2),
            ValueError,
            "axis=2 is out of range for an input of rank 2; expected an integer in [-2, 1]",
        ),
        (
            lambda: nb.batchnorm_forward(np.ones((4, 3)), np.ones(3), np.zeros(3), axis=0),
            ValueError,
            "axis=0 is the batch axis; the feature axis must be another one "
            "(-1 for channels-last, 1 for channels-first)",
        ),
        (
            lambda: nb.batchnorm_forward(np.ones((1, 3)), np.ones(3), np.zeros(3)),
            ValueError,
            "Batch Normalization in training mode needs more than one value per feature, "
            "got x of shape (1, 3) (one value per feature along axis 1): its batch variance would be "
            "0 and the output just beta; use a larger batch or inference mode",
        ),
        (
            lambda: nb.batchnorm_forward(np.ones((4, 3)), np.ones(3, np.int64), np.zeros(3)),
            TypeError,
            "gamma must be a floating-point array, got dtype int64",
        ),
        (
            lambda: nb.batchnorm_forward(np.ones((4, 3), np.int32), np.ones(3), np.zeros(3)),
            TypeError,
            "x must be a floating-point array (float16, float32 or float64), got dtype "
            "int32; convert it first, e.g. x.astype(np.float32)",
        ),
        (
            lambda: nb.batchnorm_inference(
                np.ones((4, 3)), np.ones(3), np.zeros(3), np.zeros(3), np.ones(2)
            ),
            ValueError,
            "moving_var must have shape (3,), one value per feature of x, got shape (2,)",
        ),
        (
            lambda: nb.batchnorm_inference(
                np.ones((4, 3)), np.ones(3), np.zeros(3), np.zeros(3), np.array([1.0, -1e-9, 1.0])
            ),
            ValueError,
            "moving_var must be >= 0 everywhere, got negative values",
        ),
        (
            lambda: nb.layernorm_forward(np.ones((4, 3)), np.ones(2), np.zeros(3)),
            ValueError,
            "gamma must have shape (3,), one value per feature of x, got shape (2,)",
        ),
        (
            lambda: nb.layernorm_forward(np.ones((4, 3)), np.ones(3), np.zeros(4)),
            ValueError,
            "beta must have shape (3,), one value per feature of x, got shape (4,)",
        ),
        (
            lambda: nb.instancenorm_forward(np.ones(6), np.ones(6), np.zeros(6)),
            ValueError,
            "x must have at least 3 dimensions (a batch axis first), got shape (6,)",
        ),
        (
            lambda: nb.batchnorm_backward(np.ones((4, 3)), {"x": np.ones((4, 3))}),
            TypeError,
            "cache must be the dict returned by batchnorm_forward",
        ),
        (
            lambda: nb.layernorm_backward(np.ones((4, 3)), {}),
            TypeError,
            "cache must be the one returned by the matching *_forward function",
        ),
        (
            lambda: nb.numerical_gradient(lambda v: v, np.arange(3), np.ones(3)),
            TypeError,
            "x must be a floating-point numpy array (it is perturbed in place)",
        ),
        (
            lambda: nb.numerical_gradient(lambda v: v, np.ones((3, 2)).T, np.ones((2, 3))),
            ValueError,
            "x must be contiguous, so that it can be perturbed in place",
        ),
    ],
)
def test_error_messages_in_full(call, error, message):
    with pytest.raises(error) as err:
        call()
    assert str(err.value) == message
