"""Judges of ps4-experiment: the tutorial MLP with and without BN, trained within a budget.

The budget, the inputs and the code that runs the student's functions are in
:mod:`bncourse.grading.student.ps4_experiment`; the judges here compare what they returned
with :mod:`bncourse.models` and the reference answers of :mod:`bncourse.grading.solutions`.
"""

from __future__ import annotations

import numpy as np

from .compare import (
    all_finite,
    all_nan,
    all_true,
    allclose,
    array_equal,
    assert_close,
    assert_equal,
)
from .registry import JudgeRegistry, reference
from .student.messages import depends_on
from .student.ps4_experiment import BUDGET, FIELDS, HISTORY_KEYS, layer_ops, unflatten

JUDGES = JudgeRegistry("ps4-experiment")


def _first_difference(ops: list, want: list) -> str:
    """Where the student's layers first differ from the tutorial's, in a few words."""
    for i, (got, expected) in enumerate(zip(ops, want)):
        if got != expected:
            return f"{i + 1} is {got}, expected {expected}"
    return f"count {len(ops)}, expected {len(want)}"


# Any correct training run within the budget gets well above this (about 0.75-0.8); a model
# that does not learn stays near 0.1.
MIN_ACCURACY = 0.5
# The returned model is evaluated on these test images (the budget uses 0-999). Two halves of
# the test set differ by about a standard error (0.01 at this size) for a trained model; a
# made-up accuracy or an untrained model differs by far more.
HELD_OUT = (1000, 3000)
MAX_GAP = 0.08
MODEL_MISMATCH = "does not match the model you returned"


# ---------------------------------------------------------------- the model


@JUDGES.judge("model_visible")
@JUDGES.judge("model")
def _judge_model(inputs, outputs):
    models = reference("bncourse.models")
    lines = []
    for variant in inputs["variant"]:
        variant = str(variant)
        expected = models.build_mlp(None if variant == "none" else variant)
        ops = list(outputs[f"{variant}/ops"])
        want = layer_ops(expected)
        if ops != want:
            raise AssertionError(
                f"build_model({variant!r}): layer {_first_difference(ops, want)}\n"
                "hint: a Dense layer directly before BN takes use_bias=False (beta does its job)"
            )
        assert_equal(
            "output shape", tuple(int(d) for d in outputs[f"{variant}/output_shape"]), (-1, 10)
        )
        params = tuple(int(p) for p in outputs[f"{variant}/params"])
        want_params = (
            sum(int(np.prod(w.shape)) for w in expected.trainable_weights),
            sum(int(np.prod(w.shape)) for w in expected.non_trainable_weights),
        )
        assert_equal(f"(trainable, non-trainable) parameters of {variant!r}", params, want_params)
        lines.append(
            f"{variant}: {' -> '.join(ops)}; {params[0]:,} trainable and "
            f"{params[1]:,} non-trainable parameters"
        )
    return lines


# ---------------------------------------------------------------- training within the budget


@JUDGES.judge("train_visible")
@JUDGES.judge("train")
def _judge_train(inputs, outputs):
    variant = str(inputs["variant"][0])
    keys = [str(k) for k in outputs["keys"]]
    missing = [k for k in HISTORY_KEYS if k not in keys]
    if missing:
        raise AssertionError(
            f"history is missing {', '.join(missing)} (it has: {', '.join(keys)}); compile with "
            "metrics=['accuracy'] and pass validation_data to fit"
        )
    epochs = BUDGET["epochs"]
    for key in HISTORY_KEYS:
        values = outputs[f"history/{key}"]
        if values.shape != (epochs,):
            raise AssertionError(
                f"history[{key!r}] has {values.size} values; the budget is "
                f"{epochs} epochs, one value each"
            )
        if not all_finite(values):
            raise AssertionError(f"history[{key!r}] has non-finite values: {values}")
        if "accuracy" in key and not all_true((values >= 0) & (values <= 1)):
            raise AssertionError(f"history[{key!r}] must be fractions in [0, 1]: {values}")
    name = str(outputs["optimizer"][0])
    lr, momentum, nesterov = (float(v) for v in outputs["optimizer_numbers"])
    if (
        name != "SGD"
        or abs(lr - BUDGET["learning_rate"]) > 1e-7
        or abs(momentum - BUDGET["momentum"]) > 1e-7
        or nesterov != 1.0
    ):
        raise AssertionError(
            f"the optimizer is {name}(learning_rate={lr:g}, momentum={momentum:g}, "
            f"nesterov={bool(nesterov)})\n"
            "hint: the tutorial's is SGD(learning_rate=0.01, momentum=0.9, nesterov=True)"
        )
    models = reference("bncourse.models")
    want = layer_ops(models.build_mlp(None if variant == "none" else variant))
    ops = [str(o) for o in outputs["ops"]]
    own_ops = [str(o) for o in outputs["own_ops"]] if "own_ops" in outputs else None
    # error carried forward: a wrong build_model costs its own part; the model it builds
    # is judged as that model
    carried = own_ops is not None and own_ops != want
    if ops != want and not (carried and ops == own_ops):
        if carried:
            raise depends_on("train_variant", "build_model")
        raise AssertionError(
            f"train_variant({variant!r}) trained a model whose layers are not "
            "build_model's for that variant"
        )
    test_accuracy = float(outputs["test_accuracy"][0])
    final_val = float(outputs["history/val_accuracy"][-1])
    for label, value in (
        ("test accuracy", test_accuracy),
        ("final validation accuracy", final_val),
    ):
        if not MIN_ACCURACY <= value <= 1.0:
            raise AssertionError(
                f"{label} {value:.3f} is below {MIN_ACCURACY}; a correct run reaches about "
                "0.75\nhint: check the scaling (/ 255), the loss and the labels"
            )
    held_out = _held_out_accuracy(variant, outputs, as_returned=carried)
    if held_out < MIN_ACCURACY or abs(held_out - test_accuracy) > MAX_GAP:
        raise AssertionError(
            f"the test accuracy you report ({test_accuracy:.3f}) {MODEL_MISMATCH}\n"
            f"hint: it reaches {held_out:.3f} on unseen test images; return the model you "
            "trained"
        )
    return [
        f"{variant}: {epochs} epochs, final validation accuracy {final_val:.3f}, "
        f"test accuracy {test_accuracy:.3f} (the model reaches {held_out:.3f} on held-out "
        "test images), optimizer SGD as specified"
        + (", given your build_model (wrong: fix it first)" if carried else "")
    ]


def _held_out_images():
    """Test images after the budget's: the grading sandbox never has them."""
    data = reference("bncourse.data")
    _, (x_test, y_test) = data.load_dataset("fashion_mnist", download=False)
    start, stop = HELD_OUT
    return (x_test[start:stop] / 255.0).astype("float32"), y_test[start:stop]


def _held_out_accuracy(variant: str, outputs: dict, as_returned: bool = False) -> float:
    """Accuracy on held-out images of the tutorial model with the returned weights; with
    ``as_returned``, of the returned model's own architecture (from its Keras JSON, which
    holds no code: Keras refuses lambda layers in its safe mode), for a model built by the
    student's wrong build_model."""
    models = reference("bncourse.models")
    if as_returned:
        try:
            model = models.keras.models.model_from_json(str(outputs["model_json"]))
        except Exception as err:  # not a plain Keras model: nothing the judge can rebuild
            raise AssertionError(
                f"the model you returned cannot be rebuilt from its "
                f"architecture ({type(err).__name__})"
            ) from None
    else:
        model = models.build_mlp(None if variant == "none" else variant)
    keys = sorted(k for k in outputs if k.startswith("weights/"))
    try:
        model.set_weights([outputs[k] for k in keys])
    except ValueError as err:
        raise AssertionError(
            f"the weights of the model you returned do not fit "
            f"build_model({variant!r})'s layers ({err})"
        ) from None
    x, y = _held_out_images()
    predicted = model.predict(x, batch_size=500, verbose=0).argmax(axis=1)
    return float((predicted == y).mean())


# ---------------------------------------------------------------- the summary table


@JUDGES.judge("summary_visible")
@JUDGES.judge("summary")
def _judge_summary(inputs, outputs):
    expected = reference("bncourse.grading.solutions").summarize(unflatten(inputs))
    lines = []
    for v, row in expected.items():
        for f in FIELDS:
            hints = []
            if f == "best_epoch":
                val = np.array(unflatten(inputs)[v][0]["val_accuracy"])
                hints = [
                    (
                        "you count epochs from 0; count them from 1",
                        np.array([float(np.argmax(val))]),
                    ),
                    (
                        "you take the last maximum; take the first",
                        np.array([float(len(val) - np.argmax(val[::-1]))]),
                    ),
                ]
            assert_close(
                f"{v}/{f}",
                outputs[f"{v}/{f}"],
                np.array([float(row[f])]),
                rtol=0,
                atol=1e-12,
                hints=hints,
            )
        lines.append(f"{v}: " + ", ".join(f"{f} {row[f]:g}" for f in FIELDS))
    return lines


# ---------------------------------------------------------------- the figure


@JUDGES.judge("plot_visible")
@JUDGES.judge("plot")
def _judge_plot(inputs, outputs):
    results = unflatten(inputs)
    xlabel, ylabel = str(outputs["xlabel"][0]), str(outputs["ylabel"][0])
    if "epoch" not in xlabel.lower():
        raise AssertionError(f"the x axis must be labelled with the epoch; its label is {xlabel!r}")
    if "accuracy" not in ylabel.lower():
        raise AssertionError(f"the y axis must say it shows accuracy; its label is {ylabel!r}")
    legend = [str(t) for t in outputs["legend"] if str(t)]
    if not legend:
        raise AssertionError(
            "the figure has no legend: call ax.legend() after plotting labelled lines"
        )
    labels = [str(s) for s in outputs["labels"]]
    styles = [str(s) for s in outputs["styles"]]
    ydata, xdata = outputs["ydata"], outputs["xdata"]
    for variant, (history, _) in results.items():
        for key, style, what in (
            ("val_accuracy", "-", "validation accuracy (solid)"),
            ("accuracy", "--", "training accuracy (dashed)"),
        ):
            want = np.array(history[key])
            n = want.size
            found = [
                i
                for i in range(len(labels))
                if allclose(ydata[i, :n], want) and all_nan(ydata[i, n:])
            ]
            if not found:
                raise AssertionError(f"no line shows the {what} of {variant!r}")
            i = found[0]
            if styles[i] != style:
                raise AssertionError(
                    f"the {what} line of {variant!r} has linestyle {styles[i]!r}; use {style!r}"
                )
            if variant not in labels[i] or not any(variant in t for t in legend):
                raise AssertionError(
                    f"the {what} line of {variant!r} must carry a label naming {variant!r} "
                    f"that appears in the legend (its label is {labels[i]!r})"
                )
            epochs = xdata[i, :n]
            if not array_equal(epochs, np.arange(1, n + 1)):
                raise AssertionError(
                    f"the {what} line of {variant!r} must be plotted against epochs 1..{n}; "
                    f"its x values are {epochs}"
                )
    return [
        f"{len(results)} variants: validation solid, training dashed, epochs from 1, "
        f"axes labelled {xlabel!r} and {ylabel!r}, legend present"
    ]
