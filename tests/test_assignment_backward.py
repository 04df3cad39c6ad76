"""ps2-backward graded for real: a class of good and bad submissions, autograded in one run.

See ``nbgrader_course.py`` for how a class is built and checked. The first tests run the
checks directly on the source notebook's solutions, with one mistake planted at a time,
and assert that each failure message names that mistake.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import numpy as np
import pytest

from bncourse.grading.student.messages import WIDTH, as_failure
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

PS = "ps2-backward"
SOURCE = Path(__file__).resolve().parent.parent / "assignments" / "source" / PS / f"{PS}.ipynb"

# ---------------------------------------------------------------- the checks, in process

FUNCTIONS = {
    "staged": "batchnorm_backward_staged",
    "closed": "batchnorm_backward_closed",
    "numgrad": "numerical_gradient",
    "nhwc_forward": "batchnorm_forward_nhwc",
    "nhwc_backward": "batchnorm_backward_nhwc",
}


@pytest.fixture(scope="module")
def solutions():
    """The source notebook's given and solution code, run in a fresh namespace."""
    nb = nbformat.read(SOURCE, 4)
    namespace = {"np": np}
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type == "code" and (
            meta.get("solution") or meta.get("grade_id") == "given_forward"
        ):
            exec(cell.source, namespace)
    return namespace


def checks() -> dict:
    """ps2-backward's checks, producers and judges joined as the grader joins them."""
    from bncourse.grading import registry

    return registry.checks_of(registry.problem_set(PS))


def run_check(check_id: str, fn):
    """A check's produce and judge, as the grader runs them (without sealing this process)."""
    check = checks()[f"{PS}.{check_id}"]
    inputs = check.make_inputs()
    return check.judge(inputs, check.produce(fn, inputs))


def function_of(check_id: str, namespace: dict):
    return namespace[next(f for k, f in FUNCTIONS.items() if check_id.startswith(k))]


def test_every_check_passes_the_solutions(solutions):
    all_checks = checks()
    assert len(all_checks) == 18
    for check_id in all_checks:
        name = check_id.split(".", 1)[1]
        lines = run_check(name, function_of(name, solutions))
        assert lines and all(
            ("exact" in line or "approximately equal" in line) for line in lines
        ), lines


STAGED = """
def batchnorm_backward_staged(dout, x, gamma, epsilon=1e-3):
    n = x.shape[0]
    mean = x.mean(axis=0)
    xmu = x - mean
    var = (xmu ** 2).mean(axis=0)
    std = np.sqrt(var + epsilon)
    xhat = xmu / std
    dbeta = dout.sum(axis=0)
    dgamma = (dout * xhat).sum(axis=0)
    dxhat = dout * gamma
    dvar = -0.5 * (dxhat * xmu).sum(axis=0) * (var + epsilon) ** -1.5
    dmean = -(dxhat / std).sum(axis=0)
    dx = dxhat / std + dvar * 2.0 * xmu / n + dmean / n
    return {"dbeta": dbeta, "dgamma": dgamma, "dxhat": dxhat, "dvar": dvar, "dmean": dmean,
            "dx": dx}
"""

CLOSED = """
def batchnorm_backward_closed(dout, x, gamma, epsilon=1e-3):
    n = x.shape[0]
    mean = x.mean(axis=0)
    var = ((x - mean) ** 2).mean(axis=0)
    std = np.sqrt(var + epsilon)
    xhat = (x - mean) / std
    dbeta = dout.sum(axis=0)
    dgamma = (dout * xhat).sum(axis=0)
    dx = gamma / (n * std) * (n * dout - dbeta - xhat * dgamma)
    return dx, dgamma, dbeta
"""

NUMGRAD = """
def numerical_gradient(f, x, dout, h=1e-5):
    grad = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        old = x[index]
        x[index] = old + h
        plus = np.sum(f(x) * dout)
        x[index] = old - h
        minus = np.sum(f(x) * dout)
        x[index] = old
        grad[index] = (plus - minus) / (2 * h)
    return grad
"""

# the forward difference, (L(x + h) - L(x)) / h
CENTRED_STEP = """x[index] = old - h
        minus = np.sum(f(x) * dout)
        x[index] = old
        grad[index] = (plus - minus) / (2 * h)"""
FORWARD_STEP = """x[index] = old
        minus = np.sum(f(x) * dout)
        grad[index] = (plus - minus) / h"""
ONE_SIDED = (CENTRED_STEP, FORWARD_STEP)

NHWC_FORWARD = """
def batchnorm_forward_nhwc(x, gamma, beta, epsilon=1e-3):
    mean = x.mean(axis=(0, 1, 2))
    var = x.var(axis=(0, 1, 2))
    return gamma * (x - mean) / np.sqrt(var + epsilon) + beta
"""

NHWC_BACKWARD = """
def batchnorm_backward_nhwc(dout, x, gamma, epsilon=1e-3):
    axes = (0, 1, 2)
    m = x.size // x.shape[-1]
    mean = x.mean(axis=axes)
    std = np.sqrt(x.var(axis=axes) + epsilon)
    xhat = (x - mean) / std
    dbeta = dout.sum(axis=axes)
    dgamma = (dout * xhat).sum(axis=axes)
    return gamma / (m * std) * (m * dout - dbeta - xhat * dgamma), dgamma, dbeta
"""

# (check, source, old text, new text, what the message must say)
MISTAKES = [
    (
        "staged_params",
        STAGED,
        "(dout * xhat).sum(axis=0)",
        "(dout * xhat).sum(axis=1)",
        "you sum over axis 1 (the features)",
    ),
    (
        "staged_params",
        STAGED,
        "dbeta = dout.sum(axis=0)",
        "dbeta = dout.mean(axis=0)",
        "a 1/N factor too many",
    ),
    ("staged_dxhat", STAGED, "dxhat = dout * gamma", "dxhat = dout", "dxhat = dout * gamma"),
    ("staged_dvar", STAGED, "** -1.5", "** -0.5", "the power -1/2 instead of -3/2"),
    ("staged_dvar", STAGED, "dvar = -0.5 *", "dvar = 0.5 *", "the sign wrong"),
    (
        "staged_dmean",
        STAGED,
        "dmean = -(dxhat / std)",
        "dmean = -(dout / std)",
        "you use dout instead of dxhat",
    ),
    (
        "staged_dx",
        STAGED,
        "dx = dxhat / std + dvar * 2.0 * xmu / n + dmean / n",
        "dx = dxhat / std + dmean / n",
        "the path through the variance",
    ),
    (
        "staged_dx",
        STAGED,
        "dvar * 2.0 * xmu / n",
        "dvar * 2.0 * xmu / (n - 1)",
        "N - 1 in the variance's path",
    ),
    ("closed", CLOSED, "gamma / (n * std)", "gamma / std", "the 1/N in front of the bracket"),
    ("closed", CLOSED, " - xhat * dgamma)", ")", "the term xhat * dgamma"),
    (
        "closed",
        CLOSED,
        "return dx, dgamma, dbeta",
        "return dx, dbeta, dgamma",
        "the order is (dx, dgamma, dbeta)",
    ),
    (
        "closed",
        CLOSED,
        "return dx,",
        "return dx.astype(np.float64),",
        "wrong dtype float64, expected float32",
    ),
    (
        "closed",
        CLOSED,
        "np.sqrt(var + epsilon)",
        "np.sqrt(var + 1e-3)",
        "you ignore the epsilon argument",
    ),
    ("numgrad", NUMGRAD, *ONE_SIDED, "one-sided difference"),
    ("numgrad", NUMGRAD, "(2 * h)", "h", "divide by h instead of 2 h"),
    ("numgrad", NUMGRAD, "np.sum(f(x) * dout)", "np.sum(f(x))", "you leave out dout"),
    ("numgrad", NUMGRAD, "old = x[index]", "old = x[index]; h = 1e-5", "you ignore the h argument"),
    ("numgrad", NUMGRAD, "        x[index] = old\n", "", "changed its input"),
    ("nhwc_forward", NHWC_FORWARD, "axis=(0, 1, 2)", "axis=0", "over the batch axis only"),
    (
        "nhwc_forward",
        NHWC_FORWARD,
        "axis=(0, 1, 2)",
        "axis=(1, 2), keepdims=True",
        "instance normalisation",
    ),
    (
        "nhwc_backward",
        NHWC_BACKWARD,
        "m = x.size // x.shape[-1]",
        "m = x.shape[0]",
        "N (the batch size) as the count",
    ),
    (
        "nhwc_backward",
        NHWC_BACKWARD,
        "dgamma = (dout * xhat).sum(axis=axes)",
        "dgamma = (dout * xhat).sum(axis=axes, keepdims=True)",
        "return shape (C,)",
    ),
]


@pytest.mark.parametrize(
    "check_id, source, old, new, message", MISTAKES, ids=[f"{m[0]}-{m[4][:30]}" for m in MISTAKES]
)
def test_a_mistake_is_named(check_id, source, old, new, message):
    """The unchanged source passes; with one mistake the hidden check names it."""
    namespace = {"np": np}
    exec(source, namespace)
    fn = function_of(check_id, namespace)
    run_check(check_id, fn)
    assert old in source
    exec(source.replace(old, new), namespace)
    with pytest.raises(AssertionError) as err:
        run_check(check_id, function_of(check_id, namespace))
    lines = as_failure(err.value).lines()
    assert message in "\n".join(lines), lines
    assert len(lines) <= 2 and all(len(line) <= WIDTH for line in lines), lines


# ---------------------------------------------------------------- a graded class

CLOSED_CELL = CLOSED.strip() + "\n"
NUMGRAD_CELL = NUMGRAD.strip() + "\n"

BACKWARD_CASES = common_cases("test_batchnorm_backward_staged") + [
    Case(
        # the visible checks use the default epsilon; the hidden ones do not
        "passes_visible_only",
        lambda c: replace_cell(
            c.solution,
            "batchnorm_backward_closed",
            CLOSED_CELL.replace("np.sqrt(var + epsilon)", "np.sqrt(var + 1e-3)"),
        ),
        failing=("test_batchnorm_backward_closed", "test_batchnorm_backward_nhwc"),
        visible_pass=("test_batchnorm_backward_closed", "test_batchnorm_backward_nhwc"),
        feedback_contains=("you ignore the epsilon argument",),
    ),
    Case(
        "partial",
        lambda c: replace_cell(
            replace_cell(
                replace_cell(
                    c.solution,
                    "numerical_gradient",
                    "def numerical_gradient(f, x, dout, h=1e-5):\n"
                    "    raise NotImplementedError()\n",
                ),
                "batchnorm_forward_nhwc",
                "def batchnorm_forward_nhwc(x, gamma, beta, epsilon=1e-3):\n"
                "    raise NotImplementedError()\n",
            ),
            "batchnorm_backward_nhwc",
            "def batchnorm_backward_nhwc(dout, x, gamma, epsilon=1e-3):\n"
            "    raise NotImplementedError()\n",
        ),
        failing=(
            "test_numerical_gradient",
            "test_batchnorm_forward_nhwc",
            "test_batchnorm_backward_nhwc",
        ),
    ),
    Case(
        "forgets_variance_path",
        lambda c: replace_cell(
            c.solution,
            "batchnorm_backward_staged",
            STAGED.replace(
                "dx = dxhat / std + dvar * 2.0 * xmu / n + dmean / n",
                "dx = dxhat / std + dmean / n",
            ).strip()
            + "\n",
        ),
        failing=("test_batchnorm_backward_staged_dx",),
        feedback_contains=("you leave out the path through the variance",),
    ),
    Case(
        "dout_for_dxhat",
        lambda c: replace_cell(
            c.solution,
            "batchnorm_backward_staged",
            STAGED.replace("dxhat = dout * gamma", "dxhat = dout").strip() + "\n",
        ),
        # the nodes below dxhat are judged on the student's own dxhat: one mistake, one part
        failing=("test_batchnorm_backward_staged_dxhat",),
        feedback_contains=(
            "you use dout itself",
            "note: right given your dxhat, which is wrong: fix it first",
        ),
    ),
    Case(
        "one_sided_difference",
        lambda c: replace_cell(c.solution, "numerical_gradient", NUMGRAD_CELL.replace(*ONE_SIDED)),
        failing=("test_numerical_gradient",),
        feedback_contains=("you use the one-sided difference",),
    ),
    Case(
        "edited_test",
        lambda c: replace_cell(
            replace_cell(
                c.solution,
                "batchnorm_backward_staged",
                STAGED.replace("+ dmean / n", "").strip() + "\n",
            ),
            "test_batchnorm_backward_staged_dx",
            'print("ok")',
        ),
        failing=("test_batchnorm_backward_staged_dx",),
    ),
    Case(
        "infinite_loop",
        lambda c: replace_cell(
            c.solution,
            "batchnorm_forward_nhwc",
            (
                "def batchnorm_forward_nhwc(x, gamma, beta, epsilon=1e-3):\n"
                "    while True:\n"
                "        pass\n"
            ),
        ),
        failing=("test_batchnorm_forward_nhwc",),
        status="timed out",
        flags=("timed out",),
    ),
    Case(
        "patched_allclose",
        lambda c: insert_after(
            replace_cell(
                c.solution,
                "batchnorm_backward_closed",
                "def batchnorm_backward_closed(dout, x, gamma, epsilon=1e-3):\n"
                "    return dout.copy(), gamma.copy(), gamma.copy()\n",
            ),
            "setup",
            "np.allclose = lambda *args, **kwargs: True\n"
            "np.array_equal = lambda *args, **kwargs: True\n"
            "np.testing.assert_allclose = lambda *args, **kwargs: None",
        ),
        failing=("test_batchnorm_backward_closed", "test_batchnorm_backward_nhwc"),
    ),
    Case(
        "always_equal_object",
        lambda c: replace_cell(
            c.solution,
            "batchnorm_backward_staged",
            (
                "class AlwaysEqual:\n"
                "    def __eq__(self, other):\n"
                "        return True\n"
                "    __array_priority__ = 1000\n"
                "def batchnorm_backward_staged(dout, x, gamma, epsilon=1e-3):\n"
                "    keys = ('dbeta', 'dgamma', 'dxhat', 'dvar', 'dmean', 'dx')\n"
                "    return {key: AlwaysEqual() for key in keys}\n"
            ),
        ),
        failing=(
            "test_batchnorm_backward_staged",
            "test_batchnorm_backward_staged_dxhat",
            "test_batchnorm_backward_staged_dvar",
            "test_batchnorm_backward_staged_dmean",
            "test_batchnorm_backward_staged_dx",
        ),
        feedback_contains=("expected a NumPy array",),
    ),
    Case(
        "patched_grading",
        lambda c: insert_after(
            replace_cell(
                c.solution,
                "numerical_gradient",
                "def numerical_gradient(f, x, dout, h=1e-5):\n    return np.zeros_like(x)\n",
            ),
            "setup",
            "import bncourse.grading.compare as _c, bncourse.grading.backward as _b\n"
            "_c.assert_close = _b.assert_close = lambda *args, **kwargs: 'exact'",
        ),
        failing=("test_numerical_gradient",),
        flags=("errors",),
    ),
    Case(
        "imports_reference",
        lambda c: replace_cell(
            c.solution, "numerical_gradient", "from bncourse.numpy_bn import numerical_gradient\n"
        ),
        failing=("test_numerical_gradient",),
    ),
    Case(
        "reads_reference_file",
        lambda c: replace_cell(
            c.solution,
            "numerical_gradient",
            (
                "import importlib.util, pathlib, bncourse\n"
                "_path = pathlib.Path(bncourse.__file__).parent / 'numpy_bn.py'\n"
                "_spec = importlib.util.spec_from_file_location('anything', _path)\n"
                "_mod = importlib.util.module_from_spec(_spec)\n"
                "_spec.loader.exec_module(_mod)\n"
                "numerical_gradient = _mod.numerical_gradient\n"
            ),
        ),
        failing=("test_numerical_gradient",),
    ),
    Case(
        "digs_out_reference",
        lambda c: replace_cell(
            c.solution,
            "numerical_gradient",
            dug_out("bncourse.numpy_bn", "numerical_gradient", "numerical_gradient"),
        ),
        failing=("test_numerical_gradient",),
        flags=("errors",),
    ),
    Case(
        "library_warning",
        lambda c: replace_cell(
            c.solution,
            "batchnorm_backward_closed",
            CLOSED_CELL.replace(
                "std = np.sqrt(var + epsilon)",
                "# numpy.core is deprecated in NumPy 2: this warns, and is still correct\n"
                "    std = np.core.umath.sqrt(var + epsilon)",
            ),
        ),
    ),
]


@pytest.fixture(scope="module")
def backward_class(tmp_path_factory):
    return grade_class(tmp_path_factory, PS, BACKWARD_CASES, cell_timeout=10)


@pytest.mark.parametrize("case", BACKWARD_CASES, ids=lambda c: c.name)
def test_backward_class(backward_class, case):
    check_case(backward_class, PS, case)


def test_backward_validation_export_and_reports(backward_class):
    check_class_outputs(backward_class, PS)
