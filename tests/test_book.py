"""The book builds as `make book` builds it: executed, with Sphinx warnings as errors."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.book
def test_book_builds_without_warnings(tmp_path):
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    assert jupyter_book.exists(), "jupyter-book is installed with bncourse"
    result = subprocess.run(
        [str(jupyter_book), "build", str(ROOT), "--path-output", str(tmp_path),
         "-W", "--keep-going"],
        capture_output=True, text=True, timeout=1800,
    )
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-5000:]
    assert ": WARNING:" not in log, log[-5000:]  # Sphinx's form; -W also fails the build
    assert "build succeeded" in log
    html = tmp_path / "_build" / "html"
    intro = (html / "book" / "intro.html").read_text()
    # Executed: the printed output of the page's code and the glued defaults are there.
    assert "moving mean:" in intro
    assert "0.99" in intro and "0.001" in intro
    assert (html / "index.html").exists()
    # The instructors' chapter lists every problem set, read from the source notebooks.
    instructors = (html / "book" / "instructors.html").read_text()
    for name in ("ps1-forward", "ps2-backward", "ps3-keras-layer", "ps4-experiment"):
        assert name in instructors
    assert "NumPy only" in instructors
    shutil.rmtree(tmp_path / "_build" / ".jupyter_cache", ignore_errors=True)
