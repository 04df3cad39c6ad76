"""BN and weight decay: the recorder of kernel norms and effective steps against a hand
computation, the NumPy optimizer step against Keras's optimizers, and what the derivation
predicts for a scale-invariant weight, checked on the NumPy demonstration."""

import keras
import numpy as np
import pytest

from bncourse import diagnostics
from bncourse.experiments import experiment_configs
from bncourse.experiments import weight_decay as wd
from bncourse.numpy_bn import batchnorm_backward, batchnorm_forward

X = np.array([[1.0, 2.0], [0.5, 0.1], [2.0, 1.0], [0.3, 0.9]], dtype="float32")
Y = np.array([0, 1, 1, 0])
W1 = np.array([[0.5, -1.0, 0.3], [0.2, -0.5, -0.4]], dtype="float32")
W2 = np.array([[1.0, -1.0], [0.5, 0.5], [-0.3, 0.8]], dtype="float32")


def bn_model(l2=None):
    """Dense(3, no bias) -> BN -> ReLU -> Dense(2, softmax) with the weights above."""
    regularizer = None if l2 is None else keras.regularizers.L2(l2)
    model = keras.Sequential(
        [
            keras.Input((2,)),
            keras.layers.Dense(3, use_bias=False, kernel_regularizer=regularizer, name="hidden"),
            keras.layers.BatchNormalization(name="bn"),
            keras.layers.Activation("relu", name="relu"),
            keras.layers.Dense(2, activation="softmax", name="out"),
        ]
    )
    model.get_layer("hidden").set_weights([W1])
    model.get_layer("out").set_weights([W2, np.zeros(2, "float32")])
    return model


def hidden_gradient():
    """The gradient of the mean cross-entropy with respect to W1, by hand in float64, with
    the course's NumPy BN (Keras's epsilon, gamma 1, beta 0)."""
    z = X.astype(np.float64) @ W1
    bn, cache = batchnorm_forward(z, np.ones(3), np.zeros(3), epsilon=1e-3)
    h = np.maximum(bn, 0.0)
    logits = h @ W2
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    d = p.copy()
    d[np.arange(len(Y)), Y] -= 1.0
    dbn = ((d / len(Y)) @ W2.T) * (bn > 0)
    dz, _, _ = batchnorm_backward(dbn, cache)
    return X.T.astype(np.float64) @ dz


@pytest.mark.keras_backend
@pytest.mark.parametrize("decay", [0.0, 0.5])
def test_the_recorder_gives_the_norm_and_effective_step_of_a_hand_computed_step(decay):
    keras.utils.set_random_seed(0)
    model = bn_model()
    lr = 0.1
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=lr, weight_decay=decay or None),
        loss="sparse_categorical_crossentropy",
    )
    probe = diagnostics.TrainingDiagnostics(X, Y, every=5)
    model.fit(X, Y, batch_size=4, epochs=1, shuffle=False, verbose=0, callbacks=[probe])
    hidden, out = probe.history["layers"]["hidden"], probe.history["layers"]["out"]
    # one step: Keras shrinks W1 by lr * decay * W1, then subtracts lr * gradient (at W1)
    step = lr * hidden_gradient() + lr * decay * W1
    after = W1 - step
    np.testing.assert_allclose(hidden["kernel_norm"], [np.linalg.norm(after)], rtol=1e-5)
    np.testing.assert_allclose(
        hidden["relative_update"], [np.linalg.norm(step) / np.linalg.norm(W1)], rtol=1e-4
    )
    assert hidden["feeds_bn"] is True and out["feeds_bn"] is False
    assert "kernel_norm" not in probe.history["layers"]["bn"]


@pytest.mark.keras_backend
def test_l2_with_plain_sgd_is_sgd_weight_decay_of_twice_the_coefficient():
    l2, lr = 0.05, 0.2
    xs, ys = np.tile(X, (4, 1)), np.tile(Y, 4)

    def train(model, optimizer):
        model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")
        model.fit(xs, ys, batch_size=4, epochs=1, shuffle=False, verbose=0)
        return keras.ops.convert_to_numpy(model.get_layer("hidden").kernel)

    keras.utils.set_random_seed(0)
    with_l2 = train(bn_model(l2), keras.optimizers.SGD(lr))
    keras.utils.set_random_seed(0)
    model = bn_model()
    optimizer = keras.optimizers.SGD(lr, weight_decay=2 * l2)
    kernel = model.get_layer("hidden").kernel
    optimizer.exclude_from_weight_decay(
        var_list=[v for v in model.trainable_variables if v is not kernel]
    )
    decoupled = train(model, optimizer)
    keras.utils.set_random_seed(0)
    plain = train(bn_model(), keras.optimizers.SGD(lr))
    np.testing.assert_allclose(with_l2, decoupled, rtol=1e-5, atol=1e-7)
    assert np.linalg.norm(with_l2) < np.linalg.norm(plain)


@pytest.mark.keras_backend
def test_the_l2_penalty_has_gradient_twice_its_coefficient_times_w(rng):
    w = rng.normal(size=(3, 4))
    penalty = keras.regularizers.L2(0.3)
    # The penalty is quadratic, so a central difference is exact at any step: a large one
    # keeps the rounding of float32 tensors (JAX's default) far below the tolerance.
    h = 0.25
    numeric = np.zeros_like(w)
    for index in np.ndindex(w.shape):
        e = np.zeros_like(w)
        e[index] = h
        up = float(keras.ops.convert_to_numpy(penalty(keras.ops.convert_to_tensor(w + e))))
        down = float(keras.ops.convert_to_numpy(penalty(keras.ops.convert_to_tensor(w - e))))
        numeric[index] = (up - down) / (2 * h)
    np.testing.assert_allclose(numeric, 2 * 0.3 * w, rtol=1e-4, atol=1e-6)


@pytest.mark.keras_backend
@pytest.mark.parametrize(
    "make, optimizer, lr, decay",
    [
        (keras.optimizers.SGD, "sgd", 0.1, 0.2),
        (keras.optimizers.Adam, "adam", 0.01, None),
        (keras.optimizers.AdamW, "adam", 0.01, 0.3),
        (keras.optimizers.Adam, "adam", 0.01, 0.3),  # Adam's weight_decay is AdamW's
    ],
)
def test_the_numpy_step_is_the_step_keras_takes(rng, make, optimizer, lr, decay):
    w0 = rng.normal(size=(4, 3)).astype("float32")
    grads = [rng.normal(size=(4, 3)).astype("float32") for _ in range(3)]
    variable = keras.Variable(w0)
    keras_optimizer = make(lr, weight_decay=decay)
    for g in grads:
        keras_optimizer.apply_gradients([(keras.ops.convert_to_tensor(g), variable)])
    w, state = w0.astype(np.float64), None
    for g in grads:
        w, state = wd.optimizer_step(
            w, g, state, optimizer=optimizer, learning_rate=lr, weight_decay=decay or 0.0
        )
    np.testing.assert_allclose(keras.ops.convert_to_numpy(variable), w, rtol=1e-5, atol=1e-6)


def test_the_numpy_step_refuses_bad_arguments():
    w = np.ones((2, 2))
    with pytest.raises(ValueError, match="optimizer must be one of sgd, adam, got 'rmsprop'"):
        wd.optimizer_step(w, w, optimizer="rmsprop", learning_rate=0.1)
    with pytest.raises(ValueError, match="weight_decay must be a number >= 0, got -1"):
        wd.optimizer_step(w, w, learning_rate=0.1, weight_decay=-1)
    with pytest.raises(ValueError, match="beta_1 must be in"):
        wd.equilibrium_step(0.1, 0.1, beta_1=1.0)
    with pytest.raises(ValueError, match="label_noise must be in"):
        wd.scale_invariant_problem(label_noise=2.0)


def test_the_demonstration_loss_is_scale_invariant_with_orthogonal_gradients(rng):
    problem = wd.scale_invariant_problem(n=256, seed=1)
    x, y = problem["x"][:64], problem["y"][:64]
    w = rng.normal(size=(20, 5))
    loss, grad = wd.loss_and_gradient(w, x, y)
    scaled, grad_scaled = wd.loss_and_gradient(w * np.array([3.0, 0.5, 1, 7, 2]), x, y)
    assert scaled == pytest.approx(loss, rel=1e-5)
    np.testing.assert_allclose(np.sum(w * grad, axis=0), 0.0, atol=1e-6)
    np.testing.assert_allclose(grad_scaled[:, 0], grad[:, 0] / 3.0, rtol=1e-4, atol=1e-9)
    h = 1e-5  # centred differences in float64
    for index in [(0, 0), (7, 2), (19, 4)]:
        e = np.zeros_like(w)
        e[index] = h
        numeric = (wd.loss_and_gradient(w + e, x, y)[0] - wd.loss_and_gradient(w - e, x, y)[0]) / (
            2 * h
        )
        assert numeric == pytest.approx(grad[index], rel=1e-5, abs=1e-9)


def test_without_decay_plain_sgd_only_grows_the_norm_of_a_scale_invariant_weight(rng):
    problem = wd.scale_invariant_problem(seed=2)
    lr = 0.5
    run = wd.descend(
        problem, rng.normal(size=(20, 5)), steps=600, optimizer="sgd", learning_rate=lr
    )
    norms, steps = np.array(run["norm"]), np.array(run["step"])
    assert np.all(np.diff(norms) > 0)
    # Pythagoras: ||w'||^2 = ||w||^2 + ||lr g||^2, the step being orthogonal to w
    np.testing.assert_allclose(norms[1:] ** 2, norms[:-1] ** 2 * (1 + steps[:-1] ** 2), rtol=1e-6)
    # a growing norm makes the effective step shrink
    assert steps[-100:].mean() < steps[:100].mean()


def test_with_decay_the_effective_step_settles_where_the_derivation_says(rng):
    problem = wd.scale_invariant_problem(seed=3)
    w0 = rng.normal(size=(20, 5))
    finals = {}
    for lr, decay in ((0.5, 0.01), (0.125, 0.04)):  # the same product
        run = wd.descend(
            problem, w0, steps=1500, optimizer="sgd", learning_rate=lr, weight_decay=decay
        )
        measured = np.sqrt(np.mean(np.square(run["step"][-800:])))
        assert measured == pytest.approx(wd.equilibrium_step(lr, decay), rel=0.05)
        finals[lr] = np.mean(run["norm"][-800:])
    # the norm settles at (lr / decay)^(1/4) times a constant: a ratio of 16 gives 2
    assert finals[0.5] / finals[0.125] == pytest.approx(2.0, rel=0.1)
    run = wd.descend(
        problem, w0, steps=2500, optimizer="adam", learning_rate=0.01, weight_decay=0.5
    )
    measured = np.sqrt(np.mean(np.square(run["step"][-1500:])))
    assert measured == pytest.approx(wd.equilibrium_step(0.01, 0.5, beta_1=0.9), rel=0.1)
    l2 = wd.descend(problem, w0, steps=300, optimizer="sgd", learning_rate=0.5, l2=0.005)
    decoupled = wd.descend(
        problem, w0, steps=300, optimizer="sgd", learning_rate=0.5, weight_decay=0.01
    )
    np.testing.assert_allclose(l2["w"], decoupled["w"], rtol=1e-10)


def test_epoch_series_takes_the_last_norm_and_the_rms_step_of_each_epoch():
    record = {
        "steps_per_epoch": 10,
        "test_accuracy": [0.5, 0.6],
        "kernels": {
            "dense1": {
                "steps": [1, 5, 10, 15, 20],
                "norm": [1.0, 2.0, 3.0, 4.0, 5.0],
                "relative_update": [0.1, 0.2, 0.2, 0.3, 0.4],
            }
        },
    }
    assert wd.epoch_series(record, "dense1", "norm") == [3.0, 5.0]
    np.testing.assert_allclose(
        wd.epoch_series(record, "dense1", "step"), [np.sqrt(0.09 / 3), np.sqrt(0.25 / 2)]
    )
    with pytest.raises(ValueError, match="quantity must be 'norm' or 'step', got 'size'"):
        wd.epoch_series(record, "dense1", "size")


def test_the_variants_and_their_settings():
    configs = experiment_configs("weight-decay", "full")
    assert [c["variant"] for c in configs] == list(wd.VARIANTS) * 3
    assert {c["seed"] for c in configs} == {0, 1, 2}
    by_variant = {c["variant"]: wd.variant_settings(c) for c in configs}
    assert by_variant["sgd"] == {
        "optimizer": "sgd",
        "learning_rate": configs[0]["sgd_learning_rate"],
        "l2": 0.0,
        "weight_decay": 0.0,
    }
    assert by_variant["sgd-l2"]["l2"] == by_variant["adam-l2"]["l2"] == configs[0]["l2"] > 0
    assert by_variant["adamw"]["weight_decay"] > 0 and by_variant["adamw"]["l2"] == 0
    with pytest.raises(ValueError, match="variant must be one of sgd, sgd-l2"):
        wd.variant_settings({**configs[0], "variant": "lion"})
