"""Properties of the NumPy reference that hold for every shape, axis and dtype.

Hypothesis draws the shapes, feature axes, dtypes and the seed of the data; the tests are
derandomised (the same examples on every run) and keep no database, so the suite stays
deterministic. The data of each example comes from ``np.random.default_rng(seed)``.
"""

import os

import numpy as np
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from bncourse import numpy_bn as nb

# The same examples on every run, no example database written, no timing (CI is shared).
settings.register_profile(
    "bncourse", derandomize=True, database=None, deadline=None, max_examples=100
)
# `make mutation` reruns these tests for every mutant, with the profile "mutation" (set by
# BNCOURSE_HYPOTHESIS_PROFILE): fewer examples and no shrinking, as one failure kills a mutant.
settings.register_profile(
    "mutation",
    settings.get_profile("bncourse"),
    max_examples=30,
    phases=[Phase.explicit, Phase.generate],
)
PROPERTY = settings(settings.get_profile(os.environ.get("BNCOURSE_HYPOTHESIS_PROFILE", "bncourse")))

FLOATS = [np.float16, np.float32, np.float64]


@st.composite
def bn_layouts(draw, max_rank=4, max_dim=4):
    """(shape, axis): a batch of 2 to 6 first, the feature axis anywhere after it, given as
    a positive or a negative index."""
    rank = draw(st.integers(2, max_rank))
    shape = (draw(st.integers(2, 6)),) + tuple(
        draw(st.integers(1, max_dim)) for _ in range(rank - 1)
    )
    axis = draw(st.integers(1, rank - 1))
    if draw(st.booleans()):
        axis -= rank
    return shape, axis


def _reduce_axes(shape, axis):
    """Every axis but the feature axis (given as a positive or a negative index)."""
    return tuple(i for i in range(len(shape)) if i != axis % len(shape))


def _per_feature(values, ndim, axis):
    """Values of shape (C,) as an array that broadcasts along ``axis``."""
    shape = [1] * ndim
    shape[axis] = values.size
    return values.reshape(shape)


def spread_out_batch(rng, shape, axis):
    """Off-centre float64 data in which every feature has a variance of at least 1.

    Each feature is standardised exactly, then given a spread of 1 to 10 and a centre up to
    10 spreads from 0: the variance is far above the epsilons used here, whatever the
    batch size, so their effect on the output stays below the stated tolerances.
    """
    num_features = shape[axis]
    reduce_axes = _reduce_axes(shape, axis)
    z = rng.normal(size=shape)
    z = (z - z.mean(axis=reduce_axes, keepdims=True)) / z.std(axis=reduce_axes, keepdims=True)
    spread = _per_feature(rng.uniform(1.0, 10.0, num_features), len(shape), axis)
    centre = spread * _per_feature(rng.uniform(-10.0, 10.0, num_features), len(shape), axis)
    return centre + spread * z


def _params(rng, num_features, dtype):
    gamma = rng.uniform(0.5, 2.0, num_features).astype(dtype)
    beta = rng.normal(0.0, 1.0, num_features).astype(dtype)
    return gamma, beta


@PROPERTY
@given(layout=bn_layouts(), dtype=st.sampled_from(FLOATS), seed=st.integers(0, 2**32 - 1))
def test_forward_and_backward_keep_shapes_and_dtypes_and_normalise(layout, dtype, seed):
    """Output and dx have x's shape and dtype, the statistics and parameter gradients one
    value per feature; with gamma = 1 and beta = 0 each feature has mean 0 and variance
    var / (var + epsilon); inference with the batch's own statistics is the training forward."""
    shape, axis = layout
    rng = np.random.default_rng(seed)
    x = spread_out_batch(rng, shape, axis).astype(dtype)
    num_features = shape[axis]
    ones, zeros = np.ones(num_features, dtype), np.zeros(num_features, dtype)
    out, cache = nb.batchnorm_forward(x, ones, zeros, axis=axis)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert cache["mean"].shape == cache["var"].shape == (num_features,)
    reduce_axes = _reduce_axes(shape, axis)
    x64 = x.astype(np.float64)
    # Half precision is computed in float32, so its statistics are float32-accurate.
    stats_tol = {np.float16: 1e-5, np.float32: 1e-5, np.float64: 1e-12}[dtype]
    np.testing.assert_allclose(cache["mean"], x64.mean(axis=reduce_axes), rtol=stats_tol)
    np.testing.assert_allclose(cache["var"], x64.var(axis=reduce_axes), rtol=stats_tol)
    out_tol = {np.float16: 2e-3, np.float32: 1e-5, np.float64: 1e-12}[dtype]
    out64 = out.astype(np.float64)
    np.testing.assert_allclose(out64.mean(axis=reduce_axes), 0.0, atol=out_tol)
    var = x64.var(axis=reduce_axes)
    np.testing.assert_allclose(out64.var(axis=reduce_axes), var / (var + 1e-3), atol=4 * out_tol)
    inference = nb.batchnorm_inference(x, ones, zeros, cache["mean"], cache["var"], axis=axis)
    assert inference.dtype == x.dtype
    np.testing.assert_allclose(inference.astype(np.float64), out64, atol=out_tol)
    dout = rng.normal(size=shape).astype(dtype)
    for backward in (nb.batchnorm_backward, nb.batchnorm_backward_alt):
        dx, dgamma, dbeta = backward(dout, cache)
        assert dx.shape == x.shape and dx.dtype == x.dtype
        assert dgamma.shape == dbeta.shape == (num_features,)
        assert dgamma.dtype == dbeta.dtype == x.dtype


@PROPERTY
@given(
    layout=bn_layouts(),
    dtype=st.sampled_from([np.float32, np.float64]),
    seed=st.integers(0, 2**32 - 1),
)
def test_output_is_invariant_to_a_per_feature_shift_and_positive_scale(layout, dtype, seed):
    """BN(scale * x + shift) = BN(x) for shift and scale > 0 of shape (C,).

    Exactly so for epsilon = 0. With epsilon = 1e-10, every feature's variance at least 1
    and scale at least 0.5, epsilon changes an output by at most
    |gamma * xhat| * 1e-10 * 0.5**-2 / 2, below 1e-8 here: the float64 tolerance. In
    float32 the rounding of inputs up to 40 spreads from 0 dominates: 5e-5.
    """
    shape, axis = layout
    rng = np.random.default_rng(seed)
    x = spread_out_batch(rng, shape, axis)
    num_features = shape[axis]
    scale = _per_feature(rng.uniform(0.5, 20.0, num_features), len(shape), axis)
    spread = x.std(axis=_reduce_axes(shape, axis), keepdims=True)
    shift = scale * spread * _per_feature(rng.uniform(-10.0, 10.0, num_features), len(shape), axis)
    gamma, beta = _params(rng, num_features, dtype)
    out, _ = nb.batchnorm_forward(x.astype(dtype), gamma, beta, epsilon=1e-10, axis=axis)
    moved, _ = nb.batchnorm_forward(
        (scale * x + shift).astype(dtype), gamma, beta, epsilon=1e-10, axis=axis
    )
    tol = {np.float32: 5e-5, np.float64: 1e-8}[dtype]
    np.testing.assert_allclose(moved, out, rtol=0, atol=tol)


@PROPERTY
@given(layout=bn_layouts(max_rank=3, max_dim=3), seed=st.integers(0, 2**32 - 1))
def test_both_backwards_match_centred_finite_differences(layout, seed):
    """dx, dgamma and dbeta of both backward versions against centred differences in
    float64 with h = 1e-5: within 1e-6 relative, 1e-8 absolute (entries of dx near 0 carry
    the differences' round-off)."""
    shape, axis = layout
    rng = np.random.default_rng(seed)
    x = spread_out_batch(rng, shape, axis)
    gamma, beta = _params(rng, shape[axis], np.float64)
    dout = rng.normal(size=shape)

    def forward(x_, gamma_, beta_):
        return nb.batchnorm_forward(x_, gamma_, beta_, axis=axis)[0]

    numeric = (
        nb.numerical_gradient(lambda v: forward(v, gamma, beta), x, dout, h=1e-5),
        nb.numerical_gradient(lambda v: forward(x, v, beta), gamma, dout, h=1e-5),
        nb.numerical_gradient(lambda v: forward(x, gamma, v), beta, dout, h=1e-5),
    )
    _, cache = nb.batchnorm_forward(x, gamma, beta, axis=axis)
    for backward in (nb.batchnorm_backward, nb.batchnorm_backward_alt):
        for name, analytic, expected in zip(
            ("dx", "dgamma", "dbeta"), backward(dout, cache), numeric
        ):
            np.testing.assert_allclose(
                analytic, expected, rtol=1e-6, atol=1e-8, err_msg=f"{backward.__name__}: {name}"
            )


@st.composite
def channels_last(draw):
    """(shape, groups): (N, ..., C) with one or two spatial axes holding at least two
    positions, and C = groups * k."""
    groups, per_group = draw(st.integers(1, 4)), draw(st.integers(1, 3))
    spatial = (draw(st.integers(2, 4)),) + tuple(
        draw(st.integers(1, 4)) for _ in range(draw(st.integers(0, 1)))
    )
    return (draw(st.integers(1, 4)),) + spatial + (groups * per_group,), groups


@PROPERTY
@given(
    layout=channels_last(),
    dtype=st.sampled_from([np.float32, np.float64]),
    seed=st.integers(0, 2**32 - 1),
)
def test_layer_group_and_instance_norm_reduce_to_each_other(layout, dtype, seed):
    """Group norm with one group is layer norm and with one channel per group instance norm,
    gradients included; with G groups it is layer norm of each group's channels. Instance
    norm is batch norm of a batch of one sample; layer norm of (N, D) input is batch norm of
    its transpose (without gamma and beta)."""
    shape, groups = layout
    rng = np.random.default_rng(seed)
    x = rng.normal(loc=3.0, scale=2.0, size=shape).astype(dtype)
    dout = rng.normal(size=shape).astype(dtype)
    channels = shape[-1]
    gamma, beta = _params(rng, channels, dtype)
    tol = {np.float32: 1e-5, np.float64: 1e-12}[dtype]

    def close(got, expected):
        assert got.shape == expected.shape and got.dtype == expected.dtype
        np.testing.assert_allclose(got, expected, rtol=tol, atol=tol)

    def out_and_grads(forward, backward, **kw):
        out, cache = forward(x, gamma, beta, **kw)
        return (out, *backward(dout, cache))

    layer = out_and_grads(nb.layernorm_forward, nb.layernorm_backward)
    instance = out_and_grads(nb.instancenorm_forward, nb.instancenorm_backward)
    for groups_, expected in ((1, layer), (channels, instance)):
        for got, want in zip(
            out_and_grads(nb.groupnorm_forward, nb.groupnorm_backward, groups=groups_), expected
        ):
            close(got, want)

    out, _ = nb.groupnorm_forward(x, gamma, beta, groups=groups)
    k = channels // groups
    for g in range(groups):
        c = slice(g * k, (g + 1) * k)
        close(out[..., c], nb.layernorm_forward(x[..., c], gamma[c], beta[c])[0])

    # Batch norm needs two values per feature: the spatial axes hold at least two.
    for i in range(shape[0]):
        close(instance[0][i : i + 1], nb.batchnorm_forward(x[i : i + 1], gamma, beta)[0])

    flat = x.reshape(shape[0], -1)
    n, d = flat.shape
    by_batch_norm, _ = nb.batchnorm_forward(flat.T, np.ones(n, dtype), np.zeros(n, dtype))
    close(nb.layernorm_forward(flat, np.ones(d, dtype), np.zeros(d, dtype))[0], by_batch_norm.T)


def test_the_layouts_drawn_cover_every_rank_and_both_axis_signs():
    """The strategy reaches what the properties are claimed for: a check on the tests."""
    seen = set()

    # The full profile whatever BNCOURSE_HYPOTHESIS_PROFILE says: the claim is about the
    # examples that `make test` draws.
    @settings(settings.get_profile("bncourse"))
    @given(layout=bn_layouts())
    def record(layout):
        shape, axis = layout
        seen.add((len(shape), axis < 0))

    record()
    assert seen == {(rank, negative) for rank in (2, 3, 4) for negative in (False, True)}
