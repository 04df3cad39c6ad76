"""A class of hostile ps1 submissions, graded through nbgrader in the OS sandbox.

Each attack below works when the student's code runs with the grader's rights (each one was
tried that way): it reads the solution, another student's work or the reference, writes the
gradebook or the virtual environment, reaches the network, escapes the in-process guards
through ``multiprocessing`` or ``ctypes``, forges the re-run's timeout, or exhausts memory,
processes or time. In the sandbox each must score 0 on the cells it targets, be reported
(errors, time-outs), leave the machine, the gradebook and every other student's grade as
they were, and not stop the class run. Broken files (binary, oversized, misplaced) get their
own status in the report.
"""

from __future__ import annotations

import hashlib
import os
import socket
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import nbformat
import pytest

from bncourse.grading import isolation
from nbgrader_course import (
    Case,
    check_case,
    grade_class,
    insert_after,
    replace_cell,
)

pytestmark = pytest.mark.slow

TARGET = ("test_batchnorm_inference", "test_BatchNorm1d")  # what losing inference costs
EVIL_PTH = "zz_bncourse_evil.pth"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


PORT = _free_port()

# Turns the source notebook's JSON into the reference solution of batchnorm_inference.
_LOOT = (
    "import json as _json\n"
    "def _solution(text):\n"
    "    for _cell in _json.loads(text)['cells']:\n"
    "        if _cell['metadata'].get('nbgrader', {}).get('grade_id') == "
    "'batchnorm_inference':\n"
    "            return ''.join(_cell['source'])\n"
    "    raise LookupError('no solution cell')\n"
)


def steal(how: str) -> str:
    """A batchnorm_inference cell that takes the answer instead of computing it."""
    return _LOOT + how


ATTACKS = {
    # nbgrader runs the notebook in autograded/<student>/ps1-forward: the course root is
    # three levels up. dir_fd escapes a path check on open() in an audit hook.
    "solution_by_dir_fd": steal(
        "import os\n"
        "_d = os.open('../../..', os.O_RDONLY)\n"
        "_fd = os.open('source/ps1-forward/ps1-forward.ipynb', os.O_RDONLY, dir_fd=_d)\n"
        "exec(_solution(os.read(_fd, 10**7).decode()))\n"
    ),
    "other_students_work": steal(
        "exec(_solution(open('../../../submitted/reference/ps1-forward/ps1-forward.ipynb')"
        ".read()))\n"
    ),
    "network": steal(
        f"import socket\n_s = socket.create_connection(('127.0.0.1', {PORT}), timeout=5)\n"
        "exec(_s.makefile().read())\n"
    ),
    "multiprocessing_spawn": steal(
        "import multiprocessing as _mp, os\n"
        "_ctx = _mp.get_context('spawn')\n"
        "_q = _ctx.Queue()\n"
        "_path = os.path.abspath('../../../source/ps1-forward/ps1-forward.ipynb')\n"
        "_p = _ctx.Process(target=exec, args=('q.put(open(path).read())', "
        "{'q': _q, 'path': _path}))\n"
        "_p.start()\n"
        "exec(_solution(_q.get(timeout=2)))\n"
    ),
    "ctypes_system": steal(
        "import ctypes, os\n"
        "ctypes.CDLL(None).system(b'cp ../../../source/ps1-forward/ps1-forward.ipynb "
        "stolen.json')\n"
        "exec(_solution(open('stolen.json').read()))\n"
    ),
    "writes_gradebook": (
        "import sqlite3\n"
        "_db = sqlite3.connect('file:../../../gradebook.db?mode=rw', uri=True)\n"
        "_db.execute('CREATE TRIGGER evil AFTER INSERT ON grade BEGIN UPDATE grade SET "
        "auto_score = 72; END')\n"
        "_db.commit()\n"
        "def batchnorm_inference(x, gamma, beta, moving_mean, moving_var, epsilon=1e-3):\n"
        "    return x\n"
    ),
    "writes_venv_and_package": (
        "import site, bncourse.grading.student.values as _v\n"
        f"open(site.getsitepackages()[0] + '/{EVIL_PTH}', 'w').write('import os\\n')\n"
        "open(_v.__file__, 'a').write('\\nrequire_array = lambda name, value, **k: value\\n')\n"
        "def batchnorm_inference(x, gamma, beta, moving_mean, moving_var, epsilon=1e-3):\n"
        "    return x\n"
    ),
    "forges_timeout": (
        "import json, sys\n"
        "try:\n"
        "    _job = json.load(open(sys.argv[-1]))\n"
        "    open(_job['status'], 'a').write('finished\\n')\n"
        "except Exception:\n"
        "    pass\n"
        "while True:\n"
        "    pass\n"
    ),
    "memory_bomb": "_hog = [b'x' * 2**28 for _ in range(400)]\n",
    "fork_bomb": (
        "import ctypes, time\n"
        "_libc = ctypes.CDLL(None)\n"
        "while True:\n"
        "    if _libc.fork() == 0:\n"
        "        time.sleep(3600)\n"
    ),
    "sleeps_past_the_limit": "import time\ntime.sleep(10**6)\n",
}


def _attack(name: str, **kwargs) -> Case:
    return Case(
        name,
        lambda c: replace_cell(c.solution, "batchnorm_inference", ATTACKS[name]),
        failing=TARGET,
        **kwargs,
    )


def _with_huge_output(c):
    nb = insert_after(c.solution, "batch_mean_var", "print('ok')")
    for cell in nb.cells:
        if cell.cell_type == "code" and cell.source == "print('ok')":
            cell.outputs = [
                nbformat.v4.new_output("stream", name="stdout", text="y" * (50 * 2**20))
            ]
    return nb


def _without_kernel_spec(c):
    nb = insert_after(c.solution, "batch_mean_var", "pass")
    nb.metadata.pop("kernelspec", None)
    return nb


CASES = [
    Case("reference", lambda c: c.solution),
    *[
        _attack(name, flags=("errors",))
        for name in (
            "solution_by_dir_fd",
            "other_students_work",
            "network",
            "multiprocessing_spawn",
            "ctypes_system",
            "writes_gradebook",
            "writes_venv_and_package",
            "memory_bomb",
        )
    ],
    _attack("forges_timeout", status="timed out", flags=("timed out",)),
    _attack("fork_bomb", status="timed out", flags=("timed out",)),
    _attack("sleeps_past_the_limit", status="timed out", flags=("timed out",)),
    Case(
        "prints_100000_lines",
        lambda c: insert_after(
            c.solution, "batch_mean_var", "for i in range(100_000):\n    print('line', i)"
        ),
    ),
    Case(
        "binary_file",
        lambda c: bytes(range(256)) * 64,
        failing="all",
        status="crashed",
        flags=("not valid JSON",),
    ),
    Case("huge_outputs", _with_huge_output),
    Case("no_kernel_spec", _without_kernel_spec),
    Case(
        "wrong_file_name",
        lambda c: c.solution,
        failing="all",
        status="crashed",
        flags=("ps1-forward.ipynb not submitted",),
    ),
    Case("zz_graded_last", lambda c: c.solution),  # after every attack: unaffected
]


def _package_digest() -> str:
    digest = hashlib.sha256()
    for path in sorted(isolation.PACKAGE.rglob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def attacked(tmp_path_factory):
    """The class, graded with a 2 GB memory cap and a loopback server that gives the
    solution to whoever connects; records what the machine looked like before and after."""
    got = []
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", PORT))
    server.listen()
    answer = (
        "def batchnorm_inference(x, gamma, beta, moving_mean, moving_var, "
        "epsilon=1e-3):\n    return (gamma * (x - moving_mean) / (moving_var + epsilon)"
        " ** 0.5 + beta).astype(x.dtype)\n"
    ).encode()

    def serve():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            got.append(1)
            with conn:
                conn.sendall(answer)

    threading.Thread(target=serve, daemon=True).start()
    before = _package_digest()
    site = Path(
        subprocess.check_output(
            [sys.executable, "-c", "import site; print(site.getsitepackages()[0])"], text=True
        ).strip()
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BNCOURSE_SANDBOX_MEMORY_MB", "2048")

        def submit_hook(course):
            # a submission saved under the wrong name, and one in the wrong folder, as
            # students do
            folder = course.path / "submitted" / "wrong_file_name" / "ps1-forward"
            (folder / "ps1-forward.ipynb").rename(folder / "ps1_forward (1).ipynb")
            wrong = course.path / "submitted" / "zz_graded_last" / "ps1-forwrad"
            wrong.mkdir()
            (wrong / "ps1-forward.ipynb").write_text("{}")

        graded = grade_class(
            tmp_path_factory, "ps1-forward", CASES, cell_timeout=5, after_submit=submit_hook
        )
    server.close()
    with sqlite3.connect(graded.course.path / "gradebook.db") as db:
        triggers = db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall()
    left = _left_running()
    return {
        "graded": graded,
        "connections": len(got),
        "triggers": triggers,
        "package_unchanged": _package_digest() == before,
        "evil_pth": (site / EVIL_PTH).exists(),
        "left_running": left,
    }


def _left_running() -> list:
    """Processes still running under a sandbox's user id whose slot no grader holds.

    Another test file may be grading at the same time (make test runs files on every
    core), each grader holding its slot's lock (isolation.claim_slot): its sandboxes are
    alive by right. A slot whose lock can be taken has no grader, so any process left under
    its user id outlived the sandbox that started it. The lock is held while looking, so
    no grader can claim the slot meanwhile."""
    import fcntl

    ps = subprocess.run(["ps", "-e", "-o", "pid=,uid="], capture_output=True, text=True)
    left = []
    for line in ps.stdout.splitlines():
        pid, uid = (int(v) for v in line.split())
        slot = uid - isolation.UID_BASE
        if not 0 <= slot < 1000:
            continue
        lock = Path(isolation.slot_lock(slot))
        if not lock.exists():
            left.append(str(pid))  # a slot outside claim_slot's: no grader can hold it
            continue
        fd = os.open(lock, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue  # a live grader holds this slot
        else:
            if Path(f"/proc/{pid}").exists():
                left.append(str(pid))
        finally:
            os.close(fd)  # closing releases the lock
    return left


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_attack_is_contained(attacked, case):
    check_case(attacked["graded"], "ps1-forward", case)


def test_misplaced_files_are_reported(attacked):
    report = attacked["graded"].report
    assert "found instead: ps1_forward (1).ipynb" in report["wrong_file_name"]["flags"]
    path = attacked["graded"].course.path
    proc = subprocess.run(
        [sys.executable, "-m", "bncourse.grading.report"], cwd=path, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    line = next(x for x in proc.stdout.splitlines() if "ps1-forwrad" in x)
    assert "misplaced" in line and "is not a problem set's folder" in line
    line = next(x for x in proc.stdout.splitlines() if x.startswith("network "))
    assert "failed: test_batchnorm_inference, test_BatchNorm1d" in line
    assert "errors: batchnorm_inference (ConnectionRefusedError)" in line
    seconds, peak = line.split()[4:6]  # time and peak memory, measured
    assert float(seconds) > 0 and float(peak) > 0


def test_the_machine_and_the_gradebook_are_as_they_were(attacked):
    assert attacked["connections"] == 0
    assert attacked["triggers"] == []
    assert attacked["package_unchanged"]
    assert not attacked["evil_pth"]
    assert attacked["left_running"] == []
