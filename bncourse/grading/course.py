"""A course root to run nbgrader in: copy the committed sources, run commands, submit.

Used by the grading benchmark (:mod:`bncourse.grading.bench`) and the tests. nbgrader reads
its configuration from the current directory and runs ``alembic`` by name, so commands run
in the course root with this Python's ``bin`` first on ``PATH``.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[2]
ASSIGNMENTS = ROOT / "assignments"
BIN = Path(sys.executable).parent
_SOLUTION = re.compile(r"^[ \t]*### (BEGIN|END) SOLUTION[ \t]*\n", re.M)


class Course:
    """An nbgrader course root in ``path`` with the committed config and sources.

    ``cell_timeout`` (seconds) overrides the problem sets' own limits, through
    ``$BNCOURSE_CELL_TIMEOUT``.
    """

    def __init__(self, path: Path, cell_timeout: float | None = None):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        shutil.copy(ASSIGNMENTS / "nbgrader_config.py", self.path)
        shutil.copytree(ASSIGNMENTS / "source", self.path / "source", dirs_exist_ok=True)
        self.env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
        if cell_timeout is not None:
            self.env["BNCOURSE_CELL_TIMEOUT"] = str(cell_timeout)

    def nbgrader(self, *args, check=True, cwd=None) -> subprocess.CompletedProcess:
        """Run ``nbgrader ARGS`` in the course root (the venv's bin first on PATH)."""
        proc = subprocess.run(
            [str(BIN / "nbgrader"), *args],
            cwd=cwd or self.path,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=1800,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"nbgrader {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-4000:]}"
            )
        return proc

    def generate(self, assignment: str) -> None:
        """``nbgrader generate_assignment``: the student version in ``release/``."""
        self.nbgrader("generate_assignment", assignment, "--force")

    def source(self, assignment: str):
        """The instructor's notebook of ``assignment``."""
        return nbformat.read(self.path / "source" / assignment / f"{assignment}.ipynb", 4)

    def release(self, assignment: str):
        """The student version of ``assignment`` (after :meth:`generate`)."""
        return nbformat.read(self.path / "release" / assignment / f"{assignment}.ipynb", 4)

    def submit(self, student: str, assignment: str, notebook) -> Path:
        """Place ``notebook`` (a notebook node, or raw bytes) as a student's submission."""
        folder = self.path / "submitted" / student / assignment
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{assignment}.ipynb"
        if isinstance(notebook, bytes):
            path.write_bytes(notebook)
        else:
            nbformat.write(notebook, path)
        return path

    def scores(self, assignment: str) -> dict:
        """``{student: {grade cell id: score}}`` read from the gradebook."""
        from nbgrader.api import Gradebook, MissingEntry

        out = {}
        with Gradebook(f"sqlite:///{self.path / 'gradebook.db'}") as gb:
            for student in gb.students:
                try:
                    submission = gb.find_submission(assignment, student.id)
                except MissingEntry:
                    continue
                out[student.id] = {
                    g.name: g.score for nb in submission.notebooks for g in nb.grades
                }
        return out

    def max_points(self, assignment: str) -> dict:
        """``{grade cell id: points}`` of the automatically graded cells."""
        return graded_points(self.source(assignment))[0]


def graded_points(nb) -> tuple[dict, dict]:
    """``({grade id: points}, {grade id: points})``: a notebook's automatically graded test
    cells and its answers graded by hand, from nbgrader's cell metadata."""
    automatic, manual = {}, {}
    for cell in nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if meta.get("grade"):
            (manual if meta.get("solution") else automatic)[meta["grade_id"]] = float(
                meta["points"]
            )
    return automatic, manual


def outline(name: str, source=None) -> dict:
    """What a problem set's source notebook says about itself, for the book's pages.

    Returns ``{"title", "steps" (the numbered list of its introduction), "automatic",
    "manual" (points), "parts" (automatically graded test cells)}``.
    """
    source = Path(source) if source is not None else ASSIGNMENTS / "source"
    path = source / name / f"{name}.ipynb"
    if not path.is_file():
        raise FileNotFoundError(f"no source notebook for problem set {name!r}: {path}")
    nb = nbformat.read(path, as_version=4)
    intro = next(
        (
            c.source
            for c in nb.cells
            if c.cell_type == "markdown" and c.source.lstrip().startswith("# ")
        ),
        None,
    )
    if intro is None:
        raise ValueError(f"{path} has no markdown cell that opens with a '# ' title")
    title = intro.lstrip().splitlines()[0][2:].strip()
    steps, current = [], None
    for line in intro.splitlines():
        numbered = re.match(r"^\d+\.\s+(.*)", line)
        if numbered:
            current = numbered.group(1).strip()
            steps.append(current)
        elif current is not None and line.startswith("   ") and line.strip():
            steps[-1] = f"{steps[-1]} {line.strip()}"
        else:
            current = None
    automatic, manual = graded_points(nb)
    return {
        "title": title,
        "steps": steps,
        "automatic": sum(automatic.values()),
        "manual": sum(manual.values()),
        "parts": len(automatic),
    }


def grade_id(cell) -> str | None:
    """A cell's nbgrader id, or None."""
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def index_of(nb, gid: str) -> int:
    """The position of cell ``gid`` in ``nb``."""
    for i, cell in enumerate(nb.cells):
        if grade_id(cell) == gid:
            return i
    raise KeyError(f"no cell {gid!r} in the notebook")


def solved(release, source):
    """The release notebook with every solution cell filled in from the source."""
    nb = copy.deepcopy(release)
    answers = {grade_id(c): c.source for c in source.cells if grade_id(c)}
    for cell in nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if meta.get("solution") and cell.cell_type == "code":
            cell.source = _SOLUTION.sub("", answers[meta["grade_id"]])
    return nb
