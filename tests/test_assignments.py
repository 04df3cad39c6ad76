"""The nbgrader problem sets, graded for real: one class of good and bad submissions per set.

For each problem set: generate the student version, validate the source and the blank
release, autograde a class of submissions in one run, and assert every cell's score from
the gradebook, the class report's flags, and the feedback. Scores are read through
``nbgrader.api.Gradebook``, never from exit codes or logs (``autograde`` exits 1 as soon as
one student breaks).
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Callable

import pytest

from nbgrader_course import (
    Course,
    delete_cell,
    insert_after,
    replace_cell,
    solved,
    truncated,
    validate,
    with_kernel,
)

pytestmark = pytest.mark.slow

ALL = "all"


@dataclass
class Ctx:
    source: object
    release: object
    solution: object


@dataclass
class Case:
    """A submission, the automatically graded cells it must fail, and its report status."""

    name: str
    build: Callable[[Ctx], object]
    failing: object = ()
    status: str = "graded"
    flags: tuple = ()
    feedback_contains: tuple = ()
    visible_pass: tuple = ()


def _common(first_test: str, setup: str = "setup") -> list[Case]:
    """Cases that every problem set gets, whatever it asks for."""
    return [
        Case("reference", lambda c: c.solution),
        Case("untouched", lambda c: c.release, failing=ALL, status="zero"),
        Case("deleted_test", lambda c: delete_cell(c.solution, first_test)),
        Case("kernel_name", lambda c: with_kernel(c.solution, "no-such-kernel")),
        Case("os_exit", lambda c: insert_after(c.solution, setup, "import os\nos._exit(1)"),
             failing=ALL, status="crashed", flags=("could not be graded",)),
        Case("truncated_json", lambda c: truncated(c.solution), failing=ALL, status="crashed",
             flags=("not valid JSON",)),
        Case("rebind_check",
             lambda c: insert_after(c.release, setup,
                                    'check = lambda *args, **kwargs: print("ok")'),
             failing=ALL, status="tampered", flags=("tampered",)),
        Case("hide_traceback",
             lambda c: insert_after(
                 c.release, setup,
                 "ip = get_ipython()\n"
                 "ip.set_custom_exc((BaseException,), lambda *args, **kwargs: None)\n"
                 "ip.showtraceback = lambda *args, **kwargs: None"),
             failing=ALL, status="zero"),
        Case("print_5000_lines",
             lambda c: insert_after(c.solution, first_test.replace("test_", "", 1),
                                    "for i in range(5000):\n    print('line', i)")),
    ]


FORWARD_CASES = _common("test_batch_mean_var") + [
    Case(
        "passes_visible_only",
        lambda c: replace_cell(c.solution, "batchnorm_forward", (
            "def batchnorm_forward(x, gamma, beta, epsilon=1e-3):\n"
            "    mean, var = batch_mean_var(x)\n"
            "    return (x - mean) / np.sqrt(var + epsilon)  # forgets gamma and beta\n")),
        failing=("test_batchnorm_forward",),
        visible_pass=("test_batchnorm_forward",),
        feedback_contains=("you leave out gamma and beta",),
    ),
    Case(
        "partial",
        lambda c: replace_cell(
            replace_cell(c.solution, "update_moving_stats",
                         "def update_moving_stats(moving_mean, moving_var, mean, var, "
                         "momentum=0.99):\n    raise NotImplementedError()\n"),
            "batchnorm_inference",
            "def batchnorm_inference(x, gamma, beta, moving_mean, moving_var, epsilon=1e-3):\n"
            "    raise NotImplementedError()\n"),
        failing=("test_update_moving_stats", "test_batchnorm_inference", "test_BatchNorm1d"),
    ),
    Case(
        "unbiased_variance",
        lambda c: replace_cell(c.solution, "batch_mean_var", (
            "def batch_mean_var(x):\n"
            "    return x.mean(axis=0), x.var(axis=0, ddof=1)\n")),
        failing=("test_batch_mean_var", "test_batchnorm_forward", "test_BatchNorm1d"),
        feedback_contains=("you divide by N - 1",),
    ),
    Case(
        "momentum_reversed",
        lambda c: replace_cell(c.solution, "update_moving_stats", (
            "def update_moving_stats(moving_mean, moving_var, mean, var, momentum=0.99):\n"
            "    return (moving_mean * (1 - momentum) + mean * momentum,\n"
            "            moving_var * (1 - momentum) + var * momentum)\n")),
        failing=("test_update_moving_stats", "test_BatchNorm1d"),
        feedback_contains=("momentum the wrong way round",),
    ),
    Case(
        "edited_test",
        lambda c: replace_cell(
            replace_cell(c.solution, "batchnorm_forward",
                         "def batchnorm_forward(x, gamma, beta, epsilon=1e-3):\n"
                         "    return x\n"),
            "test_batchnorm_forward", 'print("ok")'),
        failing=("test_batchnorm_forward", "test_BatchNorm1d"),
    ),
    Case(
        "infinite_loop",
        lambda c: replace_cell(c.solution, "BatchNorm1d", (
            "class BatchNorm1d:\n"
            "    def __init__(self, num_features, momentum=0.99, epsilon=1e-3):\n"
            "        while True:\n"
            "            pass\n")),
        failing=("test_BatchNorm1d",), status="timed out", flags=("timed out",),
    ),
    Case(
        "patched_allclose",
        lambda c: insert_after(
            replace_cell(c.solution, "batchnorm_forward",
                         "def batchnorm_forward(x, gamma, beta, epsilon=1e-3):\n"
                         "    return x.copy()\n"),
            "setup",
            "np.allclose = lambda *args, **kwargs: True\n"
            "np.array_equal = lambda *args, **kwargs: True\n"
            "np.testing.assert_allclose = lambda *args, **kwargs: None"),
        failing=("test_batchnorm_forward", "test_BatchNorm1d"),
    ),
    Case(
        "always_equal_object",
        lambda c: replace_cell(c.solution, "batch_mean_var", (
            "class AlwaysEqual:\n"
            "    def __eq__(self, other):\n"
            "        return True\n"
            "    __array_priority__ = 1000\n"
            "def batch_mean_var(x):\n"
            "    return AlwaysEqual(), AlwaysEqual()\n")),
        failing=("test_batch_mean_var", "test_batchnorm_forward", "test_BatchNorm1d"),
        feedback_contains=("expected a NumPy array",),
    ),
    Case(
        "patched_grading",
        lambda c: insert_after(
            replace_cell(c.solution, "batchnorm_inference",
                         "def batchnorm_inference(x, gamma, beta, moving_mean, moving_var, "
                         "epsilon=1e-3):\n    return x\n"),
            "setup",
            "import bncourse.grading.compare as _c, bncourse.grading.forward as _f\n"
            "_c.assert_close = _f.assert_close = lambda *args, **kwargs: 'exact'"),
        failing=("test_batchnorm_inference", "test_BatchNorm1d"), status="tampered",
        flags=("tampered",),
    ),
    Case(
        "imports_reference",
        lambda c: replace_cell(c.solution, "batchnorm_inference",
                               "from bncourse.numpy_bn import batchnorm_inference\n"),
        failing=("test_batchnorm_inference", "test_BatchNorm1d"),
    ),
    Case(
        "reads_reference_file",
        lambda c: replace_cell(c.solution, "batchnorm_inference", (
            "import importlib.util, pathlib, bncourse\n"
            "_path = pathlib.Path(bncourse.__file__).parent / 'numpy_bn.py'\n"
            "_spec = importlib.util.spec_from_file_location('anything', _path)\n"
            "_mod = importlib.util.module_from_spec(_spec)\n"
            "_spec.loader.exec_module(_mod)\n"
            "batchnorm_inference = _mod.batchnorm_inference\n")),
        failing=("test_batchnorm_inference", "test_BatchNorm1d"),
    ),
    Case(
        "digs_out_reference",
        lambda c: replace_cell(c.solution, "batchnorm_inference", (
            "import gc\n"
            "batchnorm_inference = next(\n"
            "    f for f in gc.get_objects()\n"
            "    if getattr(f, '__name__', '') == 'batchnorm_inference'\n"
            "    and getattr(f, '__module__', '') == 'bncourse.numpy_bn')\n")),
        failing=("test_batchnorm_inference", "test_BatchNorm1d"), status="tampered",
        flags=("tampered",),
    ),
    Case(
        "library_warning",
        lambda c: replace_cell(c.solution, "batchnorm_forward", (
            "def batchnorm_forward(x, gamma, beta, epsilon=1e-3):\n"
            "    mean, var = batch_mean_var(x)\n"
            "    # numpy.core is deprecated in NumPy 2: this warns, and is still correct\n"
            "    std = np.core.umath.sqrt(var + epsilon)\n"
            "    return (gamma * (x - mean) / std + beta).astype(x.dtype)\n")),
    ),
]

CASES = {"ps1-forward": FORWARD_CASES}


@dataclass
class Graded:
    course: Course
    scores: dict
    points: dict
    report: dict
    validation: dict = field(default_factory=dict)
    autograde_seconds: float = 0.0


def _grade_class(tmp_path_factory, assignment: str, cell_timeout: float) -> Graded:
    course = Course(tmp_path_factory.mktemp(assignment), cell_timeout=cell_timeout)
    course.generate(assignment)
    source, release = course.source(assignment), course.release(assignment)
    ctx = Ctx(source, release, solved(release, source))
    validation = {
        "source": validate(course.path / "source" / assignment / f"{assignment}.ipynb"),
        "release": validate(course.path / "release" / assignment / f"{assignment}.ipynb"),
    }
    for case in CASES[assignment]:
        path = course.submit(case.name, assignment, case.build(ctx))
        if case.visible_pass:
            validation[case.name] = validate(path)
    import time

    started = time.perf_counter()
    course.nbgrader("autograde", assignment, "--create", check=False)
    seconds = time.perf_counter() - started
    course.nbgrader("generate_feedback", assignment, check=False)
    course.nbgrader("export", check=True)
    proc = subprocess.run(
        [sys.executable, "-m", "bncourse.grading.report", assignment, "--csv", "report.csv"],
        cwd=course.path, capture_output=True, text=True, env=course.env,
    )
    assert proc.returncode == 0, proc.stderr
    with open(course.path / "report.csv") as f:
        report = {row["student"]: row for row in csv.DictReader(f)}
    return Graded(course, course.scores(assignment), course.max_points(assignment), report,
                  validation, seconds)


@pytest.fixture(scope="module")
def forward_class(tmp_path_factory):
    return _grade_class(tmp_path_factory, "ps1-forward", cell_timeout=10)


def _check_case(graded: Graded, assignment: str, case: Case):
    row = graded.report[case.name]
    assert row["status"] == case.status, (row, graded.course.path)
    for flag in case.flags:
        assert flag in row["flags"], row
    if case.status == "crashed":
        assert row["score"] == ""
        return
    failing = set(graded.points) if case.failing == ALL else set(case.failing)
    assert failing <= set(graded.points), failing - set(graded.points)
    expected = {g: 0.0 if g in failing else p for g, p in graded.points.items()}
    got = {g: s for g, s in graded.scores[case.name].items() if g in graded.points}
    assert got == expected, f"{case.name}: {graded.course.path}"
    for gid in case.visible_pass:
        assert gid not in graded.validation[case.name]["failed"], graded.validation[case.name]
    feedback = graded.course.path / "feedback" / case.name / assignment / f"{assignment}.html"
    assert feedback.exists(), feedback
    html = feedback.read_text()
    for text in case.feedback_contains:
        assert text in html, f"{case.name}: {text!r} not in the feedback"


@pytest.mark.parametrize("case", FORWARD_CASES, ids=lambda c: c.name)
def test_forward_class(forward_class, case):
    _check_case(forward_class, "ps1-forward", case)


def test_forward_validation(forward_class):
    assert forward_class.validation["source"]["passed"], forward_class.validation["source"]
    assert not forward_class.validation["release"]["passed"]


def test_forward_export(forward_class):
    with open(forward_class.course.path / "grades.csv") as f:
        rows = {(r["assignment"], r["student_id"]): r for r in csv.DictReader(f)}
    total = sum(forward_class.points.values())
    assert float(rows[("ps1-forward", "reference")]["raw_score"]) == total
    assert float(rows[("ps1-forward", "untouched")]["raw_score"]) == 0.0


def test_forward_verification_reports(forward_class):
    path = forward_class.course.path / "verification" / "reference" / "ps1-forward"
    data = json.loads((path / "ps1-forward.json").read_text())
    assert all(v["passed"] for v in data["verification"]["checks"].values())
    assert data["kernel_peak_mb"] > 0 and data["kernel_seconds"] > 0
