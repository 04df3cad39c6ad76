"""A throw-away nbgrader course for tests: copy the sources, run nbgrader, build submissions."""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
ASSIGNMENTS = ROOT / "assignments"
BIN = Path(sys.executable).parent
_SOLUTION = re.compile(r"^[ \t]*### (BEGIN|END) SOLUTION[ \t]*\n", re.M)


class Course:
    """An nbgrader course root in ``path`` with the committed config and sources."""

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
            [str(BIN / "nbgrader"), *args], cwd=cwd or self.path, env=self.env,
            capture_output=True, text=True, timeout=1800,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"nbgrader {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-4000:]}"
            )
        return proc

    def generate(self, assignment: str) -> None:
        self.nbgrader("generate_assignment", assignment, "--force")

    def source(self, assignment: str):
        return nbformat.read(self.path / "source" / assignment / f"{assignment}.ipynb", 4)

    def release(self, assignment: str):
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
        return {
            c.metadata["nbgrader"]["grade_id"]: float(c.metadata["nbgrader"]["points"])
            for c in self.source(assignment).cells
            if c.metadata.get("nbgrader", {}).get("grade")
            and not c.metadata["nbgrader"].get("solution")
        }


def grade_id(cell) -> str | None:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def index_of(nb, gid: str) -> int:
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


def replace_cell(nb, gid: str, source: str):
    """A copy of ``nb`` with cell ``gid``'s source replaced."""
    nb = copy.deepcopy(nb)
    nb.cells[index_of(nb, gid)].source = source
    return nb


def insert_after(nb, gid: str, source: str):
    """A copy of ``nb`` with a new (student) code cell after cell ``gid``."""
    nb = copy.deepcopy(nb)
    cell = nbformat.v4.new_code_cell(source)
    cell.pop("id", None)
    nb.cells.insert(index_of(nb, gid) + 1, cell)
    return nb


def delete_cell(nb, gid: str):
    nb = copy.deepcopy(nb)
    del nb.cells[index_of(nb, gid)]
    return nb


def with_kernel(nb, name: str):
    nb = copy.deepcopy(nb)
    nb.metadata["kernelspec"] = {"name": name, "display_name": name, "language": "python"}
    return nb


def truncated(nb) -> bytes:
    text = nbformat.writes(nb).encode()
    return text[: len(text) // 2]


def validate(path: Path) -> dict:
    """nbgrader's validation of a notebook (the tests it contains): ``{"passed": bool,
    "failed": [grade ids]}``; read from the Validator, not from an exit code."""
    from nbgrader.validator import Validator

    nb = nbformat.read(path, 4)
    ids = {c.source.strip(): grade_id(c) for c in nb.cells if grade_id(c)}
    result = Validator().validate(str(path))
    failed = sorted(ids.get(c["source"], c["source"][:60]) for c in result.get("failed", []))
    problems = {k: v for k, v in result.items() if k != "failed"}
    return {"passed": not result, "failed": failed, "other": problems}
