"""ps1-forward graded for real: a class of good and bad submissions, autograded in one run.

See ``nbgrader_course.py`` for how a class is built and checked.
"""

from __future__ import annotations


import pytest

from bncourse.grading.forward import EPS_OUTSIDE, PER_SAMPLE, REVERSED, UNBIASED
from bncourse.grading.mistakes import MISTAKES, mistaken
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

FORWARD_CASES = common_cases("test_batch_mean_var") + [
    Case(
        "passes_visible_only",
        lambda c: replace_cell(
            c.solution,
            "batchnorm_forward",
            (
                "def batchnorm_forward(x, gamma, beta, epsilon=1e-3):\n"
                "    mean, var = batch_mean_var(x)\n"
                "    return (x - mean) / np.sqrt(var + epsilon)  # forgets gamma and beta\n"
            ),
        ),
        failing=("test_batchnorm_forward",),
        visible_pass=("test_batchnorm_forward",),
        feedback_contains=("you leave out gamma and beta",),
    ),
    Case(
        "partial",
        lambda c: replace_cell(
            replace_cell(
                c.solution,
                "update_moving_stats",
                "def update_moving_stats(moving_mean, moving_var, mean, var, "
                "momentum=0.99):\n    raise NotImplementedError()\n",
            ),
            "batchnorm_inference",
            "def batchnorm_inference(x, gamma, beta, moving_mean, moving_var, epsilon=1e-3):\n"
            "    raise NotImplementedError()\n",
        ),
        failing=("test_update_moving_stats", "test_batchnorm_inference", "test_BatchNorm1d"),
    ),
    # the common mistakes (bncourse.grading.mistakes): each costs its own part only, the
    # later parts that use the wrong function being judged on what it returns
    *(
        Case(
            m.name,
            lambda c, m=m: mistaken(m, c.release, c.source),
            failing=(m.part, *m.blocks),
            feedback_contains=(hint,),
        )
        for m, hint in zip(MISTAKES[:4], (UNBIASED, EPS_OUTSIDE, PER_SAMPLE, REVERSED))
    ),
    Case(
        "edited_test",
        lambda c: replace_cell(
            replace_cell(
                c.solution,
                "batchnorm_forward",
                "def batchnorm_forward(x, gamma, beta, epsilon=1e-3):\n    return x\n",
            ),
            "test_batchnorm_forward",
            'print("ok")',
        ),
        failing=("test_batchnorm_forward",),
    ),
    Case(
        "infinite_loop",
        lambda c: replace_cell(
            c.solution,
            "BatchNorm1d",
            (
                "class BatchNorm1d:\n"
                "    def __init__(self, num_features, momentum=0.99, epsilon=1e-3):\n"
                "        while True:\n"
                "            pass\n"
            ),
        ),
        failing=("test_BatchNorm1d",),
        status="timed out",
        flags=("timed out",),
    ),
    Case(
        "patched_allclose",
        lambda c: insert_after(
            replace_cell(
                c.solution,
                "batchnorm_forward",
                "def batchnorm_forward(x, gamma, beta, epsilon=1e-3):\n    return x.copy()\n",
            ),
            "setup",
            "np.allclose = lambda *args, **kwargs: True\n"
            "np.array_equal = lambda *args, **kwargs: True\n"
            "np.testing.assert_allclose = lambda *args, **kwargs: None",
        ),
        failing=("test_batchnorm_forward",),
    ),
    Case(
        "always_equal_object",
        lambda c: replace_cell(
            c.solution,
            "batch_mean_var",
            (
                "class AlwaysEqual:\n"
                "    def __eq__(self, other):\n"
                "        return True\n"
                "    __array_priority__ = 1000\n"
                "def batch_mean_var(x):\n"
                "    return AlwaysEqual(), AlwaysEqual()\n"
            ),
        ),
        failing=("test_batch_mean_var", "test_batchnorm_forward", "test_BatchNorm1d"),
        feedback_contains=("expected a NumPy array",),
    ),
    Case(
        "patched_grading",
        lambda c: insert_after(
            replace_cell(
                c.solution,
                "batchnorm_inference",
                "def batchnorm_inference(x, gamma, beta, moving_mean, moving_var, "
                "epsilon=1e-3):\n    return x\n",
            ),
            "setup",
            "import bncourse.grading.compare as _c, bncourse.grading.forward as _f\n"
            "_c.assert_close = _f.assert_close = lambda *args, **kwargs: 'exact'",
        ),
        failing=("test_batchnorm_inference",),
        flags=("errors",),
    ),
    Case(
        "imports_reference",
        lambda c: replace_cell(
            c.solution, "batchnorm_inference", "from bncourse.numpy_bn import batchnorm_inference\n"
        ),
        failing=("test_batchnorm_inference", "test_BatchNorm1d"),
    ),
    Case(
        "reads_reference_file",
        lambda c: replace_cell(
            c.solution,
            "batchnorm_inference",
            (
                "import importlib.util, pathlib, bncourse\n"
                "_path = pathlib.Path(bncourse.__file__).parent / 'numpy_bn.py'\n"
                "_spec = importlib.util.spec_from_file_location('anything', _path)\n"
                "_mod = importlib.util.module_from_spec(_spec)\n"
                "_spec.loader.exec_module(_mod)\n"
                "batchnorm_inference = _mod.batchnorm_inference\n"
            ),
        ),
        failing=("test_batchnorm_inference", "test_BatchNorm1d"),
    ),
    Case(
        "digs_out_reference",
        lambda c: replace_cell(
            c.solution,
            "batchnorm_inference",
            dug_out("bncourse.numpy_bn", "batchnorm_inference", "batchnorm_inference"),
        ),
        failing=("test_batchnorm_inference", "test_BatchNorm1d"),
        flags=("errors",),
    ),
    Case(
        "library_warning",
        lambda c: replace_cell(
            c.solution,
            "batchnorm_forward",
            (
                "def batchnorm_forward(x, gamma, beta, epsilon=1e-3):\n"
                "    mean, var = batch_mean_var(x)\n"
                "    # numpy.core is deprecated in NumPy 2: this warns, and is still correct\n"
                "    std = np.core.umath.sqrt(var + epsilon)\n"
                "    return (gamma * (x - mean) / std + beta).astype(x.dtype)\n"
            ),
        ),
    ),
]


@pytest.fixture(scope="module")
def forward_class(tmp_path_factory):
    return grade_class(tmp_path_factory, "ps1-forward", FORWARD_CASES, cell_timeout=10)


@pytest.mark.parametrize("case", FORWARD_CASES, ids=lambda c: c.name)
def test_forward_class(forward_class, case):
    check_case(forward_class, "ps1-forward", case)


def test_forward_validation_export_and_reports(forward_class):
    check_class_outputs(forward_class, "ps1-forward")


def test_restoring_hidden_tests_warns_only_about_edited_test_cells(forward_class):
    """nbgrader warns "Attribute 'checksum' ... has changed!" for every test cell whose
    hidden tests were stripped (nbgrader issue 1961); the course's RestoreTestCells warns
    only about a test cell the student edited (the edited_test case's)."""
    log = forward_class.autograde_log
    assert "Attribute 'checksum'" not in log, log[-3000:]
    edited = [line for line in log.splitlines() if "was edited in the submission" in line]
    assert edited and all("test_batchnorm_forward" in line for line in edited), edited
