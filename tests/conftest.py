"""Shared fixtures. TensorFlow's start-up chatter is silenced before anything imports it."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture
def rng():
    """A seeded generator: every test that draws numbers is repeatable."""
    return np.random.default_rng(20260)


def pytest_report_header(config):
    """Say which Keras backend this run uses: `make test` runs the Keras tests under two."""
    backend = os.environ.get("KERAS_BACKEND", "tensorflow (default)")
    return f"KERAS_BACKEND: {backend}"


@pytest.fixture
def tiny_book(tmp_path):
    """Writes a one-page Jupyter Book into tmp_path and returns its folder. ``code``: the page
    is a notebook that runs it (cached); ``extension``: the course's ``bncourse.sphinx_ext``
    is loaded."""

    def make(code=None, extension=False):
        config = "title: t\nexecute:\n  execute_notebooks: cache\n"
        if extension:
            config += "sphinx:\n  extra_extensions:\n    - bncourse.sphinx_ext\n"
        (tmp_path / "_config.yml").write_text(config)
        (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: page\n")
        page = "# A page\n\nText.\n"
        if code is not None:
            page = ("---\njupytext:\n  text_representation:\n    extension: .md\n"
                    "    format_name: myst\nkernelspec:\n  display_name: Python 3\n"
                    "  language: python\n  name: python3\n---\n\n"
                    f"# A page\n\n```{{code-cell}} python\n{code}\n```\n")
        (tmp_path / "page.md").write_text(page)
        return tmp_path

    return make
