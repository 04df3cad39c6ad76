"""The training diagnostics against a hand computation on a tiny model."""

import numpy as np
import pytest

import keras

from bncourse import diagnostics

pytestmark = pytest.mark.keras_backend


def tiny_model():
    """Dense(3, relu) -> Dense(2, softmax) with fixed weights; the second hidden unit's
    weights are negative so that it is dead on the (positive) probe inputs."""
    model = keras.Sequential(
        [
            keras.Input((2,)),
            keras.layers.Dense(3, activation="relu", name="hidden"),
            keras.layers.Dense(2, activation="softmax", name="out"),
        ]
    )
    w1 = np.array([[0.5, -1.0, 0.3], [0.2, -0.5, -0.4]], dtype="float32")
    w2 = np.array([[1.0, -1.0], [0.5, 0.5], [-0.3, 0.8]], dtype="float32")
    model.layers[0].set_weights([w1, np.zeros(3, "float32")])
    model.layers[1].set_weights([w2, np.zeros(2, "float32")])
    return model, w1, w2


X = np.array([[1.0, 2.0], [0.5, 0.1], [2.0, 1.0], [0.3, 0.9]], dtype="float32")
Y = np.array([0, 1, 1, 0])


def by_hand(w1, w2, b1=0.0, b2=0.0):
    """Hidden outputs, probabilities, and the gradients of the mean cross-entropy with
    respect to the kernels and the biases."""
    z = X.astype(np.float64) @ w1 + b1
    h = np.maximum(z, 0.0)
    logits = h @ w2 + b2
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    d = p.copy()
    d[np.arange(len(Y)), Y] -= 1.0
    d /= len(Y)
    dz = (d @ w2.T) * (z > 0)
    return h, p, (X.T @ dz, dz.sum(0)), (h.T @ d, d.sum(0))


def test_output_statistics_count_zeros_dead_units_and_saturation():
    h = np.array([[0.0, 0.5, 0.99], [0.0, 0.0, 0.01]])
    stats = diagnostics.output_statistics(h, "sigmoid")
    assert stats["zero"] == pytest.approx(3 / 6)
    assert stats["dead"] == pytest.approx(1 / 3)  # the first unit is 0 for both examples
    assert stats["saturated"] == pytest.approx(5 / 6)  # the three 0s, 0.99 and 0.01
    assert stats["mean"] == pytest.approx(h.mean()) and stats["std"] == pytest.approx(h.std())
    assert sum(stats["histogram"]["counts"]) == 6
    assert diagnostics.output_statistics(np.array([[0.5, -0.95]]), "tanh")["saturated"] == 0.0
    assert diagnostics.output_statistics(np.array([[1.0]]), "relu")["saturated"] is None


def test_the_callback_matches_a_hand_computation():
    keras.utils.set_random_seed(0)
    model, w1, w2 = tiny_model()
    lr = 0.1
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=lr), loss="sparse_categorical_crossentropy"
    )
    probe = diagnostics.TrainingDiagnostics(X, Y, every=2)
    # one step on the probe batch itself: the update is exactly -lr times the gradient
    model.fit(X, Y, batch_size=4, epochs=1, shuffle=False, verbose=0, callbacks=[probe])
    assert probe.history["steps"] == [1]
    hidden = probe.history["layers"]["hidden"]
    out = probe.history["layers"]["out"]
    _, _, (g1, gb1), (g2, gb2) = by_hand(w1, w2)
    # the outputs and gradients were recorded after the step: recompute at the new weights
    h_new, p_new, (g1_new, _), (g2_new, _) = by_hand(
        w1 - lr * g1, w2 - lr * g2, -lr * gb1, -lr * gb2
    )
    np.testing.assert_allclose(hidden["output"][0]["mean"], h_new.mean(), rtol=1e-5)
    np.testing.assert_allclose(hidden["output"][0]["std"], h_new.std(), rtol=1e-5)
    assert hidden["output"][0]["dead"] == pytest.approx(1 / 3)
    np.testing.assert_allclose(out["output"][0]["mean"], p_new.mean(), rtol=1e-5)
    np.testing.assert_allclose(hidden["gradient"]["std"][0], g1_new.std(), rtol=1e-4)
    np.testing.assert_allclose(out["gradient"]["mean"][0], g2_new.mean(), atol=1e-7)
    np.testing.assert_allclose(hidden["update_ratio"][0], np.std(lr * g1) / np.std(w1), rtol=1e-4)
    np.testing.assert_allclose(out["update_ratio"][0], np.std(lr * g2) / np.std(w2), rtol=1e-4)


def test_recording_leaves_bn_moving_statistics_and_training_alone():
    def run(with_probe):
        keras.utils.set_random_seed(1)
        model = keras.Sequential(
            [
                keras.Input((2,)),
                keras.layers.Dense(4, use_bias=False, name="dense"),
                keras.layers.BatchNormalization(name="bn"),
                keras.layers.Activation("relu", name="relu"),
                keras.layers.Dense(2, activation="softmax", name="out"),
            ]
        )
        model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
        callbacks = [diagnostics.TrainingDiagnostics(X, Y, every=1)] if with_probe else []
        model.fit(
            np.tile(X, (8, 1)),
            np.tile(Y, 8),
            batch_size=4,
            epochs=1,
            shuffle=False,
            verbose=0,
            callbacks=callbacks,
        )
        return [keras.ops.convert_to_numpy(v) for v in model.weights], callbacks

    plain, _ = run(False)
    watched, (probe,) = run(True)
    for a, b in zip(plain, watched):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    assert probe.history["steps"] == list(range(1, 9))
    assert list(probe.history["layers"]) == ["dense", "bn", "relu", "out"]
    # in training mode BN normalises the probe with its own statistics: mean beta (near 0
    # after a few SGD steps), standard deviation gamma (near 1); with its moving averages
    # (inference mode) it would pass the Dense outputs' own spread through almost unchanged
    bn = probe.history["layers"]["bn"]["output"][0]
    dense = probe.history["layers"]["dense"]["output"][0]
    assert abs(bn["mean"]) < 0.05 and abs(bn["std"] - 1.0) < 0.05
    assert abs(dense["std"] - 1.0) > 0.1  # (0.83 here)
    assert "gradient" not in probe.history["layers"]["relu"]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"every": 0}, "every must be a positive integer, got 0"),
        ({"first": True}, "first must be a positive integer, got True"),
        ({"x": X[:2]}, "x and y must be one non-empty probe batch, got 2 inputs and 4 labels"),
    ],
)
def test_bad_arguments_are_named(kwargs, match):
    args = {"x": X, "y": Y, **kwargs}
    with pytest.raises(ValueError, match=match):
        diagnostics.TrainingDiagnostics(args.pop("x"), args.pop("y"), **args)


def test_plots_draw_one_line_per_layer():
    import matplotlib

    matplotlib.use("Agg")
    keras.utils.set_random_seed(0)
    model, _, _ = tiny_model()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    probe = diagnostics.TrainingDiagnostics(X, Y, every=1)
    model.fit(
        np.tile(X, (3, 1)), np.tile(Y, 3), batch_size=4, epochs=1, verbose=0, callbacks=[probe]
    )
    ax = diagnostics.plot_diagnostics(probe.history, "update ratio")
    assert ax.get_yscale() == "log" and len(ax.get_lines()) == 3  # two layers + the guide
    ax = diagnostics.plot_histograms(probe.history)
    assert len(ax.get_lines()) == 2 and ax.get_title() == "layer outputs at step 3"
    with pytest.raises(ValueError, match="quantity must be one of"):
        diagnostics.plot_diagnostics(probe.history, "weight norm")


def test_first_steps_are_recorded_and_a_non_finite_probe_is_skipped():
    keras.utils.set_random_seed(0)
    model, _, _ = tiny_model()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    probe = diagnostics.TrainingDiagnostics(X, Y, every=4, first=2)
    model.fit(
        np.tile(X, (9, 1)), np.tile(Y, 9), batch_size=4, epochs=1, verbose=0, callbacks=[probe]
    )
    assert probe.history["steps"] == [1, 2, 4, 8] and probe.history["skipped"] == []
    # a diverged model: its outputs are not finite, so nothing is recorded for it
    model.layers[0].kernel.assign(np.full((2, 3), np.inf, dtype="float32"))
    probe.record()
    assert probe.history["steps"] == [1, 2, 4, 8] and probe.history["skipped"] == [9]
    hidden = probe.history["layers"]["hidden"]
    assert len(hidden["output"]) == len(hidden["update_ratio"]) == 4


def test_any_layer_with_moving_statistics_counts_as_bn():
    from bncourse.keras_bn import BatchNorm

    keras.utils.set_random_seed(2)
    model = keras.Sequential(
        [
            keras.Input((2,)),
            keras.layers.Dense(4, use_bias=False, name="dense"),
            BatchNorm(name="own_bn"),
            keras.layers.Dense(2, activation="softmax", name="out"),
        ]
    )
    probe = diagnostics.TrainingDiagnostics(X, Y)
    probe.set_model(model)
    probe.record()
    assert list(probe.history["layers"]) == ["dense", "own_bn", "out"]
    bn = probe.history["layers"]["own_bn"]["output"][0]
    assert abs(bn["mean"]) < 1e-5 and abs(bn["std"] - 1.0) < 0.05  # normalised in training mode
