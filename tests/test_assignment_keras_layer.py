"""ps3-keras-layer graded for real: a class of good and bad submissions, autograded in one run.

See ``nbgrader_course.py`` for how a class is built and checked. Every Keras kernel takes
several seconds to start, so the class is kept small: the cases that every problem set gets,
and one case for each way this problem set can be got wrong or cheated.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from bncourse.grading.mistakes import MISTAKES, mistaken
from nbgrader_course import (
    Case,
    Course,
    check_case,
    check_class_outputs,
    common_cases,
    grade_class,
    insert_after,
    replace_cell,
    solved,
)

pytestmark = pytest.mark.slow

PS = "ps3-keras-layer"
LAYER_TESTS = (
    "test_build",
    "test_training",
    "test_moving",
    "test_inference",
    "test_trainable",
    "test_config",
    "test_build_mlp",
)


def _edit(solution, gid: str, old: str, new: str):
    """The solved notebook with ``old`` replaced by ``new`` in cell ``gid`` (which must hold it)."""
    cell = next(
        c
        for c in solution.cells
        if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == gid
    )
    assert old in cell.source, (gid, old)
    return replace_cell(solution, gid, cell.source.replace(old, new))


def _method(solution, name: str, body: str):
    """The solved notebook with MyBatchNorm's method ``name`` replaced by ``body``."""
    return insert_after(solution, "MyBatchNorm", f"MyBatchNorm.{name} = {body}\n")


LEAVES_OUT_GAMMA_BETA = (
    "        if self.scale:\n"
    "            out = out * ops.reshape(self.gamma, broadcast)\n"
    "        if self.center:\n"
    "            out = out + ops.reshape(self.beta, broadcast)\n",
    "",
)

CASES = common_cases("test_moments") + [
    # error carried forward: the layer's training output and moving statistics are judged
    # on what the student's own (wrong) moments returns, so the mistake costs one part
    Case(
        "unbiased_moments",
        lambda c: _edit(
            c.solution,
            "moments",
            "ops.mean(ops.square(x - mean), axis=axes, keepdims=True)",
            "ops.sum(ops.square(x - mean), axis=axes, "
            "keepdims=True) / (np.prod([x.shape[i] for i in axes]) - 1)",
        ),
        failing=("test_moments",),
        feedback_contains=("note: right given your moments, which is wrong: fix it first",),
    ),
    # the moving statistics updated at inference: its own hint, since the state is judged first
    Case(
        MISTAKES[4].name,
        lambda c: mistaken(MISTAKES[4], c.release, c.source),
        failing=(MISTAKES[4].part, *MISTAKES[4].blocks),
        feedback_contains=("you update the moving statistics at inference",),
    ),
    Case(
        "passes_visible_only",
        # momentum written as 0.99 in call: right for the visible check's default momentum
        lambda c: _edit(c.solution, "MyBatchNorm", "m = self.momentum", "m = 0.99"),
        failing=("test_moving",),
        visible_pass=("test_moving",),
        feedback_contains=("you always use momentum 0.99",),
    ),
    Case(
        "partial",
        lambda c: replace_cell(
            _edit(
                c.solution,
                "MyBatchNorm",
                "        config = super().get_config()\n",
                "        raise NotImplementedError()\n",
            ),
            "build_mlp",
            "def build_mlp():\n    raise NotImplementedError()\n",
        ),
        failing=("test_config", "test_build_mlp"),
    ),
    Case(
        "edited_test",
        lambda c: replace_cell(
            _method(c.solution, "get_config", "lambda self: {}"), "test_config", 'print("ok")'
        ),
        failing=("test_config",),
    ),
    Case(
        "infinite_loop",
        lambda c: insert_after(
            c.solution,
            "MyBatchNorm",
            "def _get_config(self):\n"
            "    while True:\n"
            "        pass\n"
            "MyBatchNorm.get_config = _get_config\n",
        ),
        failing=("test_config",),
        status="timed out",
        flags=("timed out",),
    ),
    Case(
        "patched_allclose",
        lambda c: insert_after(
            _edit(c.solution, "MyBatchNorm", *LEAVES_OUT_GAMMA_BETA),
            "setup",
            "np.allclose = lambda *args, **kwargs: True\n"
            "np.array_equal = lambda *args, **kwargs: True\n"
            "np.testing.assert_allclose = lambda *args, **kwargs: None",
        ),
        # the patched np.array_equal breaks TensorFlow's gradients too: the MLP cannot train
        failing=("test_training", "test_inference", "test_trainable", "test_build_mlp"),
        feedback_contains=("you leave out gamma and beta",),
    ),
    Case(
        "always_equal_object",
        lambda c: insert_after(
            c.solution,
            "MyBatchNorm",
            "class AlwaysEqual:\n"
            "    def __eq__(self, other):\n"
            "        return True\n"
            "    __array_priority__ = 1000\n"
            "MyBatchNorm.call = lambda self, inputs, training=None: AlwaysEqual()\n",
        ),
        failing=(
            "test_training",
            "test_moving",
            "test_inference",
            "test_trainable",
            "test_config",
            "test_build_mlp",
        ),
        feedback_contains=("expected a tensor, got AlwaysEqual",),
    ),
    Case(
        "patched_grading",
        lambda c: insert_after(
            _edit(c.solution, "MyBatchNorm", *LEAVES_OUT_GAMMA_BETA),
            "setup",
            "import bncourse.grading.compare as _c, bncourse.grading.keras_layer as _k\n"
            "_c.assert_close = _k.assert_close = lambda *args, **kwargs: 'exact'\n"
            "_c.assert_equal = _k.assert_equal = lambda *args, **kwargs: 'exact'",
        ),
        failing=("test_training", "test_inference", "test_trainable"),
        flags=("errors",),
    ),
    Case(
        "imports_reference",
        lambda c: replace_cell(
            c.solution, "MyBatchNorm", "from bncourse.keras_bn import BatchNorm as MyBatchNorm\n"
        ),
        failing=LAYER_TESTS,
    ),
    Case(
        "subclasses_keras_bn",
        lambda c: replace_cell(
            c.solution,
            "MyBatchNorm",
            "class MyBatchNorm(keras.layers.BatchNormalization):\n    pass\n",
        ),
        failing=LAYER_TESTS,
        feedback_contains=("is a subclass of keras.layers.BatchNormalization",),
    ),
    Case(
        "library_warning",
        # input_shape= on a layer is deprecated in Keras 3: this warns, and is still correct
        lambda c: replace_cell(
            c.solution,
            "build_mlp",
            (
                "def build_mlp():\n"
                "    layers = [keras.layers.Flatten(input_shape=(28, 28))]\n"
                "    for units in (300, 200, 100):\n"
                "        layers += [keras.layers.Dense(units, use_bias=False), MyBatchNorm(),\n"
                "                   keras.layers.ReLU()]\n"
                "    layers.append(keras.layers.Dense(10, activation='softmax'))\n"
                "    return keras.Sequential(layers)\n"
            ),
        ),
        feedback_contains=("note: a warning was raised: UserWarning",),
    ),
]


@pytest.fixture(scope="module")
def keras_layer_class(tmp_path_factory):
    return grade_class(tmp_path_factory, PS, CASES, cell_timeout=30)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_keras_layer_class(keras_layer_class, case):
    check_case(keras_layer_class, PS, case)


def test_keras_layer_validation_export_and_reports(keras_layer_class):
    check_class_outputs(keras_layer_class, PS)


def test_a_correct_notebook_validates_in_a_students_own_folder(tmp_path):
    """``nbgrader validate`` where a student runs it: a folder that holds only the notebook
    (no course nbgrader_config.py, none of its environment). TensorFlow's start-up lines
    on stderr used to fail a correct ps3 there."""
    course = Course(tmp_path / "course")
    course.generate(PS)
    answer = solved(course.release(PS), course.source(PS))
    for cell in answer.cells:  # the written answers, which solved() leaves as released
        if cell.cell_type == "markdown" and cell.metadata.get("nbgrader", {}).get("solution"):
            cell.source = "My answer."
    folder = tmp_path / "my work"
    folder.mkdir()
    nbformat.write(answer, folder / f"{PS}.ipynb")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("BNCOURSE_", "TF_CPP_", "NBGRADER"))
    }
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "nbgrader"), "validate", f"{PS}.ipynb"],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    # the verdict is on stdout; the kernel's own start-up log goes to validate's stderr
    assert "Success! Your notebook passes all the tests." in proc.stdout, proc.stdout[-3000:]
    assert "cuInit" not in proc.stdout + proc.stderr, proc.stdout[-3000:]
