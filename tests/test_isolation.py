"""The OS sandbox (bncourse.grading.isolation) on its own: what code inside sees and can do."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from bncourse.grading import isolation
from bncourse.grading.isolation import Limits, Sandbox, run
from bncourse.grading.registry import problem_set

PS1 = problem_set("ps1-forward")
PS4 = problem_set("ps4-experiment")
PACKAGE = isolation.PACKAGE


def _inside(ps, code: str, tmp_path, *, limits=None, wall=60, workdir=None) -> tuple[dict, str]:
    """Run ``code`` with the venv's Python in a sandbox; (run's figures, its output)."""
    out = tmp_path / "out.txt"
    kwargs = {"limits": limits} if limits else {}
    with Sandbox(ps, workdir=workdir, **kwargs) as box, open(out, "w") as f:
        figures = run(
            box, [sys.executable, "-c", code], wall_seconds=wall, stdout=f, stderr=subprocess.STDOUT
        )
    return figures, out.read_text()


def test_the_sandbox_tool_is_installed():
    isolation.check_available()


PROBE = r"""
import json, os, socket, sys
facts = {"uid": os.getuid(), "env": sorted(os.environ)}
def exists(p):
    try:
        return os.path.exists(p)
    except OSError:
        return False
facts["seen"] = {p: exists(p) for p in sys.argv[1:]}
try:
    open(os.path.join(sys.prefix, "evil.pth"), "w")
    facts["venv_writable"] = True
except OSError:
    facts["venv_writable"] = False
try:
    socket.create_connection(("127.0.0.1", int(os.environ.get("PORT", "1"))), timeout=2)
    facts["net"] = True
except OSError:
    facts["net"] = False
facts["pids"] = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
print(json.dumps(facts))
"""


def test_code_inside_sees_only_its_view_and_cannot_write_or_connect(tmp_path):
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    secret = [
        str(PACKAGE / "numpy_bn.py"),
        str(PACKAGE / "keras_bn.py"),
        str(PACKAGE / "fold.py"),
        str(PACKAGE / "grading" / "forward.py"),
        str(PACKAGE / "grading" / "registry.py"),
        str(PACKAGE / "grading" / "solutions.py"),
        str(PACKAGE.parent / "assignments"),
        str(PACKAGE.parent / "results"),
        str(tmp_path),
        "/root/.bashrc",
    ]
    visible = [str(PACKAGE / "grading" / "student" / "calls.py"), str(PACKAGE / "__init__.py")]
    code = (
        f"import sys; sys.argv[1:] = {secret + visible!r}; import os; "
        f"os.environ['PORT'] = '{port}'\n" + PROBE
    )
    figures, output = _inside(PS1, code, tmp_path)
    server.close()
    assert figures["returncode"] == 0, output
    facts = json.loads(output.strip().splitlines()[-1])
    assert facts["uid"] >= isolation.UID_BASE
    assert not any(facts["seen"][p] for p in secret), facts["seen"]
    assert all(facts["seen"][p] for p in visible), facts["seen"]
    assert facts["venv_writable"] is False
    assert facts["net"] is False
    # its own PID namespace: the grader and the rest of the machine are not listed
    assert max(facts["pids"]) < 50, facts["pids"]
    assert not any(
        name.startswith(("NBGRADER", "BNCOURSE_SANDBOX", "PYTEST")) for name in facts["env"]
    ), facts["env"]


def test_numpy_only_sets_hide_the_frameworks_and_ps4_sees_its_data_module(tmp_path):
    modules = ("keras", "bncourse.data", "bncourse.grading.student.calls", "bncourse.diagnostics")
    code = (
        "import importlib.util as u\n"
        "print([u.find_spec(m) is not None and u.find_spec(m).origin is not None "
        f"for m in {modules!r}])"
    )
    _, out1 = _inside(PS1, code, tmp_path)
    _, out4 = _inside(PS4, code, tmp_path)
    assert out1.strip().splitlines()[-1] == "[False, False, True, False]", out1
    # ps4's optional part uses the training diagnostics
    assert out4.strip().splitlines()[-1] == "[True, True, True, True]", out4


def test_the_wall_clock_limit_kills_the_whole_sandbox(tmp_path):
    code = (
        "import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(600)\ntime.sleep(600)"
    )
    started = time.monotonic()
    figures, _ = _inside(PS1, code, tmp_path, wall=2)
    assert figures["timed_out"] and figures["returncode"] != 0
    assert time.monotonic() - started < 30
    left = subprocess.run(["pgrep", "-U", str(isolation.UID_BASE)], capture_output=True)
    assert left.returncode == 1, left.stdout


@pytest.mark.parametrize("kind", ["memory", "fork", "file"])
def test_limits_hold(tmp_path, kind):
    limits = Limits(memory_mb=1024, processes=32, file_mb=8, cpu_seconds=60)
    code = {
        "memory": "blocks = []\nwhile True:\n    blocks.append(bytearray(50 * 2**20))",
        "fork": (
            "import os, time\nn = 0\ntry:\n    while True:\n        if os.fork() == 0:\n"
            "            time.sleep(5)\n            os._exit(0)\n        n += 1\n"
            "except OSError as err:\n    print('refused after', n, err.errno)"
        ),
        "file": "open('big', 'wb').write(b'x' * (64 * 2**20))",
    }[kind]
    figures, output = _inside(PS1, code, tmp_path, limits=limits, wall=20)
    if kind == "memory":
        assert figures["max_rss_mb"] < 1024, figures
        assert "MemoryError" in output or figures["timed_out"], output
    elif kind == "fork":
        assert "refused after" in output, output
        assert int(output.split("refused after")[1].split()[0]) < 32
    else:
        assert "File too large" in output, output


def test_a_missing_sandbox_tool_stops_grading_with_the_way_to_install_it(monkeypatch):
    monkeypatch.setattr(isolation, "SANDBOX_TOOL", "bwrap-that-is-not-installed")
    with pytest.raises(isolation.SandboxUnavailable, match="apt-get install bubblewrap"):
        isolation.check_available()


def test_limits_from_the_environment_are_validated(monkeypatch):
    monkeypatch.setenv("BNCOURSE_SANDBOX_MEMORY_MB", "2048")
    assert Limits.from_env().memory_mb == 2048
    monkeypatch.setenv("BNCOURSE_SANDBOX_MEMORY_MB", "lots")
    with pytest.raises(ValueError, match="BNCOURSE_SANDBOX_MEMORY_MB.*'lots'"):
        Limits.from_env()


def test_usage_meter_sees_the_peak_memory_of_a_sandbox(tmp_path):
    code = "b = bytearray(300 * 2**20)\nimport time; time.sleep(1)"
    figures, _ = _inside(PS1, code, tmp_path)
    assert 300 <= figures["max_rss_mb"] < 600, figures
    assert figures["cpu_seconds"] >= 0.05, figures


def test_slots_are_never_shared():
    a, b = isolation.claim_slot(), isolation.claim_slot()
    assert a != b
    other = subprocess.run(
        [
            sys.executable,
            "-c",
            "from bncourse.grading.isolation import claim_slot; print(claim_slot())",
        ],
        capture_output=True,
        text=True,
    )
    assert int(other.stdout) not in (a, b)


def test_a_link_in_the_submission_does_not_bring_a_file_of_the_machine_in(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("the grader's secret")
    work = tmp_path / "submission"
    work.mkdir()
    (work / "notes.txt").symlink_to(secret)
    code = (
        "import os\ntry:\n    print(open('notes.txt').read())\n"
        "except OSError as err:\n    print('refused', type(err).__name__)"
    )
    _, output = _inside(PS1, code, tmp_path, workdir=work)
    assert "secret" not in output and "refused" in output, output


def test_ps4_sees_only_the_images_its_budget_uses(tmp_path):
    code = (
        "from bncourse.data import load_dataset\n"
        "(x, y), (x_test, y_test) = load_dataset('fashion_mnist', download=False)\n"
        "print(x.shape[0], x_test.shape[0])"
    )
    figures, output = _inside(PS4, code, tmp_path)
    assert figures["returncode"] == 0, output
    ((_, n_train, n_test),) = PS4.data
    assert output.split()[-2:] == [str(n_train), str(n_test)], output
