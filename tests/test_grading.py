"""bncourse.grading's parts on their own: messages, sealing, verification, the registry."""

from __future__ import annotations

import ast
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
    text = str(err.value)
    assert text.startswith("dx: values differ")
    assert "largest absolute difference 0.5 at index (2, 1)" in text


def test_assert_close_refuses_wrong_types_shapes_and_dtypes():
    x = np.ones((2, 2))
    with pytest.raises(AssertionError, match="expected a NumPy array.*got list"):
        assert_close("out", [[1.0, 1.0], [1.0, 1.0]], x)
    with pytest.raises(AssertionError, match=r"expected shape \(2, 2\), got shape \(4,\)"):
        assert_close("out", np.ones(4), x)
    with pytest.raises(AssertionError, match="expected dtype float64, got dtype float32"):
        assert_close("out", np.ones((2, 2), np.float32), x)
    with pytest.raises(AssertionError, match="non-finite"):
        assert_close("out", np.array([[1.0, np.nan], [1.0, 1.0]]), x)


def test_assert_close_recognises_a_named_mistake():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(10, 3))
    biased, unbiased = x.var(axis=0), x.var(axis=0, ddof=1)
    with pytest.raises(AssertionError, match="hint: your var matches .* N - 1"):
        assert_close("var", unbiased, biased, hints=[("you divide by N - 1", unbiased)])


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
    with pytest.raises(AssertionError, match="values differ"):
        assert_close("out", np.ones(3), np.zeros(3))


def test_call_detects_a_function_that_changes_its_input():
    def normalise_in_place(x):
        x -= x.mean(axis=0)
        return x

    with pytest.raises(AssertionError, match="changed its input argument 1 of f in place"):
        call("f", normalise_in_place, np.arange(6.0).reshape(3, 2))


# --------------------------------------------------------------------------- sealing

def _run_sealed(problem_set: str, code: str) -> subprocess.CompletedProcess:
    program = "from bncourse import grading\ncheck = grading.seal(%r)\n" % problem_set
    return subprocess.run([sys.executable, "-c", program + textwrap.dedent(code)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)


def test_sealed_notebook_blocks_references_frameworks_files_and_processes():
    proc = _run_sealed("ps1-forward", """
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
        check("ps1-forward.mean_var", batch_mean_var)
    """)
    assert proc.returncode == 0, proc.stderr
    assert "ALLOWED" not in proc.stdout, proc.stdout
    assert proc.stdout.count("blocked:") == 6
    assert "disabled, so that it is your own work that is tested" in proc.stdout
    assert "ok: batch_mean_var on off-centre" in proc.stdout


def test_check_keeps_warnings_off_stderr():
    proc = _run_sealed("ps1-forward", """
        import warnings
        def batch_mean_var(x):
            warnings.warn("a library is unhappy", UserWarning)
            return x.mean(axis=0), x.var(axis=0)
        check("ps1-forward.mean_var_visible", batch_mean_var)
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert "note: a warning was raised: UserWarning: a library is unhappy" in proc.stdout


def test_every_bncourse_module_is_blocked_unless_allowed():
    package = ROOT / "bncourse"
    modules = {f"bncourse.{p.stem}" for p in package.glob("*.py")
               if p.stem not in ("__init__", "_checks")}
    # every grading module outside bncourse.grading.student: judges, references, the grader
    modules |= {f"bncourse.grading.{p.stem}" for p in (package / "grading").glob("*.py")
                if p.stem != "__init__"}
    assert modules <= set(registry.BNCOURSE_MODULES), modules - set(registry.BNCOURSE_MODULES)
    student = {"bncourse.grading", "bncourse.grading.student"} | {
        f"bncourse.grading.student.{p.stem}"
        for p in (package / "grading" / "student").glob("*.py") if p.stem != "__init__"}
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
_CHECKS = [("ps1-forward.mean_var_visible", "batch_mean_var"),
           ("ps1-forward.mean_var", "batch_mean_var")]


def _verify(cells, tmp_path, timeout=None, checks=_CHECKS):
    return verify.verify(registry.problem_set("ps1-forward"), cells, checks, cwd=tmp_path,
                          timeout=timeout)


def test_verify_passes_a_correct_submission(tmp_path):
    result = _verify([_SETUP, _GOOD], tmp_path)
    assert all(c["passed"] for c in result["checks"].values()), result
    assert result["restarts"] == 0 and result["max_rss_mb"] > 0


def test_verify_fails_what_patching_the_kernel_would_hide(tmp_path):
    wrong = "def batch_mean_var(x):\n    return x.mean(axis=0), x.var(axis=0, ddof=1)\n"
    patches = ("import numpy as np\nnp.allclose = lambda *a, **k: True\n"
               "check = lambda *a, **k: print('ok')\n")
    result = _verify([_SETUP, patches, wrong], tmp_path)
    assert not any(c["passed"] for c in result["checks"].values())
    assert "divide by N - 1" in result["checks"]["ps1-forward.mean_var"]["message"]


def test_verify_never_loads_the_reference(tmp_path):
    dig = ("import gc\nbatch_mean_var = next((f for f in gc.get_objects() if "
           "getattr(f, '__module__', '') == 'bncourse.numpy_bn'), None)\n")
    result = _verify([_SETUP, dig], tmp_path)
    assert not result["checks"]["ps1-forward.mean_var"]["passed"]


def test_verify_skips_a_hanging_cell_and_goes_on(tmp_path):
    result = _verify([_SETUP, "while True:\n    pass\n", _GOOD], tmp_path, timeout=3)
    assert result["timed_out"] == [1] and result["restarts"] == 1
    assert all(c["passed"] for c in result["checks"].values()), result


def test_verify_survives_a_process_exit_and_a_hanging_check(tmp_path):
    hangs = ("import numpy as np\ndef batch_mean_var(x):\n    if x.shape == (3, 2):\n"
             "        while True:\n            pass\n    return x.mean(axis=0), x.var(axis=0)\n")
    result = _verify([_SETUP, "import os\nos._exit(3)\n", hangs], tmp_path, timeout=3)
    assert result["crashed"] == [1]
    checks = result["checks"]
    assert not checks["ps1-forward.mean_var_visible"]["passed"]
    assert "timed out" in checks["ps1-forward.mean_var_visible"]["message"]
    assert checks["ps1-forward.mean_var"]["passed"], checks


def test_verify_stops_a_cell_after_its_first_timed_out_check(tmp_path):
    hangs = ("import numpy as np\ndef batch_mean_var(x):\n    while True:\n        pass\n")
    checks = _CHECKS + [("ps1-forward.forward_visible", "batchnorm_forward")]
    result = verify.verify(registry.problem_set("ps1-forward"), [_SETUP, hangs], checks,
                            cwd=tmp_path, timeout=3, groups=[0, 0, 1])
    assert result["timed_out"] == [2] and result["restarts"] == 1
    assert "not run: an earlier check" in result["checks"]["ps1-forward.mean_var"]["message"]
    assert "not defined" in result["checks"]["ps1-forward.forward_visible"]["message"]


def test_a_forged_status_line_does_not_stop_the_clock(tmp_path):
    # the re-run's job file (named in sys.argv) says where its status goes: a submission
    # that writes "finished" there and then loops must still be stopped, and the rest run
    forge = ("import json, sys\n"
             "_job = json.load(open(sys.argv[-1]))\n"
             "open(_job['status'], 'a').write('finished\\n')\n"
             "while True:\n    pass\n")
    started = time.monotonic()
    result = _verify([_SETUP, forge, _GOOD], tmp_path, timeout=3)
    assert time.monotonic() - started < 60
    assert result["timed_out"] == [1], result
    assert all(c["passed"] for c in result["checks"].values()), result


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
