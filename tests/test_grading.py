"""bncourse.grading's parts on their own: messages, sealing, verification, the registry."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import nbformat
import numpy as np
import pytest

from bncourse.grading import registry, verify
from bncourse.grading.compare import assert_close, assert_equal
from bncourse.grading.student.calls import call
from bncourse.grading.student.messages import (
    WIDTH,
    CheckFailed,
    as_failure,
    fit,
    student_traceback,
)
from bncourse.grading.student.values import require_array

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ROOT / "assignments" / "source"


# --------------------------------------------------------------------------- messages


def test_assert_close_reports_exact_and_approximate():
    x = np.arange(6.0).reshape(2, 3)
    assert assert_close("out", x.copy(), x) == "exact"
    y = x.copy()
    y[1, 2] += 1e-9
    message = assert_close("out", y, x)
    assert message.startswith("approximately equal") and "(1, 2)" in message


def test_assert_close_names_the_largest_difference_and_where():
    x = np.zeros((3, 4))
    y = x.copy()
    y[2, 1] = 0.5
    with pytest.raises(AssertionError) as err:
        assert_close("dx", y, x)
    assert str(err.value) == "dx: wrong values, off by 0.5 at index (2, 1) (got 0.5, expected 0)"
    assert err.value.lines(hidden=True) == ["dx: wrong values (in a hidden check)"]


def test_assert_close_refuses_wrong_types_shapes_and_dtypes():
    x = np.ones((2, 2))
    with pytest.raises(AssertionError, match="expected a NumPy array.*got list"):
        assert_close("out", [[1.0, 1.0], [1.0, 1.0]], x)
    with pytest.raises(AssertionError, match=r"wrong shape \(4,\), expected \(2, 2\)"):
        assert_close("out", np.ones(4), x)
    with pytest.raises(AssertionError, match="wrong dtype float32, expected float64"):
        assert_close("out", np.ones((2, 2), np.float32), x)
    with pytest.raises(AssertionError, match="inf or NaN"):
        assert_close("out", np.array([[1.0, np.nan], [1.0, 1.0]]), x)


def test_assert_close_recognises_a_named_mistake():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(10, 3))
    biased, unbiased = x.var(axis=0), x.var(axis=0, ddof=1)
    with pytest.raises(AssertionError) as err:
        assert_close("var", unbiased, biased, hints=[("you divide by N - 1", unbiased)])
    assert str(err.value).splitlines()[1] == "hint: you divide by N - 1"


def test_a_wrong_shape_gets_the_hint_of_the_mistake_it_comes_from():
    x = np.arange(6.0).reshape(3, 2)
    with pytest.raises(AssertionError) as err:
        assert_close(
            "var",
            x.var(axis=1),
            x.var(axis=0),
            hints=[("per sample, not per feature", x.var(axis=1))],
        )
    assert err.value.lines() == [
        "var: wrong shape (3,), expected (2,)",
        "hint: per sample, not per feature",
    ]


def test_messages_are_two_short_lines_whatever_they_say():
    long = "a" * 50 + "; " + "b" * 50 + " (" + "c" * 30 + ")"
    failure = CheckFailed(long, " detail " * 20, hint="h" * 200)
    assert len(failure.lines()) == 2
    assert all(len(line) <= WIDTH for line in failure.lines())
    assert failure.lines()[0] == "a" * 50
    converted = as_failure(AssertionError("what\nmore\nhint: the hint\nhint: another"))
    assert converted.lines() == ["what", "hint: the hint"]
    assert fit("x" * 100).endswith("…") and len(fit("x" * 100)) == WIDTH


def test_a_student_traceback_keeps_only_the_students_frames():
    from bncourse.grading.student.calls import call as grader_frame

    namespace: dict = {}
    exec(compile("def f(x):\n    raise NotImplementedError()\n", "<cell 3>", "exec"), namespace)
    try:
        grader_frame("f", namespace["f"], np.ones(2))
    except NotImplementedError as err:
        lines = student_traceback(err)
    assert any("<cell 3>" in line for line in lines)
    assert lines[-1] == "NotImplementedError"
    assert not any("bncourse" in line for line in lines), lines


class _AlwaysEqual:
    def __eq__(self, other):
        return True

    def __ne__(self, other):
        return False


def test_objects_that_equal_everything_are_refused():
    with pytest.raises(AssertionError, match="expected a NumPy array"):
        require_array("mean", _AlwaysEqual())
    with pytest.raises(AssertionError, match="expected a tuple"):
        assert_equal("shape", _AlwaysEqual(), (-1, 10))


def test_patching_numpy_does_not_change_the_comparison(monkeypatch):
    monkeypatch.setattr(np, "allclose", lambda *a, **k: True)
    monkeypatch.setattr(np, "array_equal", lambda *a, **k: True)
    monkeypatch.setattr(np, "abs", lambda a: a * 0)
    with pytest.raises(AssertionError, match="wrong values"):
        assert_close("out", np.ones(3), np.zeros(3))


def test_call_detects_a_function_that_changes_its_input():
    def normalise_in_place(x):
        x -= x.mean(axis=0)
        return x

    with pytest.raises(AssertionError, match="changed its input argument 1 of f in place"):
        call("f", normalise_in_place, np.arange(6.0).reshape(3, 2))


# --------------------------------------------------------------------------- sealing


def _run_sealed(problem_set: str, code: str, **env) -> subprocess.CompletedProcess:
    program = "from bncourse import grading\ncheck = grading.seal(%r)\n" % problem_set
    return subprocess.run(
        [sys.executable, "-c", program + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env={**os.environ, **env},
    )


def test_sealed_notebook_blocks_references_frameworks_files_and_processes():
    proc = _run_sealed(
        "ps1-forward",
        """
        import subprocess
        attempts = {
            "import numpy_bn": "import bncourse.numpy_bn",
            "from bncourse import numpy_bn": "from bncourse import numpy_bn",
            "import keras": "import keras",
            "read numpy_bn.py": "open(__import__('bncourse').__path__[0] + '/numpy_bn.py').read()",
            "subprocess": "subprocess.run(['true'])",
            "os.system": "__import__('os').system('true')",
        }
        for name, statement in attempts.items():
            try:
                exec(statement)
            except (ImportError, PermissionError) as err:
                print("blocked:", name, "|", err)
            else:
                print("ALLOWED:", name)
        import numpy as np
        def batch_mean_var(x):
            return x.mean(axis=0), x.var(axis=0)
        check("ps1-forward.mean_var_visible", batch_mean_var)
    """,
    )
    assert proc.returncode == 0, proc.stderr
    assert "ALLOWED" not in proc.stdout, proc.stdout
    assert proc.stdout.count("blocked:") == 6
    assert "disabled, so that it is your own work that is tested" in proc.stdout
    assert "ok: batch_mean_var on a 3 x 2 example" in proc.stdout


def test_hidden_checks_run_only_where_the_course_is():
    code = """
        def batch_mean_var(x):
            return x.mean(axis=0), x.var(axis=0)
        check("ps1-forward.mean_var", batch_mean_var)
    """
    at_home = _run_sealed("ps1-forward", code, BNCOURSE_HIDDEN_CHECKS="")
    assert at_home.returncode == 1
    assert "ps1-forward.mean_var is a hidden check: it runs when you are graded" in at_home.stderr
    assert "ok:" not in at_home.stdout
    in_course = _run_sealed("ps1-forward", code, BNCOURSE_HIDDEN_CHECKS="1")
    assert in_course.returncode == 0, in_course.stderr
    assert "ok: batch_mean_var on off-centre" in in_course.stdout


def test_a_failed_check_shows_two_lines_and_no_grader_frame_in_ipython():
    """IPython asks an exception for ``_render_traceback_``: the check's failure gives its
    two lines, an error in the student's code its own frames only."""
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            textwrap.dedent("""
        from IPython.core.interactiveshell import InteractiveShell
        shell = InteractiveShell.instance(colors="nocolor")
        shell.run_cell("from bncourse import grading\\ncheck = grading.seal('ps1-forward')")
        shell.run_cell("def batch_mean_var(x):\\n    return x.mean(axis=0), x.var(axis=0, ddof=1)")
        shell.run_cell("check('ps1-forward.mean_var_visible', batch_mean_var)")
        shell.run_cell("def batch_mean_var(x):\\n    raise NotImplementedError()")
        shell.run_cell("check('ps1-forward.mean_var_visible', batch_mean_var)")
    """),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    out = proc.stdout
    assert "var: wrong values, off by 4.33 at index 1 (got 13, expected 8.667)\n" in out
    assert "hint: you divide by N - 1 (the unbiased variance); BN divides by N" in out
    assert "bncourse" not in out and "Traceback" not in out.split("NotImplementedError")[0]
    assert "NotImplementedError" in out


def test_check_moves_native_stderr_to_stdout_without_the_runtime_logs():
    proc = _run_sealed(
        "ps1-forward",
        """
        import os
        def batch_mean_var(x):
            os.write(2, b"E0000 00:00:1.5    4898 cuda_platform.cc:52] failed call to cuInit\\n")
            os.write(2, b"my own message\\n")
            return x.mean(axis=0), x.var(axis=0)
        check("ps1-forward.mean_var_visible", batch_mean_var)
    """,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert "my own message" in proc.stdout and "cuInit" not in proc.stdout


def test_check_keeps_warnings_off_stderr():
    proc = _run_sealed(
        "ps1-forward",
        """
        import warnings
        def batch_mean_var(x):
            warnings.warn("a library is unhappy", UserWarning)
            return x.mean(axis=0), x.var(axis=0)
        check("ps1-forward.mean_var_visible", batch_mean_var)
    """,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert "note: a warning was raised: UserWarning: a library is unhappy" in proc.stdout


def test_every_bncourse_module_is_blocked_unless_allowed():
    package = ROOT / "bncourse"
    modules = {
        f"bncourse.{p.stem}" for p in package.glob("*.py") if p.stem not in ("__init__", "_checks")
    }
    # and its subpackages but grading (bncourse.experiments, bncourse.plotting)
    modules |= {
        f"bncourse.{p.parent.name}"
        for p in package.glob("*/__init__.py")
        if p.parent.name != "grading"
    }
    # every grading module outside bncourse.grading.student: judges, references, the grader
    modules |= {
        f"bncourse.grading.{p.stem}"
        for p in (package / "grading").glob("*.py")
        if p.stem != "__init__"
    }
    assert modules <= set(registry.BNCOURSE_MODULES), modules - set(registry.BNCOURSE_MODULES)
    student = {"bncourse.grading", "bncourse.grading.student"} | {
        f"bncourse.grading.student.{p.stem}"
        for p in (package / "grading" / "student").glob("*.py")
        if p.stem != "__init__"
    }
    for ps in registry.PROBLEM_SETS.values():
        blocked = set(ps.blocked_modules)
        assert "bncourse.grading.solutions" in blocked
        assert blocked | set(ps.allowed) >= set(registry.BNCOURSE_MODULES)
        assert ("keras" in blocked) is (not ps.frameworks)
        # the notebook imports bncourse.grading, and its checks run the student side
        assert not {m for m in student for b in blocked if m == b or m.startswith(b + ".")}


# --------------------------------------------------------------------------- verification

_GOOD = "import numpy as np\ndef batch_mean_var(x):\n    return x.mean(axis=0), x.var(axis=0)\n"
_SETUP = 'from bncourse import grading\ncheck = grading.seal("ps1-forward")\n'
_CHECKS = [
    ("ps1-forward.mean_var_visible", "batch_mean_var"),
    ("ps1-forward.mean_var", "batch_mean_var"),
]


def _verify(cells, tmp_path, timeout=None, checks=_CHECKS):
    return verify.verify(
        registry.problem_set("ps1-forward"), cells, checks, cwd=tmp_path, timeout=timeout
    )


def test_verify_passes_a_correct_submission(tmp_path):
    result = _verify([_SETUP, _GOOD], tmp_path)
    assert result["checks"] and all(c["passed"] for c in result["checks"].values()), result
    assert result["restarts"] == 0 and result["max_rss_mb"] > 0


def test_verify_fails_what_patching_the_kernel_would_hide(tmp_path):
    wrong = "def batch_mean_var(x):\n    return x.mean(axis=0), x.var(axis=0, ddof=1)\n"
    patches = (
        "import numpy as np\nnp.allclose = lambda *a, **k: True\n"
        "check = lambda *a, **k: print('ok')\n"
    )
    result = _verify([_SETUP, patches, wrong], tmp_path)
    assert result["checks"] and not any(c["passed"] for c in result["checks"].values())
    assert "divide by N - 1" in result["checks"]["ps1-forward.mean_var"]["message"]


def test_verify_never_loads_the_reference(tmp_path):
    dig = (
        "import gc\nbatch_mean_var = next((f for f in gc.get_objects() if "
        "getattr(f, '__module__', '') == 'bncourse.numpy_bn'), None)\n"
    )
    check = _verify([_SETUP, dig], tmp_path)["checks"]["ps1-forward.mean_var"]
    assert not check["passed"]
    # not merely a failed check: the search found no function of the reference at all
    assert "expected a function, got NoneType" in check["message"], check["message"]


def test_verify_skips_a_hanging_cell_and_goes_on(tmp_path):
    result = _verify([_SETUP, "while True:\n    pass\n", _GOOD], tmp_path, timeout=3)
    assert result["timed_out"] == [1] and result["restarts"] == 1
    assert result["checks"] and all(c["passed"] for c in result["checks"].values()), result


def test_verify_survives_a_process_exit_and_a_hanging_check(tmp_path):
    hangs = (
        "import numpy as np\ndef batch_mean_var(x):\n    if x.shape == (3, 2):\n"
        "        while True:\n            pass\n    return x.mean(axis=0), x.var(axis=0)\n"
    )
    result = _verify([_SETUP, "import os\nos._exit(3)\n", hangs], tmp_path, timeout=3)
    assert result["crashed"] == [1]
    checks = result["checks"]
    assert not checks["ps1-forward.mean_var_visible"]["passed"]
    assert "timed out" in checks["ps1-forward.mean_var_visible"]["message"]
    assert checks["ps1-forward.mean_var"]["passed"], checks


def test_verify_stops_a_cell_after_its_first_timed_out_check(tmp_path):
    hangs = "import numpy as np\ndef batch_mean_var(x):\n    while True:\n        pass\n"
    checks = _CHECKS + [("ps1-forward.forward_visible", "batchnorm_forward")]
    result = verify.verify(
        registry.problem_set("ps1-forward"),
        [_SETUP, hangs],
        checks,
        cwd=tmp_path,
        timeout=3,
        groups=[0, 0, 1],
    )
    assert result["timed_out"] == [2] and result["restarts"] == 1
    assert "not run: an earlier check" in result["checks"]["ps1-forward.mean_var"]["message"]
    assert "not defined" in result["checks"]["ps1-forward.forward_visible"]["message"]


def test_a_forged_status_line_does_not_stop_the_clock(tmp_path):
    # the re-run's job file (named in sys.argv) says where its status goes: a submission
    # that writes "finished" there and then loops must still be stopped, and the rest run
    forge = (
        "import json, sys\n"
        "_job = json.load(open(sys.argv[-1]))\n"
        "open(_job['status'], 'a').write('finished\\n')\n"
        "while True:\n    pass\n"
    )
    started = time.monotonic()
    result = _verify([_SETUP, forge, _GOOD], tmp_path, timeout=3)
    assert time.monotonic() - started < 60
    assert result["timed_out"] == [1], result
    assert result["checks"] and all(c["passed"] for c in result["checks"].values()), result


def test_verify_rejects_unknown_checks(tmp_path):
    with pytest.raises(ValueError, match="unknown check 'ps1-forward.nope'"):
        _verify([_SETUP], tmp_path, checks=[("ps1-forward.nope", "f")])


def test_cell_timeout_override_is_validated(monkeypatch):
    ps = registry.problem_set("ps1-forward")
    monkeypatch.setenv("BNCOURSE_CELL_TIMEOUT", "7.5")
    assert registry.cell_timeout(ps) == 7.5
    monkeypatch.setenv("BNCOURSE_CELL_TIMEOUT", "-1")
    with pytest.raises(ValueError, match="BNCOURSE_CELL_TIMEOUT must be a number of seconds"):
        registry.cell_timeout(ps)


# --------------------------------------------------------------------------- the notebooks


def _notebooks():
    return sorted(SOURCES.glob("*/*.ipynb"))


@pytest.mark.parametrize("path", _notebooks(), ids=lambda p: p.parent.name)
def test_source_notebook_is_well_formed(path):
    """Every test cell: a one-line docstring, visible checks, hidden checks; every check used."""
    name = path.parent.name
    ps = registry.problem_set(name)
    nb = nbformat.read(path, 4)
    used = []
    setup = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "setup"]
    assert len(setup) == 1 and f'grading.seal("{name}")' in setup[0].source
    assert setup[0].metadata["nbgrader"]["locked"]
    for cell in nb.cells:
        assert not cell.get("outputs"), "source notebooks are committed without outputs"
        if not verify.is_test_cell(cell):
            continue
        tree = ast.parse(cell.source)
        doc = ast.get_docstring(tree)
        assert doc and "\n" not in doc, cell.source
        visible, _, hidden = cell.source.partition("### BEGIN HIDDEN TESTS")
        assert "### END HIDDEN TESTS" in hidden, cell.source
        assert verify.checks_in_cell(visible) and verify.checks_in_cell(hidden), cell.source
        assert not re.search(r"^\s*[-+]?\d[\d.eE+-]*\s*$", cell.source.strip().splitlines()[-1])
        used += [cid for cid, _ in verify.checks_in_cell(cell.source)]
    assert sorted(used) == sorted(registry.checks_of(ps)), "every check used exactly once"


@pytest.mark.slow
def test_grading_bench_measures_a_reference_the_overhead_a_class_and_a_speedup():
    from bncourse.grading import bench

    result = bench.run(["ps1-forward"], class_size=3, speedup_size=3, repeats=1)
    (row,) = result["rows"]
    assert row["score"] == row["max_score"] > 0
    assert row["kernel_peak_mb"] > 0 and row["verify_peak_mb"] > 0 and row["cpu_seconds"] > 0
    assert result["class"]["students"] == 3 and result["class"]["seconds"] > 0
    assert result["overhead"]["ratio"] > 0 and len(result["overhead"]["seconds"]["sandbox"]) == 1
    assert result["speedup"]["students"] == 3 and result["speedup"]["ratio"] > 0
    text = bench.format_report(result)
    assert "ps1-forward" in text and "A class of 3 ps1-forward submissions" in text
    assert "(budget 1.2x)" in text and "a speed-up of" in text


# --------------------------------------------------------------------------- error carried forward


def _judged(check_id: str, obj, namespace: dict):
    """A check's producer and judge in this process, as ``check`` runs them at home."""
    ps, check = registry.find_check(check_id)
    inputs = check.make_inputs()
    return check.judge(inputs, check.run(obj, inputs, namespace))


PS1_CODE = """
import numpy as np

def batch_mean_var(x):
    return x.mean(axis=0), x.var(axis=0, ddof=1)    # the mistake

def batchnorm_forward(x, gamma, beta, epsilon=1e-3):
    mean, var = batch_mean_var(x)
    return (gamma * (x - mean) / np.sqrt(var + epsilon) + beta).astype(x.dtype)

def update_moving_stats(moving_mean, moving_var, mean, var, momentum=0.99):
    return moving_mean * momentum + mean * (1 - momentum), moving_var * momentum + var * (1 - momentum)

def batchnorm_inference(x, gamma, beta, moving_mean, moving_var, epsilon=1e-3):
    return (gamma * (x - moving_mean) / np.sqrt(moving_var + epsilon) + beta).astype(x.dtype)

class BatchNorm1d:
    def __init__(self, num_features, momentum=0.99, epsilon=1e-3):
        self.momentum, self.epsilon = momentum, epsilon
        self.gamma, self.beta = np.ones(num_features), np.zeros(num_features)
        self.moving_mean, self.moving_var = np.zeros(num_features), np.ones(num_features)

    def __call__(self, x, training=False):
        if not training:
            return batchnorm_inference(x, self.gamma, self.beta, self.moving_mean,
                                       self.moving_var, self.epsilon)
        mean, var = batch_mean_var(x)
        self.moving_mean, self.moving_var = update_moving_stats(
            self.moving_mean, self.moving_var, mean, var, self.momentum)
        return batchnorm_forward(x, self.gamma, self.beta, self.epsilon)
"""


@pytest.mark.parametrize("check_id", ["ps1-forward.forward", "ps1-forward.layer"])
def test_a_part_built_on_a_wrong_function_is_judged_on_what_it_returns(check_id):
    ns: dict = {}
    exec(PS1_CODE, ns)
    with pytest.raises(AssertionError, match="you divide by N - 1"):
        _judged("ps1-forward.mean_var", ns["batch_mean_var"], ns)
    obj = ns["batchnorm_forward"] if check_id.endswith("forward") else ns["BatchNorm1d"]
    lines = _judged(check_id, obj, ns)
    assert any("given your batch_mean_var (wrong: fix it first)" in line for line in lines)
    # without the student's functions in sight, the same part is judged on the reference
    with pytest.raises(AssertionError):
        _judged(check_id, obj, {})


def test_a_part_wrong_on_its_own_still_fails_next_to_a_wrong_function():
    ns: dict = {}
    exec(PS1_CODE.replace("np.sqrt(var + epsilon)", "(np.sqrt(var) + epsilon)", 1), ns)
    with pytest.raises(AssertionError) as err:
        _judged("ps1-forward.forward", ns["batchnorm_forward"], ns)
    assert str(err.value).startswith("out uses your batch_mean_var, which is wrong: fix it first")


def test_a_part_that_cannot_run_with_a_wrong_function_says_to_fix_that_first():
    ns: dict = {}
    exec(
        PS1_CODE.replace("x.mean(axis=0), x.var(axis=0, ddof=1)", "x.mean(axis=1), x.var(axis=1)"),
        ns,
    )
    for check_id, obj in (
        ("ps1-forward.forward", ns["batchnorm_forward"]),
        ("ps1-forward.layer", ns["BatchNorm1d"]),
    ):
        with pytest.raises(AssertionError) as err:
            _judged(check_id, obj, ns)
        assert str(err.value).splitlines() == [
            f"{obj.__name__} uses your batch_mean_var, which is wrong: fix it first",
            "hint: the test cell of batch_mean_var says what is wrong",
        ]


@pytest.mark.parametrize("old, new", [("** -1.5", "** -0.5"), ("dvar = -0.5 *", "dvar = 0.5 *")])
def test_a_wrong_node_of_the_staged_backward_costs_only_its_own_part(old, new):
    from test_assignment_backward import STAGED as source

    ns: dict = {"np": np}
    exec(source.replace(old, new), ns)
    fn = ns["batchnorm_backward_staged"]
    with pytest.raises(AssertionError):
        _judged("ps2-backward.staged_dvar", fn, ns)
    for later in ("staged_dmean", "staged_dx"):
        lines = _judged(f"ps2-backward.{later}", fn, ns)
        assert lines and all("given your dvar (wrong: fix it first)" in line for line in lines), (
            lines
        )


def test_the_committed_mistakes_measurement_keeps_the_promises():
    """results/benchmarks/mistakes.json (read by the instructors' chapter): each mistake
    costs its own part (and the parts it blocks), in at most two lines per test cell, with
    no hint cut by validate; and it covers every mistake of the module."""
    from bncourse.grading import bench, mistakes

    recorded = bench.load_any(ROOT / "results" / "benchmarks" / "mistakes.json", "mistakes")
    rows = {r["mistake"]: r for r in recorded["rows"]}
    assert set(rows) == {m.name for m in mistakes.MISTAKES}
    for m in mistakes.MISTAKES:
        row = rows[m.name]
        assert row["failed_parts"] == sorted((m.part, *m.blocks)), row
        assert row["lines"] and all(n <= 2 for n in row["lines"].values()), row
        assert not row["validate_cut_hints"] and not row["validate_stderr_failure"], row
    with pytest.raises(ValueError, match="not a grading benchmark result"):
        bench.load(ROOT / "results" / "benchmarks" / "mistakes.json")


@pytest.mark.parametrize("path", sorted(SOURCES.glob("*/*.ipynb")), ids=lambda p: p.stem)
def test_hidden_checks_are_exactly_those_in_hidden_test_blocks(path):
    """A check is hidden (refused in a student's copy, reported without its details) by its
    id not ending in _visible; the source notebook must agree: every check called between
    BEGIN and END HIDDEN TESTS is hidden, every other one visible."""
    ps = registry.problem_set(path.stem)
    producers = registry.producers_of(ps)
    seen = 0
    for cell in nbformat.read(path, 4).cells:
        if cell.cell_type != "code" or "check(" not in cell.source:
            continue
        inside = False
        for line in cell.source.splitlines():
            if "BEGIN HIDDEN TESTS" in line or "END HIDDEN TESTS" in line:
                inside = "BEGIN" in line
            found = re.search(r'check\("([^"]+)"', line)
            if found:
                seen += 1
                assert producers[found.group(1)].hidden == inside, (found.group(1), inside)
    assert seen >= 2 * len(
        [
            c
            for c in nbformat.read(path, 4).cells
            if c.metadata.get("nbgrader", {}).get("grade") and c.cell_type == "code"
        ]
    )
