"""Producers of ps4-experiment: the tutorial MLP with and without BN, trained within a budget.

The budget (:data:`BUDGET`) is what the notebook trains on and what the checks hold it to:
a subset of Fashion-MNIST and a few epochs, so that grading one submission takes seconds.
The full protocol's results belong to the book; the notebook shows them for comparison.
The notebook imports :data:`BUDGET`, :data:`VARIANTS` and :func:`load_budget_data` from here;
the judges are in :mod:`bncourse.grading.experiment`.
"""

from __future__ import annotations

import numpy as np

from .producers import ProducerRegistry

PRODUCERS = ProducerRegistry("ps4-experiment")

VARIANTS = ("none", "before", "after")
BUDGET = {
    "train_size": 2000,  # images 5000-6999 of the training set
    "val_size": 500,  # images 0-499 of the training set (the tutorial's validation images)
    "test_size": 1000,  # the first 1000 test images
    "epochs": 3,
    "batch_size": 32,
    "learning_rate": 0.01,
    "momentum": 0.9,
}
HISTORY_KEYS = ("accuracy", "loss", "val_accuracy", "val_loss")


def load_budget_data():
    """``(x_train, y_train), (x_val, y_val), (x_test, y_test)`` within the budget, / 255."""
    from bncourse.data import load_dataset

    (x, y), (x_test, y_test) = load_dataset("fashion_mnist")
    b = BUDGET
    train = slice(5000, 5000 + b["train_size"])
    val = slice(0, b["val_size"])

    def scale(a):
        return (a / 255.0).astype("float32")

    return (
        (scale(x[train]), y[train]),
        (scale(x[val]), y[val]),
        (scale(x_test[: b["test_size"]]), y_test[: b["test_size"]]),
    )


# ---------------------------------------------------------------- the model


def layer_ops(model) -> list[str]:
    """The model as a list of operations, independent of how the layers were spelt."""
    import keras

    ops = []
    for layer in model.layers:
        kind = type(layer).__name__
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if isinstance(layer, keras.layers.Flatten):
            ops.append("flatten")
        elif isinstance(layer, keras.layers.Dense):
            ops.append(f"dense{layer.units}{'+bias' if layer.use_bias else ''}")
            act = keras.activations.serialize(layer.activation)
            act = act if isinstance(act, str) else act.get("config", {}).get("name", str(act))
            if act != "linear":
                ops.append(act)
        elif isinstance(layer, keras.layers.BatchNormalization):
            ops.append("bn")
        elif isinstance(layer, keras.layers.Activation):
            act = keras.activations.serialize(layer.activation)
            ops.append(act if isinstance(act, str) else act.get("config", {}).get("name", "?"))
        elif isinstance(layer, keras.layers.ReLU):
            ops.append("relu")
        elif isinstance(layer, keras.layers.Softmax):
            ops.append("softmax")
        else:
            ops.append(kind)
    return ops


def _model_inputs():
    return {"variant": np.array(["none"])}


def _model_inputs_all():
    return {"variant": np.array(list(VARIANTS))}


def _produce_model(fn, inputs):
    import keras

    out = {}
    for variant in inputs["variant"]:
        variant = str(variant)
        model = fn(variant)
        if not isinstance(model, keras.Model):
            raise AssertionError(
                f"build_model({variant!r}) must return a keras.Model, got {type(model).__name__}"
            )
        out[f"{variant}/ops"] = np.array(layer_ops(model) or [""])
        out[f"{variant}/output_shape"] = np.array(
            [-1 if d is None else d for d in model.output_shape]
        )
        out[f"{variant}/params"] = np.array(
            [
                sum(int(np.prod(w.shape)) for w in model.trainable_weights),
                sum(int(np.prod(w.shape)) for w in model.non_trainable_weights),
            ]
        )
    return out


PRODUCERS.add(
    "model_visible",
    "build_model('none'): the tutorial MLP without BN",
    _model_inputs,
    _produce_model,
)
PRODUCERS.add(
    "model", "build_model for 'none', 'before' and 'after'", _model_inputs_all, _produce_model
)


# ---------------------------------------------------------------- training within the budget


def _train_inputs():
    return {"variant": np.array(["none"]), "seed": np.array([0])}


def _train_inputs_hidden():
    return {"variant": np.array(["after"]), "seed": np.array([1])}


def _optimizer_facts(model):
    opt = model.optimizer
    if opt is None:
        raise AssertionError("the model you return was not compiled (model.optimizer is None)")
    config = opt.get_config()
    return {
        "optimizer": np.array([type(opt).__name__]),
        "optimizer_numbers": np.array(
            [
                float(np.asarray(config.get("learning_rate", np.nan))),
                float(config.get("momentum", np.nan)),
                float(bool(config.get("nesterov", False))),
            ]
        ),
    }


def _produce_train(fn, inputs, uses):
    import keras

    variant, seed = str(inputs["variant"][0]), int(inputs["seed"][0])
    result = fn(variant, seed=seed)
    if type(result) is not tuple or len(result) != 3:
        raise AssertionError("train_variant must return a tuple (model, history, test_accuracy)")
    model, history, test_accuracy = result
    if not isinstance(model, keras.Model):
        raise AssertionError(f"the model returned is a {type(model).__name__}, not a keras.Model")
    if type(history) is not dict:
        raise AssertionError(
            f"history must be a dict such as History.history, got {type(history).__name__}"
        )
    out = {"keys": np.array(sorted(str(k) for k in history) or [""])}
    for key in HISTORY_KEYS:
        if key in history:
            values = [float(v) for v in history[key]]
            out[f"history/{key}"] = np.array(values, dtype=float)
    if not isinstance(test_accuracy, (float, np.floating)):
        raise AssertionError(f"test_accuracy must be a float, got {type(test_accuracy).__name__}")
    out["test_accuracy"] = np.array([float(test_accuracy)])
    out.update(_optimizer_facts(model))
    out["ops"] = np.array(layer_ops(model) or [""])
    # the trained model itself, as plain arrays: the judge evaluates it on images that
    # never enter the sandbox
    for i, weight in enumerate(model.get_weights()):
        out[f"weights/{i:03d}"] = np.asarray(weight)
    # for error carried forward: the layers of the student's own build_model for this
    # variant, and the returned model's architecture as Keras's JSON (data, not code), so
    # that a model built by a wrong build_model can be judged as that model
    out["model_json"] = np.array(model.to_json())
    own = uses.get("build_model")
    if callable(own):
        try:
            out["own_ops"] = np.array(layer_ops(own(variant)) or [""])
        except Exception:  # build_model's own test cell says what is wrong with it
            pass
    return out


PRODUCERS.add(
    "train_visible",
    "train_variant('none'): history, optimizer and accuracy",
    _train_inputs,
    _produce_train,
    depends=("build_model",),
)
PRODUCERS.add(
    "train",
    "train_variant('after', seed=1) within the budget",
    _train_inputs_hidden,
    _produce_train,
    depends=("build_model",),
)


# ---------------------------------------------------------------- the summary table


def _synthetic_results(seed: int, variants=VARIANTS, epochs=4):
    rng = np.random.default_rng(seed)
    results = {}
    for variant in variants:
        val = np.round(rng.uniform(0.6, 0.9, epochs), 3)
        if variant == "before":
            val[1] = val[3] = val.max()  # a tie: the first maximum counts
        history = {
            "accuracy": list(np.round(rng.uniform(0.6, 0.95, epochs), 3)),
            "loss": list(np.round(rng.uniform(0.2, 1.0, epochs), 3)),
            "val_accuracy": [float(v) for v in val],
            "val_loss": list(np.round(rng.uniform(0.2, 1.0, epochs), 3)),
        }
        results[variant] = (history, float(np.round(rng.uniform(0.6, 0.9), 4)))
    return results


def _flatten(results):
    flat = {"variants": np.array(list(results))}
    for v, (history, test_accuracy) in results.items():
        for key, values in history.items():
            flat[f"{v}/{key}"] = np.array(values, dtype=float)
        flat[f"{v}/test_accuracy"] = np.array([test_accuracy])
    return flat


def unflatten(flat):
    """The inverse of :func:`_flatten`: ``{variant: (history, test_accuracy)}`` again."""
    results = {}
    for v in (str(x) for x in flat["variants"]):
        history = {k: [float(x) for x in flat[f"{v}/{k}"]] for k in HISTORY_KEYS}
        results[v] = (history, float(flat[f"{v}/test_accuracy"][0]))
    return results


def _summary_inputs():
    return _flatten(_synthetic_results(20, variants=("none", "after"), epochs=3))


def _summary_inputs_hidden():
    return _flatten(_synthetic_results(21))


FIELDS = ("test_accuracy", "best_val_accuracy", "best_epoch")


def _produce_summary(fn, inputs):
    table = fn(unflatten(inputs))
    if type(table) is not dict:
        raise AssertionError(f"summarize must return a dict, got {type(table).__name__}")
    out = {}
    for v in (str(x) for x in inputs["variants"]):
        if v not in table or type(table[v]) is not dict:
            raise AssertionError(f"summarize's result has no dict for variant {v!r}")
        for f in FIELDS:
            if f not in table[v]:
                raise AssertionError(f"summarize's result for {v!r} has no {f!r}")
            value = table[v][f]
            if isinstance(value, bool) or not isinstance(
                value, (int, float, np.integer, np.floating)
            ):
                raise AssertionError(f"{v}/{f} must be a number, got {type(value).__name__}")
            out[f"{v}/{f}"] = np.array([float(value)])
    return out


PRODUCERS.add("summary_visible", "summarize on two variants", _summary_inputs, _produce_summary)
PRODUCERS.add(
    "summary", "summarize on three variants, with a tie", _summary_inputs_hidden, _produce_summary
)


# ---------------------------------------------------------------- the figure


def _plot_inputs():
    return _flatten(_synthetic_results(30, variants=("none", "after"), epochs=3))


def _plot_inputs_hidden():
    return _flatten(_synthetic_results(31, epochs=5))


def _produce_plot(fn, inputs):
    import matplotlib.axes
    import matplotlib.pyplot as plt

    plt.close("all")
    ax = fn(unflatten(inputs))
    if not isinstance(ax, matplotlib.axes.Axes):
        raise AssertionError(f"plot_curves must return a matplotlib Axes, got {type(ax).__name__}")
    legend = ax.get_legend()
    lines = ax.get_lines()
    width = max((len(line.get_ydata()) for line in lines), default=0)
    ydata = np.full((len(lines), width), np.nan)
    xdata = np.full((len(lines), width), np.nan)
    for i, line in enumerate(lines):
        y = np.asarray(line.get_ydata(), dtype=float)
        x = np.asarray(line.get_xdata(), dtype=float)
        ydata[i, : y.size] = y
        xdata[i, : x.size] = x
    out = {
        "xlabel": np.array([ax.get_xlabel()]),
        "ylabel": np.array([ax.get_ylabel()]),
        "legend": np.array([t.get_text() for t in legend.get_texts()] if legend else [""]),
        "labels": np.array([str(line.get_label()) for line in lines] or [""]),
        "styles": np.array([str(line.get_linestyle()) for line in lines] or [""]),
        "ydata": ydata,
        "xdata": xdata,
    }
    plt.close("all")
    return out


PRODUCERS.add("plot_visible", "plot_curves on two variants", _plot_inputs, _produce_plot)
PRODUCERS.add(
    "plot", "plot_curves on three variants and five epochs", _plot_inputs_hidden, _produce_plot
)
