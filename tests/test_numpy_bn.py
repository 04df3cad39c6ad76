"""The NumPy reference against Keras (the oracle), finite differences, and bad input."""

import numpy as np
import pytest

import keras

from bncourse import numpy_bn as nb

TOL = {np.float64: 1e-6, np.float32: 1e-5}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(
    "shape, axis",
    [((32, 6), -1), ((32, 6), 1), ((8, 5, 5, 4), -1), ((8, 4, 5, 5), 1)],
    ids=["ND-last", "ND-axis1", "NHWC", "NCHW"],
)
@pytest.mark.parametrize(
    "center, scale, momentum, epsilon",
    [(True, True, 0.99, 1e-3), (False, True, 0.9, 1e-5), (True, False, 0.5, 1e-2)],
    ids=["defaults", "no-center", "no-scale"],
)
def test_matches_keras_over_training_then_inference(
    rng, dtype, shape, axis, center, scale, momentum, epsilon
):
    """Ten training steps then inference: outputs and moving statistics equal Keras's."""
    num_features = shape[axis]
    layer = keras.layers.BatchNormalization(
        axis=axis,
        momentum=momentum,
        epsilon=epsilon,
        center=center,
        scale=scale,
        dtype=np.dtype(dtype).name,
    )
    layer.build(shape)
    ours = nb.BatchNorm(
        num_features,
        axis=axis,
        momentum=momentum,
        epsilon=epsilon,
        center=center,
        scale=scale,
        dtype=dtype,
    )
    # Non-trivial gamma and beta, the same in both.
    if scale:
        ours.gamma = rng.normal(1.0, 0.5, num_features).astype(dtype)
        layer.gamma.assign(ours.gamma)
    if center:
        ours.beta = rng.normal(0.0, 0.5, num_features).astype(dtype)
        layer.beta.assign(ours.beta)
    tol = TOL[dtype]
    for _ in range(10):
        # Off-centre data, as Keras's own tests use.
        x = rng.normal(loc=5.0, scale=10.0, size=shape).astype(dtype)
        expected = keras.ops.convert_to_numpy(layer(x, training=True))
        got = ours(x, training=True)
        assert got.dtype == dtype
        np.testing.assert_allclose(got, expected, rtol=0, atol=tol)
        np.testing.assert_allclose(
            ours.moving_mean, keras.ops.convert_to_numpy(layer.moving_mean), rtol=tol, atol=tol
        )
        np.testing.assert_allclose(
            ours.moving_var,
            keras.ops.convert_to_numpy(layer.moving_variance),
            rtol=tol,
            atol=tol,
        )
    x = rng.normal(loc=5.0, scale=10.0, size=shape).astype(dtype)
    np.testing.assert_allclose(
        ours(x), keras.ops.convert_to_numpy(layer(x, training=False)), rtol=0, atol=tol
    )


def test_training_uses_batch_statistics_and_the_keras_momentum_convention(rng):
    """moving = moving * momentum + batch * (1 - momentum), with the biased variance."""
    x = rng.normal(3.0, 2.0, size=(16, 3))
    bn = nb.BatchNorm(3, momentum=0.75, dtype=np.float64)
    out = bn(x, training=True)
    np.testing.assert_allclose(out.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(bn.moving_mean, 0.25 * x.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(bn.moving_var, 0.75 + 0.25 * x.var(axis=0, ddof=0), rtol=1e-12)
    # Inference reads the moving statistics and changes nothing.
    before = bn.moving_mean.copy(), bn.moving_var.copy()
    out_inf = bn(x)
    expected = (x - before[0]) / np.sqrt(before[1] + 1e-3)
    np.testing.assert_allclose(out_inf, expected, rtol=1e-12)
    np.testing.assert_array_equal(bn.moving_mean, before[0])
    np.testing.assert_array_equal(bn.moving_var, before[1])


def test_momentum_zero_makes_inference_equal_training(rng):
    """Keras's test trick: with momentum 0 the moving statistics are the last batch's."""
    x = rng.normal(5.0, 10.0, size=(64, 4, 4, 3))
    bn = nb.BatchNorm(3, momentum=0.0, dtype=np.float64)
    before = bn(x)
    train = bn(x, training=True)
    assert np.max(np.abs(before - train)) > 1.0  # untrained statistics differ
    np.testing.assert_allclose(bn(x), train, atol=1e-12)


def test_inference_handles_a_batch_of_one():
    bn = nb.BatchNorm(2, dtype=np.float64)
    bn.moving_mean = np.array([1.0, -1.0])
    bn.moving_var = np.array([4.0, 0.25])
    out = bn(np.array([[3.0, 0.0]]))
    np.testing.assert_allclose(out, [[2.0 / np.sqrt(4.001), 1.0 / np.sqrt(0.251)]])


def test_assigned_gamma_and_beta_are_used(rng):
    x = rng.normal(size=(10, 2))
    bn = nb.BatchNorm(2, dtype=np.float64)
    bn.gamma = np.array([2.0, 3.0])
    bn.beta = np.array([-1.0, 1.0])
    out = bn(x, training=True)
    np.testing.assert_allclose(out.mean(axis=0), bn.beta, atol=1e-12)
    np.testing.assert_allclose(out.std(axis=0), bn.gamma * np.sqrt(x.var(0) / (x.var(0) + 1e-3)))


def test_center_and_scale_false_have_no_parameters(rng):
    bn = nb.BatchNorm(3, center=False, scale=False, dtype=np.float64)
    assert bn.gamma is None and bn.beta is None
    x = rng.normal(2.0, 3.0, size=(20, 3))
    out = bn(x, training=True)
    np.testing.assert_allclose(out.mean(axis=0), 0.0, atol=1e-12)


def test_half_precision_is_computed_in_float32(rng):
    x = rng.normal(5.0, 2.0, size=(64, 8)).astype(np.float16)
    gamma, beta = np.ones(8, np.float32), np.zeros(8, np.float32)
    out, cache = nb.batchnorm_forward(x, gamma, beta)
    assert out.dtype == np.float16
    assert cache["xhat"].dtype == np.float32
    ref, _ = nb.batchnorm_forward(x.astype(np.float32), gamma, beta)
    np.testing.assert_allclose(out.astype(np.float32), ref, atol=2e-3)


def test_off_centre_float32_is_still_normalised(rng):
    """Mean 1e4, std 1 in float32: the two-pass variance keeps the output standardised."""
    x = rng.normal(loc=1e4, scale=1.0, size=(4096, 16)).astype(np.float32)
    out, _ = nb.batchnorm_forward(x, np.ones(16, np.float32), np.zeros(16, np.float32))
    assert np.max(np.abs(out.mean(axis=0))) <= 1e-3
    np.testing.assert_allclose(
        out.std(axis=0),
        np.sqrt(x.var(0, dtype=np.float64) / (x.var(0, dtype=np.float64) + 1e-3)),
        atol=1e-3,
    )
    assert np.max(np.abs(out.std(axis=0) - 1.0)) <= 1e-3


def test_one_pass_variance_fails_where_two_pass_does_not(rng):
    """The reason for two passes: E[x^2] - E[x]^2 in float32 loses the variance at mean 1e4."""
    x = rng.normal(loc=1e4, scale=1.0, size=(4096, 16)).astype(np.float32)
    one_pass = np.mean(x * x, axis=0) - np.mean(x, axis=0) ** 2
    _, cache = nb.batchnorm_forward(x, np.ones(16, np.float32), np.zeros(16, np.float32))
    true_var = x.astype(np.float64).var(axis=0)
    assert np.max(np.abs(cache["var"] - true_var)) < 1e-3
    assert np.max(np.abs(one_pass - true_var)) > 0.1


# ----------------------------------------------------------------------------- gradients
# Finite differences in float64 with h = 1e-5. The element-wise relative error is sensitive
# to round-off on entries of dx near zero, so the arrays are small and the data off-centre
# (mean 5) but of unit spread, which keeps dx of order one.


def _data(rng, shape):
    num_channels = shape[-1]
    x = rng.normal(loc=5.0, scale=1.0, size=shape)
    gamma = rng.normal(1.0, 0.5, num_channels)
    beta = rng.normal(0.0, 1.0, num_channels)
    dout = rng.normal(size=shape)
    return x, gamma, beta, dout


def _check_grads(forward, backward, x, gamma, beta, dout, **kw):
    _, cache = forward(x, gamma, beta, **kw)
    dx, dgamma, dbeta = backward(dout, cache)
    num_dx = nb.numerical_gradient(lambda v: forward(v, gamma, beta, **kw)[0], x, dout)
    num_dgamma = nb.numerical_gradient(lambda v: forward(x, v, beta, **kw)[0], gamma, dout)
    num_dbeta = nb.numerical_gradient(lambda v: forward(x, gamma, v, **kw)[0], beta, dout)
    assert nb.rel_error(dx, num_dx) <= 1e-7
    assert nb.rel_error(dgamma, num_dgamma) <= 1e-7
    assert nb.rel_error(dbeta, num_dbeta) <= 1e-7
    return dx, dgamma, dbeta


@pytest.mark.parametrize("backward", [nb.batchnorm_backward, nb.batchnorm_backward_alt])
@pytest.mark.parametrize(
    "shape, axis",
    [((10, 4), -1), ((3, 2, 2, 4), -1), ((4, 3, 2, 2), 1)],
    ids=["ND", "NHWC", "NCHW"],
)
def test_batchnorm_backward_matches_finite_differences(rng, backward, shape, axis):
    x, _, _, dout = _data(rng, shape)
    gamma = rng.normal(1.0, 0.5, shape[axis])
    beta = rng.normal(0.0, 1.0, shape[axis])
    _check_grads(nb.batchnorm_forward, backward, x, gamma, beta, dout, axis=axis)


@pytest.mark.parametrize("shape, axis", [((64, 16), -1), ((8, 6, 6, 5), -1), ((8, 5, 6, 6), 1)])
def test_staged_and_closed_form_backward_agree(rng, shape, axis):
    x = rng.normal(5.0, 10.0, size=shape)
    gamma = rng.normal(1.0, 0.5, shape[axis])
    beta = rng.normal(size=shape[axis])
    dout = rng.normal(size=shape)
    _, cache = nb.batchnorm_forward(x, gamma, beta, axis=axis)
    staged = nb.batchnorm_backward(dout, cache)
    closed = nb.batchnorm_backward_alt(dout, cache)
    for a, b in zip(staged, closed):
        assert a.shape == b.shape
        assert np.max(np.abs(a - b)) <= 1e-10


@pytest.mark.parametrize(
    "forward, backward, kw, shape",
    [
        (nb.layernorm_forward, nb.layernorm_backward, {}, (4, 6)),
        (nb.layernorm_forward, nb.layernorm_backward, {}, (2, 3, 3, 4)),
        (nb.groupnorm_forward, nb.groupnorm_backward, {"groups": 2}, (2, 3, 3, 4)),
        (nb.instancenorm_forward, nb.instancenorm_backward, {}, (2, 3, 3, 4)),
    ],
    ids=["layer-ND", "layer-NHWC", "group", "instance"],
)
def test_relatives_backward_matches_finite_differences(rng, forward, backward, kw, shape):
    x, gamma, beta, dout = _data(rng, shape)
    _check_grads(forward, backward, x, gamma, beta, dout, **kw)


def test_relatives_match_keras_layers(rng):
    x = rng.normal(5.0, 10.0, size=(6, 4, 4, 8)).astype(np.float32)
    gamma = rng.normal(1.0, 0.5, 8).astype(np.float32)
    beta = rng.normal(size=8).astype(np.float32)

    def keras_out(layer):
        layer.build(x.shape)
        layer.gamma.assign(gamma)
        layer.beta.assign(beta)
        return keras.ops.convert_to_numpy(layer(x))

    for groups, ours in [
        (4, nb.groupnorm_forward(x, gamma, beta, groups=4)[0]),
        (8, nb.instancenorm_forward(x, gamma, beta)[0]),
        (1, nb.layernorm_forward(x, gamma, beta)[0]),
    ]:
        expected = keras_out(keras.layers.GroupNormalization(groups=groups, epsilon=1e-3))
        np.testing.assert_allclose(ours, expected, atol=1e-4)
    x2 = x.reshape(6, -1)[:, :8]
    layer = keras.layers.LayerNormalization(axis=-1, epsilon=1e-3)
    layer.build(x2.shape)
    layer.gamma.assign(gamma)
    layer.beta.assign(beta)
    np.testing.assert_allclose(
        nb.layernorm_forward(x2, gamma, beta)[0],
        keras.ops.convert_to_numpy(layer(x2)),
        atol=1e-4,
    )


def test_relatives_do_not_mix_samples(rng):
    """Layer, group and instance norm treat each sample alone: a batch of one works."""
    x = rng.normal(size=(5, 3, 3, 4))
    gamma, beta = np.ones(4), np.zeros(4)
    for fw, kw in [
        (nb.layernorm_forward, {}),
        (nb.groupnorm_forward, {"groups": 2}),
        (nb.instancenorm_forward, {}),
    ]:
        whole = fw(x, gamma, beta, **kw)[0]
        one = fw(x[2:3], gamma, beta, **kw)[0]
        np.testing.assert_allclose(one[0], whole[2], atol=1e-12)


def test_numerical_gradient_of_a_known_function(rng):
    x = rng.normal(size=(3, 4))
    x_before = x.copy()
    dout = rng.normal(size=(3, 4))
    grad = nb.numerical_gradient(lambda v: v**3, x, dout)
    # Centred differences of a cubic are off by exactly h**2 * dout (plus round-off).
    np.testing.assert_allclose(grad, (3 * x_before**2 + 1e-10) * dout, rtol=1e-6, atol=1e-9)
    np.testing.assert_array_equal(x, x_before)  # restored after perturbing in place


def test_rel_error():
    assert nb.rel_error([1.0, 2.0], [1.0, 2.0]) == 0.0
    assert nb.rel_error([1.0], [3.0]) == pytest.approx(0.5)
    assert nb.rel_error([0.0], [0.0]) == 0.0
    with pytest.raises(ValueError, match="same shape"):
        nb.rel_error([1.0], [1.0, 2.0])


# ----------------------------------------------------------------------------- bad input

G3 = np.ones(3)
B3 = np.zeros(3)


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: nb.batchnorm_forward(np.ones(3), G3, B3), ValueError, "at least 2 dimensions"),
        (
            lambda: nb.batchnorm_forward(np.ones((4, 3)), G3, B3, axis=2),
            ValueError,
            r"axis=2 is out of range for an input of rank 2",
        ),
        (lambda: nb.batchnorm_forward(np.ones((4, 3)), G3, B3, axis=0), ValueError, "batch axis"),
        (
            lambda: nb.batchnorm_forward(np.ones((4, 3)), G3, B3, axis=1.0),
            TypeError,
            "axis must be an integer",
        ),
        (
            lambda: nb.batchnorm_forward(np.ones((4, 3)), np.ones(4), B3),
            ValueError,
            r"gamma must have shape \(3,\).*got shape \(4,\)",
        ),
        (
            lambda: nb.batchnorm_forward(np.ones((4, 3)), G3, np.zeros((3, 1))),
            ValueError,
            r"beta must have shape \(3,\)",
        ),
        (
            lambda: nb.batchnorm_forward(np.ones((4, 3), dtype=np.int64), G3, B3),
            TypeError,
            "floating-point.*got dtype int64",
        ),
        (
            lambda: nb.batchnorm_forward(np.ones((1, 3)), G3, B3),
            ValueError,
            "more than one value per feature",
        ),
        (
            lambda: nb.batchnorm_forward(np.ones((4, 3)), G3, B3, epsilon=0),
            ValueError,
            "epsilon must be a finite number > 0",
        ),
        (
            lambda: nb.batchnorm_inference(np.ones((4, 3)), G3, B3, np.zeros(2), np.ones(3)),
            ValueError,
            r"moving_mean must have shape \(3,\)",
        ),
        (
            lambda: nb.batchnorm_inference(np.ones((4, 3)), G3, B3, np.zeros(3), -np.ones(3)),
            ValueError,
            "moving_var must be >= 0",
        ),
        (
            lambda: nb.groupnorm_forward(np.ones((2, 2, 2, 6)), np.ones(6), np.zeros(6), groups=4),
            ValueError,
            "groups=4 must divide",
        ),
        (
            lambda: nb.groupnorm_forward(np.ones((2, 6)), np.ones(6), np.zeros(6), groups=0),
            ValueError,
            "groups must be a positive integer",
        ),
        (
            lambda: nb.instancenorm_forward(np.ones((2, 6)), np.ones(6), np.zeros(6)),
            ValueError,
            "at least 3 dimensions",
        ),
        (lambda: nb.BatchNorm(3, momentum=2.0), ValueError, r"momentum must be .*\[0, 1\]"),
        (lambda: nb.BatchNorm(3, epsilon=-1.0), ValueError, "epsilon"),
        (lambda: nb.BatchNorm(0), ValueError, "num_features must be a positive integer"),
        (lambda: nb.BatchNorm(3, axis="last"), TypeError, "axis must be an integer"),
        (lambda: nb.BatchNorm(3)(np.ones((4, 5))), ValueError, "num_features=3"),
        (lambda: nb.BatchNorm(3).backward(np.ones((4, 3))), RuntimeError, "training=True"),
        (
            lambda: nb.numerical_gradient(lambda v: v, [1.0, 2.0], [1.0, 1.0]),
            TypeError,
            "numpy array",
        ),
    ],
)
def test_bad_input_gets_a_clear_error(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_backward_checks_dout_and_cache(rng):
    x = rng.normal(size=(4, 3))
    _, cache = nb.batchnorm_forward(x, G3, B3)
    with pytest.raises(ValueError, match=r"dout must have the shape .*\(4, 3\)"):
        nb.batchnorm_backward(np.ones((3, 3)), cache)
    with pytest.raises(TypeError, match="batchnorm_forward"):
        nb.batchnorm_backward_alt(np.ones((4, 3)), {"x": x})
    _, ln_cache = nb.layernorm_forward(x, G3, B3)
    with pytest.raises(ValueError, match="dout must have the shape"):
        nb.layernorm_backward(np.ones((4, 4)), ln_cache)
    with pytest.raises(TypeError, match="matching"):
        nb.layernorm_backward(np.ones((4, 3)), cache)
