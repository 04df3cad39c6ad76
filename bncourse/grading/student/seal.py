"""Sealing a notebook's process: the course's rules, applied where the student works.

:func:`seal` installs a Python audit hook, which cannot be removed, that refuses to import
or open ``bncourse``'s reference modules (and Keras/TensorFlow in the NumPy-only sets) and
refuses to start other processes. It gives a student at home the rules the grader applies,
with a message that says why. It is a courtesy, not a defence: no grade depends on it.
Grades are protected by the operating system's sandbox
(:mod:`bncourse.grading.isolation`), in which those modules are not there at all.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from .problem_sets import ProblemSet

_PROCESS_EVENTS = frozenset(
    {
        "subprocess.Popen",
        "os.system",
        "os.exec",
        "os.posix_spawn",
        "os.spawn",
        "os.fork",
        "os.forkpty",
        "pty.spawn",
    }
)
_SEALED: dict = {}
_RERUN: dict = {"on": False}


class SealedError(ImportError):
    """Raised when a sealed notebook imports a module it may not use."""

    def _render_traceback_(self) -> list[str]:
        """What IPython shows: the message, without the audit hook's frame."""
        return [f"{type(self).__name__}: {self}"]


class SealedPermissionError(PermissionError):
    """Raised when a sealed notebook opens a blocked file or starts a process."""

    _render_traceback_ = SealedError._render_traceback_


def set_rerun() -> None:
    """Mark this process as the verification re-run (its test cells do not run)."""
    _RERUN["on"] = True


def is_rerun() -> bool:
    """True in the verification re-run."""
    return _RERUN["on"]


def _blocked_files(blocked: tuple) -> tuple[frozenset, frozenset]:
    """Directories and file-name stems of the blocked ``bncourse`` modules."""
    package = Path(__file__).resolve().parents[2]
    stems = {name.split(".")[-1] for name in blocked if name.startswith("bncourse.")}
    dirs = {
        str(package),
        str(package / "__pycache__"),
        str(package / "grading"),
        str(package / "grading" / "__pycache__"),
    }
    return frozenset(dirs), frozenset(stems)


def _make_hook(ps: ProblemSet):
    blocked = ps.blocked_modules
    dirs, stems = _blocked_files(blocked)
    realpath, dirname, basename = os.path.realpath, os.path.dirname, os.path.basename
    fspath = os.fspath
    message = (
        f"{{}} is not available in {ps.name}: your code is graded with bncourse's reference "
        "implementations{} disabled, so that it is your own work that is tested"
    ).format
    extra = "" if ps.frameworks else " and Keras/TensorFlow (this problem set is NumPy only)"

    def hook(event, args):
        if event == "import":
            name = args[0]
            if isinstance(name, str):
                for b in blocked:
                    if name == b or name.startswith(b + "."):
                        raise SealedError(message(name, extra))
        elif event == "open":
            path = args[0]
            if isinstance(path, (str, bytes, os.PathLike)):
                try:
                    p = realpath(fspath(path))
                except (TypeError, ValueError):
                    return
                if isinstance(p, bytes):
                    p = p.decode(errors="replace")
                if dirname(p) in dirs and basename(p).split(".")[0] in stems:
                    raise SealedPermissionError(message(p, extra))
        elif event in _PROCESS_EVENTS:
            raise SealedPermissionError(
                f"starting another process is disabled in {ps.name} while it is graded"
            )

    return hook


def _hide(blocked: tuple) -> None:
    """Remove already-imported blocked modules from ``sys.modules`` and their packages."""
    for name in list(sys.modules):
        if any(name == b or name.startswith(b + ".") for b in blocked):
            module = sys.modules.pop(name)
            parent, _, child = name.rpartition(".")
            if parent in sys.modules and getattr(sys.modules[parent], child, None) is module:
                delattr(sys.modules[parent], child)


def seal(ps: ProblemSet) -> None:
    """Seal this process for problem set ``ps`` (idempotent; cannot be undone)."""
    if ps.name in _SEALED:
        return
    if _SEALED:
        raise RuntimeError(
            f"this process is already sealed for {next(iter(_SEALED))}; restart the kernel"
        )
    import importlib

    for name in ps.preload:
        importlib.import_module(name)
    _hide(ps.blocked_modules)
    sys.addaudithook(_make_hook(ps))
    _SEALED[ps.name] = True
