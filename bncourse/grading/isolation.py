"""The operating-system sandbox in which every piece of student code runs.

Grading never trusts the Python process that runs a submission. Each such process (nbgrader's
kernel and the verification re-run) is started by :class:`Sandbox` through Debian's
``bubblewrap`` (``bwrap``), as root, then drops to an unprivileged user id of its own:

- **What it sees, read-only:** ``/usr`` and ``/etc``, the interpreter's prefix, the virtual
  environment, and in place of the ``bncourse`` package a *student view* of it, a copy of the
  few modules that run next to student code (:mod:`bncourse.grading.student`, the package
  ``__init__`` files, ``bncourse.data`` where the problem set loads data, and
  ``bncourse.diagnostics`` in ps4's optional part). The reference
  implementations, the judges, the gradebook, ``source/``, other submissions and the rest of
  the repository are not in its file system at all. In NumPy-only problem sets Keras,
  TensorFlow and JAX are hidden too (empty directories over their packages).
- **What it may write:** one scratch directory of its own (with the submission's copy in
  it), which is deleted afterwards. Everything else is read-only or absent.
- **What it may reach:** nothing: new network (loopback only, and no one listening), PID,
  IPC and UTS namespaces, a new session (no terminal injection), an environment built from
  nothing (no variable of the grader's, nothing that says it is being graded).
- **How much:** ``prlimit`` caps its address space, CPU seconds, processes and file size
  (:class:`Limits`); each concurrent sandbox runs as its own user id, so the process cap
  counts only its own processes. The wall-clock limit is enforced from outside: the grader
  kills the whole sandbox (``bwrap --die-with-parent`` takes every process in its PID
  namespace with it), whatever the code inside writes or prints.

Results come back only as files in the scratch directory, which the grader reads as plain
data (``.npz`` without pickles, JSON), and judges in its own process.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the problem sets live with the student-side code
    from .student.problem_sets import ProblemSet

PACKAGE = Path(__file__).resolve().parents[1]
# The modules of the package a sandbox may see: what runs next to student code.
STUDENT_VIEW = ("__init__.py", "matplotlibrc", "grading/__init__.py", "grading/student")
# Module files a problem set may also import (``ProblemSet.allowed``), by module name.
ALLOWED_FILES = {
    "bncourse.data": "data.py",
    "bncourse.data_files": "data_files.py",
    "bncourse.diagnostics": "diagnostics.py",
}
FRAMEWORK_PACKAGES = (
    "keras",
    "tensorflow",
    "tensorflow_io_gcs_filesystem",
    "jax",
    "jaxlib",
    "tf_keras",
    "torch",
    "flax",
    "ml_dtypes_keras",
)
UID_BASE = 61000
SANDBOX_TOOL = "bwrap"
INSTALL_HINT = (
    "install Debian's bubblewrap (as root: apt-get install bubblewrap; "
    "`make setup` does it), or pass --no-sandbox for trusted notebooks only"
)


class SandboxUnavailable(RuntimeError):
    """The sandbox tool is missing or cannot run here; grading must not start."""


_HELD: list = []


def slot_lock(slot: int) -> str:
    """The file whose lock a grader holds while it uses sandbox ``slot``."""
    return f"/tmp/bncourse-sandbox-slot-{slot}.lock"


def claim_slot(first: int = 100, last: int = 999) -> int:
    """A sandbox slot that no other process on this machine holds, kept for this process's
    life (a lock on a file under /tmp). Two sandboxes must never share a slot: its user id
    decides which processes a sandbox's process cap counts and which ones it kills."""
    import fcntl

    for slot in range(first, last + 1):
        fd = os.open(slot_lock(slot), os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        _HELD.append(fd)
        return slot
    raise RuntimeError(f"every sandbox slot {first}-{last} is taken on this machine")


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number <= 0:
        raise ValueError(f"{name} must be a whole number > 0, got {value!r}")
    return number


@dataclass(frozen=True)
class Limits:
    """Resource caps of one sandboxed process tree.

    Attributes:
        memory_mb: address space per process (``RLIMIT_AS``). TensorFlow reserves much
            more address space than it uses, hence the generous default.
        cpu_seconds: CPU time per process (``RLIMIT_CPU``).
        processes: processes and threads of the sandbox's user (``RLIMIT_NPROC``);
            TensorFlow starts a few dozen threads.
        file_mb: the largest file the sandbox may write (``RLIMIT_FSIZE``).
    """

    memory_mb: int = 8192
    cpu_seconds: int = 1800
    processes: int = 256
    file_mb: int = 64

    @classmethod
    def from_env(cls) -> "Limits":
        """The defaults, overridden by ``BNCOURSE_SANDBOX_MEMORY_MB``, ``_CPU_SECONDS``,
        ``_PROCESSES`` and ``_FILE_MB``."""
        base = cls()
        return cls(
            memory_mb=_env_int("BNCOURSE_SANDBOX_MEMORY_MB", base.memory_mb),
            cpu_seconds=_env_int("BNCOURSE_SANDBOX_CPU_SECONDS", base.cpu_seconds),
            processes=_env_int("BNCOURSE_SANDBOX_PROCESSES", base.processes),
            file_mb=_env_int("BNCOURSE_SANDBOX_FILE_MB", base.file_mb),
        )

    def prlimit(self) -> list[str]:
        """The ``prlimit`` command prefix that applies these caps (soft = hard)."""
        mb = 1024 * 1024
        return [
            "prlimit",
            f"--as={self.memory_mb * mb}",
            f"--cpu={self.cpu_seconds}",
            f"--nproc={self.processes}",
            f"--fsize={self.file_mb * mb}",
            "--core=0",
            "--",
        ]


def check_available() -> None:
    """Raise :class:`SandboxUnavailable`, saying how to fix it, unless bubblewrap can run."""
    tool = shutil.which(SANDBOX_TOOL)
    if tool is None:
        raise SandboxUnavailable(f"the sandbox tool {SANDBOX_TOOL} was not found: {INSTALL_HINT}")
    for needed in ("prlimit", "setpriv"):
        if shutil.which(needed) is None:
            raise SandboxUnavailable(
                f"{needed} (util-linux) was not found; it is needed to "
                "limit and drop the sandbox's privileges"
            )
    if os.geteuid() != 0:
        raise SandboxUnavailable(
            "grading in the sandbox needs root (the sandbox drops to a user id of its own); "
            "run the grader as root, or pass --no-sandbox for trusted notebooks only"
        )
    probe = subprocess.run(
        [
            tool,
            "--ro-bind",
            "/usr",
            "/usr",
            "--symlink",
            "usr/lib",
            "/lib",
            "--symlink",
            "usr/lib64",
            "/lib64",
            "--unshare-net",
            "--",
            "/usr/bin/true",
        ],
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        raise SandboxUnavailable(
            f"{SANDBOX_TOOL} cannot start a sandbox here: "
            f"{probe.stderr.strip() or probe.returncode}"
        )


def _site_packages() -> Path:
    import sysconfig

    return Path(sysconfig.get_paths()["purelib"])


def _root_links() -> list[str]:
    """Recreate ``/bin``, ``/lib``... as on the host (links into ``/usr`` on merged-usr)."""
    args = []
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        path = Path("/") / name
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            args += ["--ro-bind", str(path), str(path)]
    return args


def _parents(paths) -> list[str]:
    """``--dir`` arguments that create every missing ancestor of ``paths`` with mode 0755."""
    args, seen = [], set()
    for path in paths:
        for parent in reversed(Path(path).parents):
            if str(parent) == "/" or parent in seen:
                continue
            seen.add(parent)
            args += ["--perms", "0755", "--dir", str(parent)]
    return args


def build_view(ps: "ProblemSet", dest: Path) -> Path:
    """Copy the student view of the ``bncourse`` package into ``dest/bncourse``."""
    view = dest / "bncourse"
    files = list(STUDENT_VIEW) + [ALLOWED_FILES[m] for m in ps.allowed if m in ALLOWED_FILES]
    for rel in files:
        src = PACKAGE / rel
        target = view / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, target, ignore=shutil.ignore_patterns("__pycache__"))
        elif src.is_file():
            shutil.copy2(src, target)
    return view


STAGED_DATA = "/var/bncourse-data"
KERAS_DATASETS = "/var/keras/datasets"
_STAGED: dict = {}


def stage_data(ps: "ProblemSet") -> Path | None:
    """The part of the course's data ``ps`` may see (``ps.data``), written once per grader
    process into a folder laid out for ``BNCOURSE_DATA_DIR``; None when it needs none."""
    if not ps.data:
        return None
    from bncourse import data

    if ps.data in _STAGED:  # shared read-only by every sandbox of this process
        return _STAGED[ps.data]
    dest = Path(tempfile.mkdtemp(prefix="bncourse-data-"))
    atexit.register(shutil.rmtree, dest, True)
    for name, n_train, n_test in ps.data:
        (x, y), (x_test, y_test) = data.load_dataset(name, download=False)
        folder = dest / data._SUBDIRS[name]
        folder.mkdir(parents=True, exist_ok=True)
        for stem, array in zip(
            data.IDX_FILES, (x[:n_train], y[:n_train], x_test[:n_test], y_test[:n_test])
        ):
            data.write_idx(folder / f"{stem}.gz", array)
    os.chmod(dest, 0o755)
    _STAGED[ps.data] = dest
    return dest


def _data_binds(staged: Path | None = None) -> tuple[list[str], dict]:
    """Read-only binds and variables that let ``bncourse.data`` find the course's data:
    the staged subset when there is one (and then nothing else), else the data as found."""
    if staged is not None:
        args = ["--ro-bind", str(staged), STAGED_DATA]
        for hidden in ("/usr/share/datasets",):
            if Path(hidden).is_dir():
                args += ["--tmpfs", hidden]
        return args, {"BNCOURSE_DATA_DIR": STAGED_DATA}
    args, env = [], {}
    data_dir = os.environ.get("BNCOURSE_DATA_DIR")
    if data_dir and Path(data_dir).is_dir():
        real = str(Path(data_dir).resolve())
        args += ["--ro-bind", real, real]
        env["BNCOURSE_DATA_DIR"] = real
    keras_home = Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras")
    if (keras_home / "datasets").is_dir():
        real = str((keras_home / "datasets").resolve())
        args += ["--ro-bind", real, KERAS_DATASETS]
        env["KERAS_HOME"] = str(Path(KERAS_DATASETS).parent)
    return args, env


@dataclass
class Sandbox:
    """A scratch directory, a user id and the bubblewrap command for one submission.

    Use as a context manager: the scratch directory (and anything the code left running
    under the sandbox's user id) is removed on exit.

    Attributes:
        ps: the problem set (decides the package view and whether frameworks are hidden).
        slot: which concurrent sandbox this is (0, 1, ...); decides the user id.
        limits: resource caps.
        workdir: a folder whose files are copied into the sandbox as its working directory.
        enabled: False runs the code *without* isolation, as the grader's user, in the
            scratch directory (``--no-sandbox``, for trusted notebooks only).
    """

    ps: "ProblemSet"
    slot: int = 0
    limits: Limits = field(default_factory=Limits.from_env)
    workdir: Path | None = None
    scratch: Path | None = None
    enabled: bool = True
    staged: Path | None = None

    @property
    def uid(self) -> int:
        return UID_BASE + self.slot

    def __enter__(self) -> "Sandbox":
        self.scratch = Path(tempfile.mkdtemp(prefix="bncourse-sandbox-"))
        os.chmod(self.scratch, 0o755)
        self.view_root = self.scratch / "view"
        build_view(self.ps, self.view_root)
        self.staged = stage_data(self.ps)
        self.home = self.scratch / "home"
        self.work = self.home / "work"
        self.out = self.scratch / "out"
        # where the student-side code saves what it produced (student/record.py)
        self.results = self.home / ".bncourse" / "results"
        if self.workdir is not None:
            # links stay links: followed here, as root, they would copy any file of the
            # machine into the sandbox
            shutil.copytree(
                self.workdir, self.work, symlinks=True, ignore=shutil.ignore_patterns(".*")
            )
        self.work.mkdir(parents=True, exist_ok=True)
        self.results.mkdir(parents=True)
        self.out.mkdir()
        for path in (self.home, self.out):
            for root, dirs, files in os.walk(path):
                for name in [root, *(os.path.join(root, n) for n in dirs + files)]:
                    os.chown(name, self.uid, self.uid, follow_symlinks=False)
        return self

    def mkdir(self, path: Path) -> Path:
        """A new directory the sandbox's user may write."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        os.chown(path, self.uid, self.uid)
        return path

    def __exit__(self, *exc) -> None:
        self.kill_all()
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)

    def kill_all(self) -> None:
        """SIGKILL every process that runs as this sandbox's user id (normally none left)."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            found = subprocess.run(["pkill", "-KILL", "-U", str(self.uid)], capture_output=True)
            if found.returncode == 1:  # no process left
                return
            time.sleep(0.05)

    def env(self) -> dict:
        """The sandbox's environment, built from nothing."""
        venv_bin = str(Path(sys.executable).parent)
        env = {
            "PATH": f"{venv_bin}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(self.home),
            "LANG": "C.UTF-8",
            "MPLBACKEND": "Agg",
            "MPLCONFIGDIR": str(self.home / ".matplotlib"),
            "TF_CPP_MIN_LOG_LEVEL": "3",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONNOUSERSITE": "1",
            "JUPYTER_RUNTIME_DIR": str(self.home / ".runtime"),
            "KERAS_BACKEND": os.environ.get("KERAS_BACKEND", "tensorflow"),
        }
        env.update(_data_binds(self.staged)[1])
        return env

    def command(self, argv: list[str], cwd: Path | None = None) -> list[str]:
        """The full command that runs ``argv`` in this sandbox (``cwd``: the scratch copy
        of the work directory by default)."""
        if self.scratch is None:
            raise RuntimeError("enter the Sandbox (with ...) before asking for its command")
        prefix = Path(sys.base_prefix).resolve()
        venv = Path(sys.prefix).resolve()
        args = [
            SANDBOX_TOOL,
            "--unshare-ipc",
            "--unshare-pid",
            "--unshare-net",
            "--unshare-uts",
            "--unshare-cgroup-try",
            "--die-with-parent",
            "--new-session",
            "--clearenv",
            "--hostname",
            "sandbox",
            "--ro-bind",
            "/usr",
            "/usr",
            *_root_links(),
            "--ro-bind",
            "/etc",
            "/etc",
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            "--perms",
            "1777",
            "--tmpfs",
            "/tmp",
        ]
        binds = [prefix]
        if venv != prefix:
            binds.append(venv)
        # bubblewrap makes missing parents of a mount point readable by root only; the
        # sandbox's user must be able to walk down to each mount
        args += _parents(
            [*binds, PACKAGE, self.home, self.out, Path(STAGED_DATA), Path(KERAS_DATASETS)]
        )
        for path in binds:
            args += ["--ro-bind", str(path), str(path)]
        args += ["--ro-bind", str(self.view_root / "bncourse"), str(PACKAGE)]
        if not self.ps.frameworks:
            site = _site_packages()
            for name in FRAMEWORK_PACKAGES:
                if (site / name).is_dir():
                    args += ["--tmpfs", str(site / name)]
        data_args, _ = _data_binds(self.staged)
        args += data_args
        args += [
            "--bind",
            str(self.home),
            str(self.home),
            "--bind",
            str(self.out),
            str(self.out),
            "--chdir",
            str(cwd or self.work),
        ]
        for key, value in self.env().items():
            args += ["--setenv", key, value]
        drop = [
            "setpriv",
            f"--reuid={self.uid}",
            f"--regid={self.uid}",
            "--clear-groups",
            "--no-new-privs",
            "--inh-caps=-all",
            "--bounding-set=-all",
            "--",
        ]
        return [*args, "--", *drop, *self.limits.prlimit(), *argv]

    def popen(self, argv: list[str], **kwargs) -> subprocess.Popen:
        """Start ``argv`` in the sandbox in a session of its own (so it can be killed whole)."""
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        if not self.enabled:
            env = dict(os.environ, **{k: v for k, v in self.env().items() if k != "PATH"})
            if self.staged is not None:
                env["BNCOURSE_DATA_DIR"] = str(self.staged)
            return subprocess.Popen(
                argv,
                start_new_session=True,
                env=env,
                cwd=self.workdir if self.workdir is not None else self.work,
                **kwargs,
            )
        return subprocess.Popen(self.command(argv), start_new_session=True, **kwargs)


class UsageMeter:
    """Peak memory and CPU time of every process of a user id, sampled from ``/proc``.

    Measured from outside, so nothing the sandboxed code does can change the figures
    (short-lived processes between two samples are missed; the sampling period is 0.1 s).
    """

    def __init__(self, uid: int, period: float = 0.1):
        self.uid, self.period = uid, period
        self.peak_mb = 0.0
        self._cpu: dict = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> "UsageMeter":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    @property
    def cpu_seconds(self) -> float:
        return round(sum(self._cpu.values()), 3)

    def _loop(self) -> None:
        while not self._stop.wait(self.period):
            self.sample()

    def sample(self) -> None:
        """Read every process of the user id once."""
        tick = os.sysconf("SC_CLK_TCK")
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                if entry.stat().st_uid != self.uid:
                    continue
                status = Path(entry.path, "status").read_text()
                stat = Path(entry.path, "stat").read_text()
            except OSError:
                continue
            for line in status.splitlines():
                if line.startswith("VmHWM:"):
                    self.peak_mb = max(self.peak_mb, int(line.split()[1]) / 1024)
            fields = stat.rsplit(")", 1)[-1].split()
            try:
                self._cpu[entry.name] = (int(fields[11]) + int(fields[12])) / tick
            except (IndexError, ValueError):
                pass


def kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL a sandbox started by :meth:`Sandbox.popen` and everything in it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def run(
    sandbox: Sandbox, argv: list[str], *, wall_seconds: float, stdout=None, stderr=None
) -> dict:
    """Run ``argv`` in ``sandbox`` to the end or to ``wall_seconds``, then kill it.

    Returns ``{"returncode", "timed_out", "seconds", "cpu_seconds", "max_rss_mb"}``; the
    figures cover the whole process tree of the sandbox, measured from outside.
    """
    started = time.monotonic()
    with UsageMeter(sandbox.uid) as meter:
        proc = sandbox.popen(
            argv, stdout=stdout or subprocess.DEVNULL, stderr=stderr or subprocess.DEVNULL
        )
        timed_out = False
        try:
            proc.wait(timeout=wall_seconds)
        except subprocess.TimeoutExpired:
            timed_out = True
            kill_tree(proc)
            proc.wait()
        meter.sample()
        sandbox.kill_all()
    return {
        "returncode": proc.returncode,
        "timed_out": timed_out,
        "seconds": round(time.monotonic() - started, 3),
        "cpu_seconds": meter.cpu_seconds,
        "max_rss_mb": round(meter.peak_mb, 1),
    }
