"""ps4-experiment graded for real: a class of good and bad submissions, autograded in one run.

See ``nbgrader_course.py`` for how a class is built and checked. Each submission trains the
MLP within the problem set's budget, so this class takes minutes.
"""

from __future__ import annotations

import copy

import pytest

from nbgrader_course import (
    Case,
    check_case,
    check_class_outputs,
    common_cases,
    dug_out,
    grade_class,
    insert_after,
    replace_cell,
)

pytestmark = pytest.mark.slow

_SUMMARIZE_ZERO_BASED = (
    "def summarize(results):\n"
    "    table = {}\n"
    "    for bn, (history, test_accuracy) in results.items():\n"
    "        val = history['val_accuracy']\n"
    "        best = max(range(len(val)), key=lambda i: (val[i], -i))\n"
    "        table[bn] = {'test_accuracy': test_accuracy,\n"
    "                     'best_val_accuracy': val[best], 'best_epoch': best}\n"
    "    return table\n"
)


def _looks_inside(nb):
    """A copy of ``nb`` with the optional, ungraded part switched on (its own cell, which
    has no grade id), and a line that shows in the feedback when the part ran to its end."""
    nb = copy.deepcopy(nb)
    (cell,) = [c for c in nb.cells if c.source.startswith("LOOK_INSIDE = False")]
    cell.source = cell.source.replace("LOOK_INSIDE = False", "LOOK_INSIDE = True", 1)
    cell.source += (
        "\nprint('looked inside:', *(f'{bn} {len(h[\"steps\"])} records'"
        " for bn, h in inside.items()))"
    )
    return nb


EXPERIMENT_CASES = (
    common_cases("test_build_model")
    + [
        Case(
            "untrained_model",  # a model that never saw the data, and a history to match the budget
            lambda c: replace_cell(
                c.solution,
                "train_variant",
                (
                    "def train_variant(bn, seed=0):\n"
                    "    keras.utils.set_random_seed(seed)\n"
                    "    model = build_model(bn)\n"
                    "    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.01, momentum=0.9,\n"
                    "                  nesterov=True), loss='sparse_categorical_crossentropy',\n"
                    "                  metrics=['accuracy'])\n"
                    "    e = BUDGET['epochs']\n"
                    "    history = {'accuracy': [0.6, 0.7, 0.78][:e], 'loss': [1.0, 0.8, 0.6][:e],\n"
                    "               'val_accuracy': [0.65, 0.72, 0.77][:e],\n"
                    "               'val_loss': [0.9, 0.75, 0.62][:e]}\n"
                    "    return model, history, 0.78\n"
                ),
            ),
            failing=("test_train_variant",),
            flags=("model does not match its reported results",),
            feedback_contains=("does not match the model you returned",),
        ),
        Case(
            "passes_visible_only",
            lambda c: replace_cell(
                c.solution,
                "plot_curves",
                (
                    "def plot_curves(results):\n"
                    "    fig, ax = plt.subplots()\n"
                    "    for bn, (history, _) in results.items():\n"
                    "        ax.plot([1, 2, 3], history['val_accuracy'], '-', label=f'{bn} (validation)')\n"
                    "        ax.plot([1, 2, 3], history['accuracy'], '--', label=f'{bn} (training)')\n"
                    "    ax.set_xlabel('epoch')\n"
                    "    ax.set_ylabel('accuracy')\n"
                    "    ax.legend()\n"
                    "    return ax\n"
                ),
            ),
            failing=("test_plot_curves",),
            visible_pass=("test_plot_curves",),
        ),
        Case(
            "partial",
            lambda c: replace_cell(
                replace_cell(
                    c.solution,
                    "summarize",
                    "def summarize(results):\n    raise NotImplementedError()\n",
                ),
                "plot_curves",
                "def plot_curves(results):\n    raise NotImplementedError()\n",
            ),
            failing=("test_summarize", "test_plot_curves"),
        ),
        Case(
            "epochs_from_zero",
            lambda c: replace_cell(c.solution, "summarize", _SUMMARIZE_ZERO_BASED),
            failing=("test_summarize",),
            feedback_contains=("you count epochs from 0",),
        ),
        Case(
            "edited_test",
            lambda c: replace_cell(
                replace_cell(
                    c.solution,
                    "build_model",
                    (
                        "def build_model(bn):\n"
                        "    return keras.Sequential([\n"
                        "        keras.Input(shape=(28, 28)), keras.layers.Flatten(),\n"
                        "        keras.layers.Dense(300, activation='relu'),\n"
                        "        keras.layers.Dense(200, activation='relu'),\n"
                        "        keras.layers.Dense(100, activation='relu'),\n"
                        "        keras.layers.Dense(10, activation='softmax')])\n"
                    ),
                ),
                "test_build_model",
                'print("ok")',
            ),
            # the model its wrong build_model makes trains well: judged as that model
            failing=("test_build_model",),
            feedback_contains=("note: right given your build_model, which is wrong: fix it first",),
        ),
        Case(
            "infinite_loop",
            lambda c: replace_cell(
                c.solution, "summarize", "def summarize(results):\n    while True:\n        pass\n"
            ),
            failing=("test_summarize",),
            status="timed out",
            flags=("timed out",),
        ),
        Case(
            "patched_allclose",
            lambda c: insert_after(
                replace_cell(c.solution, "summarize", _SUMMARIZE_ZERO_BASED),
                "setup",
                "np.allclose = lambda *args, **kwargs: True\n"
                "np.isclose = lambda *args, **kwargs: True\n"
                "np.testing.assert_allclose = lambda *args, **kwargs: None",
            ),
            failing=("test_summarize",),
        ),
        Case(
            "always_equal_object",
            lambda c: replace_cell(
                c.solution,
                "summarize",
                (
                    "class AlwaysEqual(dict):\n"
                    "    def __eq__(self, other):\n"
                    "        return True\n"
                    "    def __getitem__(self, key):\n"
                    "        return self\n"
                    "    def __contains__(self, key):\n"
                    "        return True\n"
                    "def summarize(results):\n"
                    "    return AlwaysEqual()\n"
                ),
            ),
            failing=("test_summarize",),
            feedback_contains=("summarize must return a dict",),
        ),
        Case(
            "patched_checks",
            lambda c: insert_after(
                replace_cell(c.solution, "summarize", _SUMMARIZE_ZERO_BASED),
                "setup",
                "import dataclasses\n"
                "import bncourse.grading.experiment as _e\n"
                "for _id in ('ps4-experiment.summary_visible', 'ps4-experiment.summary'):\n"
                "    _e.CHECKS[_id] = dataclasses.replace(_e.CHECKS[_id],\n"
                "                                         judge=lambda inputs, outputs: [])\n",
            ),
            failing=("test_summarize",),
            flags=("errors",),
        ),
        Case(
            "imports_reference",
            lambda c: replace_cell(
                c.solution,
                "build_model",
                (
                    "from bncourse.models import build_mlp\n"
                    "def build_model(bn):\n"
                    "    return build_mlp(None if bn == 'none' else bn)\n"
                ),
            ),
            failing=("test_build_model", "test_train_variant"),
        ),
        Case(
            "digs_out_reference",
            lambda c: replace_cell(
                c.solution,
                "build_model",
                (
                    dug_out("bncourse.models", "build_mlp", "_build") + "def build_model(bn):\n"
                    "    return _build(None if bn == 'none' else bn)\n"
                ),
            ),
            failing=("test_build_model", "test_train_variant"),
            flags=("errors",),
        ),
        Case(
            # the optional part run in the sandbox: full marks, no cell error, and it ran
            "looks_inside",
            lambda c: _looks_inside(c.solution),
            feedback_contains=("looked inside: none 10 records before 10 records",),
        ),
        Case(
            "library_warning",
            lambda c: replace_cell(
                c.solution,
                "build_model",
                (
                    "def build_model(bn):\n"
                    "    # input_shape= on a layer still works in Keras 3, with a UserWarning\n"
                    "    layers = [keras.layers.Flatten(input_shape=(28, 28))]\n"
                    "    for units in (300, 200, 100):\n"
                    "        if bn == 'before':\n"
                    "            layers += [keras.layers.Dense(units, use_bias=False),\n"
                    "                       keras.layers.BatchNormalization(),\n"
                    "                       keras.layers.Activation('relu')]\n"
                    "        elif bn == 'after':\n"
                    "            layers += [keras.layers.Dense(units, activation='relu'),\n"
                    "                       keras.layers.BatchNormalization()]\n"
                    "        else:\n"
                    "            layers.append(keras.layers.Dense(units, activation='relu'))\n"
                    "    layers.append(keras.layers.Dense(10, activation='softmax'))\n"
                    "    return keras.Sequential(layers)\n"
                ),
            ),
            feedback_contains=("note: a warning was raised: UserWarning",),
        ),
    ]
)


@pytest.fixture(scope="module")
def experiment_class(tmp_path_factory):
    return grade_class(tmp_path_factory, "ps4-experiment", EXPERIMENT_CASES, cell_timeout=60)


@pytest.mark.parametrize("case", EXPERIMENT_CASES, ids=lambda c: c.name)
def test_experiment_class(experiment_class, case):
    check_case(experiment_class, "ps4-experiment", case)


def test_experiment_validation_export_and_reports(experiment_class):
    check_class_outputs(experiment_class, "ps4-experiment")
