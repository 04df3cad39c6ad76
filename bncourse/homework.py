"""The problem sets' student versions, copied into a folder of the student's own.

``make homework [DEST=folder]`` runs ``python -m bncourse.homework [folder]`` (by default
``~/bncourse-homework``). It generates every problem set's student version with nbgrader, in
a temporary copy of the course (solutions replaced by ``raise NotImplementedError()``, hidden
tests and model answers removed, the header cell added), and copies only those released files
into ``<folder>/<problem set>/``. The instructor's notebooks, which hold the solutions, stay
in ``assignments/source/``.

It never overwrites a student's work: when a file in the folder differs from the new student
version, nothing is copied and the error names every such file. Files that are already the
same are left as they are, so it can be run again at any time: it adds what is missing, or,
when a file differs, changes nothing.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

__all__ = ["DEFAULT_DEST", "ExistingWorkError", "generate", "install", "problem_sets"]

# The committed course (nbgrader_config.py and source/), in the repository's working tree:
# next to the package when it is installed editable, else in the current directory.
COURSE = Path(__file__).resolve().parents[1] / "assignments"
if not COURSE.is_dir():
    COURSE = Path("assignments")
DEFAULT_DEST = "~/bncourse-homework"


class ExistingWorkError(FileExistsError):
    """Files in the destination differ from the student versions that would replace them."""

    def __init__(self, paths: list[Path]):
        self.paths = paths
        listed = "\n".join(f"  {p}" for p in paths)
        super().__init__(
            "these files are already there and differ from the student versions that would "
            "replace them (your work, or an older version of a problem set), so nothing was "
            f"copied:\n{listed}\nMove them away, or choose another folder "
            "(make homework DEST=...), and run this again."
        )


def problem_sets(course: Path) -> list[str]:
    """The problem sets of a course root: each ``source/<name>/<name>.ipynb``, sorted."""
    source = Path(course) / "source"
    return sorted(
        p.name for p in source.iterdir() if p.is_dir() and (p / f"{p.name}.ipynb").is_file()
    )


def generate(course: Path, workdir: Path, names: list[str]) -> Path:
    """Generate the student versions of ``names`` in a copy of ``course`` made in
    ``workdir``; returns the copy's ``release/`` folder.

    nbgrader reads its configuration from the current directory and runs ``alembic`` by
    name, so it runs in the copy with this Python's ``bin`` first on ``PATH``.
    """
    course, workdir = Path(course), Path(workdir)
    shutil.copy(course / "nbgrader_config.py", workdir)
    shutil.copytree(course / "source", workdir / "source")
    bin_dir = Path(sys.executable).parent
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    for name in names:
        proc = subprocess.run(
            [sys.executable, "-m", "nbgrader", "generate_assignment", name],
            cwd=workdir,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(
                f"nbgrader generate_assignment {name} exited "
                f"{proc.returncode}:\n{proc.stderr[-3000:]}"
            )
    return workdir / "release"


def install(release: Path, dest: Path) -> list[Path]:
    """Copy every file under ``release`` to the same place under ``dest``; returns the files
    copied (those already there with the same content are left alone).

    Raises :class:`ExistingWorkError`, before copying anything, when a file already in
    ``dest`` differs from the one that would replace it.
    """
    release, dest = Path(release), Path(dest)
    if dest.exists() and not dest.is_dir():
        raise NotADirectoryError(f"{dest} exists and is not a folder")
    to_copy, differ = [], []
    for src in sorted(p for p in release.rglob("*") if p.is_file()):
        target = dest / src.relative_to(release)
        if not target.exists():
            to_copy.append((src, target))
        elif not target.is_file() or target.read_bytes() != src.read_bytes():
            differ.append(target)
    if differ:
        raise ExistingWorkError(differ)
    for src, target in to_copy:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)
    return [target for _, target in to_copy]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bncourse.homework",
        description="Copy the problem sets' student versions (no solutions, no hidden tests) "
        "into a folder to work in; existing work is never overwritten.",
    )
    parser.add_argument(
        "dest",
        nargs="?",
        default=DEFAULT_DEST,
        help=f"the folder to copy them into (default: {DEFAULT_DEST})",
    )
    parser.add_argument(
        "--course",
        type=Path,
        default=COURSE,
        help=f"the course root with nbgrader_config.py and source/ (default: {COURSE})",
    )
    args = parser.parse_args(argv)
    if not (args.course / "nbgrader_config.py").is_file() or not (args.course / "source").is_dir():
        parser.error(
            f"{args.course} holds no course (nbgrader_config.py and source/): run "
            "this at the root of a clone of the course's repository, or pass --course "
            "with the clone's assignments/ folder"
        )
    if not args.dest.strip():
        parser.error("the folder to copy into is empty (make homework DEST=folder)")
    dest = Path(args.dest).expanduser().resolve()
    names = problem_sets(args.course)
    with tempfile.TemporaryDirectory(prefix="bncourse-homework-") as workdir:
        try:
            release = generate(args.course, Path(workdir), names)
            copied = install(release, dest)
        except (ExistingWorkError, NotADirectoryError, RuntimeError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
    for path in copied:
        print(f"copied {path}")
    if not copied:
        print(f"nothing to copy: {dest} already has every student version")
    jupyter = Path(sys.executable).parent / "jupyter"
    print(f"open them with: {shlex.quote(str(jupyter))} lab {shlex.quote(str(dest))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
