"""bncourse.pdf: printing a page to PDF in headless Chromium, and its refusals.

The whole book's PDF is tested in tests/test_book.py (after the session's book build);
here a one-page site with the book's local MathJax is printed, which takes seconds.
"""

from __future__ import annotations

import shutil

import pytest

from bncourse import mathjax, pdf

PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>A tiny book</title>
<script defer src="mathjax/tex-mml-chtml.js"></script></head>
<body><main>
<h1>Chapter one</h1>
<p>An equation: $$\\hat{{x}} = \\frac{{x - \\mu}}{{\\sqrt{{\\sigma^2 + \\epsilon}}}}{extra}$$</p>
<details><summary>Solution</summary><p>The hidden answer is forty-two.</p></details>
</main></body></html>
"""


def _site(tmp_path, extra=""):
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text(PAGE.format(extra=extra))
    assert mathjax.installed(), "no local MathJax: run make setup"
    shutil.copytree(mathjax.default_dir(), site / "mathjax")
    return site


@pytest.mark.browser
def test_a_page_is_printed_with_its_equations_typeset_and_its_dropdowns_open(tmp_path):
    from pypdf import PdfReader

    out = tmp_path / "out" / "book.pdf"
    info = pdf.print_book(_site(tmp_path), out)
    assert info["equations"] == 1
    reader = PdfReader(out)
    assert len(reader.pages) == 1
    text = reader.pages[0].extract_text()
    assert "Chapter one" in text
    assert "forty-two" in text  # the closed <details> was opened before printing
    assert "$$" not in text and "\\frac" not in text and "\\sqrt" not in text
    # A bookmark for the heading; the header holds the page's title, the footer "1 / 1".
    assert [item.title for item in reader.outline] == ["Chapter one"]
    assert "A tiny book" in text and "1 / 1" in text
    assert not list(out.parent.glob("*.part"))


@pytest.mark.browser
@pytest.mark.parametrize(
    "extra, error",
    [
        (r" \frac{{a}}", r"1 equation\(s\) with TeX errors \['Missing argument for \\\\frac'\]"),
        # an unclosed brace: MathJax finds no equation and leaves the TeX as it is
        ("^{{", r"TeX left untypeset in \[.*frac"),
    ],
)
def test_a_page_with_an_equation_that_did_not_typeset_is_not_printed(tmp_path, extra, error):
    out = tmp_path / "book.pdf"
    with pytest.raises(RuntimeError, match=error):
        pdf.print_book(_site(tmp_path, extra=extra), out)
    assert not out.exists()


def test_bad_arguments_are_refused_before_a_browser_starts(tmp_path, monkeypatch):
    monkeypatch.setattr(pdf, "headless_chromium", lambda **k: pytest.fail("started a browser"))
    with pytest.raises(FileNotFoundError, match="html_dir: no index.html in"):
        pdf.print_book(tmp_path, tmp_path / "book.pdf")
    (tmp_path / "index.html").write_text("<p>x</p>")
    with pytest.raises(ValueError, match=r"out must be a path ending in \.pdf, got '.*book\.ps'"):
        pdf.print_book(tmp_path, tmp_path / "book.ps")
    with pytest.raises(FileNotFoundError, match="directory: .* is not a folder"):
        with pdf.serve(tmp_path / "missing"):
            pass


def test_missing_chromium_is_named_with_how_to_install_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))  # no chromium, no chromedriver
    with pytest.raises(pdf.ChromiumNotFoundError, match="chromium and chromedriver not found"):
        pdf.chromium_paths()
    with pytest.raises(pdf.ChromiumNotFoundError, match="apt-get install chromium"):
        pdf.headless_chromium()
    # `make pdf` says so before building anything.
    monkeypatch.setattr(pdf, "build_singlehtml", lambda *a, **k: pytest.fail("built the book"))
    assert pdf.main(["--root", str(tmp_path)]) == 1
    assert "chromium and chromedriver not found" in capsys.readouterr().err
