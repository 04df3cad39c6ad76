"""`make homework`: the student versions, and only those, copied into a student's folder.

The quick tests check the copying rules on small files; the slow one runs the Makefile
target into a temporary folder and reads the notebooks it wrote.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from bncourse import homework
from bncourse.grading.student.problem_sets import PROBLEM_SETS

ROOT = Path(__file__).resolve().parents[1]


def _release(path: Path, files: dict) -> Path:
    for name, text in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    return path


def test_install_copies_then_leaves_identical_files_alone(tmp_path):
    release = _release(tmp_path / "release", {"ps1/ps1.ipynb": "one", "ps2/ps2.ipynb": "two"})
    dest = tmp_path / "home" / "work"
    copied = homework.install(release, dest)
    assert copied == [dest / "ps1" / "ps1.ipynb", dest / "ps2" / "ps2.ipynb"]
    assert (dest / "ps2" / "ps2.ipynb").read_text() == "two"
    assert homework.install(release, dest) == []


def test_install_refuses_to_overwrite_work_and_copies_nothing(tmp_path):
    release = _release(tmp_path / "release", {"ps1/ps1.ipynb": "one"})
    dest = tmp_path / "work"
    homework.install(release, dest)
    (dest / "ps1" / "ps1.ipynb").write_text("one, with my answers")
    _release(release, {"ps2/ps2.ipynb": "two"})
    with pytest.raises(homework.ExistingWorkError) as err:
        homework.install(release, dest)
    assert err.value.paths == [dest / "ps1" / "ps1.ipynb"]
    assert str(dest / "ps1" / "ps1.ipynb") in str(err.value)
    assert "nothing was copied" in str(err.value)
    assert (dest / "ps1" / "ps1.ipynb").read_text() == "one, with my answers"
    assert not (dest / "ps2").exists()


def test_install_refuses_a_destination_that_is_a_file(tmp_path):
    release = _release(tmp_path / "release", {"ps1/ps1.ipynb": "one"})
    (tmp_path / "work").write_text("not a folder")
    with pytest.raises(NotADirectoryError, match="work exists and is not a folder"):
        homework.install(release, tmp_path / "work")


def test_the_course_has_every_registered_problem_set():
    assert homework.problem_sets(homework.COURSE) == sorted(PROBLEM_SETS)


def test_without_a_course_it_says_where_to_run_it(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        homework.main([str(tmp_path / "work"), "--course", str(tmp_path)])
    assert exit_.value.code == 2
    assert "holds no course" in capsys.readouterr().err
    assert not (tmp_path / "work").exists()


def test_an_empty_destination_is_refused(capsys):
    with pytest.raises(SystemExit) as exit_:
        homework.main([""])
    assert exit_.value.code == 2
    assert "empty" in capsys.readouterr().err


def _lines(text: str) -> set[str]:
    """The lines of ``text`` that say something (not only brackets or blanks), stripped."""
    return {line.strip() for line in text.splitlines() if re.search(r"\w", line)}


def _hidden_lines(source: str) -> set[str]:
    """The lines between the solution and hidden-test markers of a source cell."""
    blocks = re.findall(r"### BEGIN (?:SOLUTION|HIDDEN TESTS)\n(.*?)### END", source, re.DOTALL)
    return set().union(*map(_lines, blocks))


def _make_homework(dest: Path) -> subprocess.CompletedProcess:
    # The virtual environment of this Python, taken as set up: the test is about the target's
    # own work, not the installation `make test` has just done.
    venv = Path(sys.prefix)
    return subprocess.run(
        [
            "make",
            "--no-print-directory",
            "homework",
            f"DEST={dest}",
            f"VENV={venv}",
            "-o",
            str(venv / ".bncourse-installed"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@pytest.mark.slow
def test_make_homework_copies_student_versions_and_keeps_work(tmp_path):
    dest = tmp_path / "my homework"
    proc = _make_homework(dest)
    assert proc.returncode == 0, proc.stderr
    names = sorted(PROBLEM_SETS)
    files = sorted(p.relative_to(dest) for p in dest.rglob("*") if p.is_file())
    assert files == [Path(n) / f"{n}.ipynb" for n in names]

    header = nbformat.read(ROOT / "assignments" / "source" / "header.ipynb", 4)
    for name in names:
        source = nbformat.read(ROOT / "assignments" / "source" / name / f"{name}.ipynb", 4)
        student = nbformat.read(dest / name / f"{name}.ipynb", 4)
        assert student.cells[0].source == header.cells[0].source
        text = "\n".join(c.source for c in student.cells)
        for marker in ("### BEGIN SOLUTION", "### END SOLUTION", "### BEGIN HIDDEN TESTS"):
            assert marker not in text, (name, marker)
        released = {c.metadata.get("nbgrader", {}).get("grade_id"): c.source for c in student.cells}
        checked = 0
        for cell in source.cells:
            meta = cell.metadata.get("nbgrader", {})
            gid = meta.get("grade_id")
            if meta.get("solution"):  # code to write, or a written answer (model answer here)
                assert released[gid] != cell.source, (name, gid)
            hidden = _hidden_lines(cell.source)
            if hidden:
                assert not hidden & _lines(released[gid]), (name, gid, hidden)
                checked += len(hidden)
        assert checked > 0, name

    # the student works on ps1 and has deleted ps2: a second run keeps the first and,
    # refusing, copies nothing at all
    mine = dest / "ps1-forward" / "ps1-forward.ipynb"
    work = nbformat.read(mine, 4)
    work.cells[-1].source = "My answer: epsilon keeps the division finite."
    nbformat.write(work, mine)
    edited = mine.read_bytes()
    (dest / "ps2-backward" / "ps2-backward.ipynb").unlink()
    proc = _make_homework(dest)
    assert proc.returncode != 0
    assert str(mine) in proc.stderr
    assert "nothing was copied" in proc.stderr
    assert mine.read_bytes() == edited
    assert not (dest / "ps2-backward" / "ps2-backward.ipynb").exists()
