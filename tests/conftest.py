"""Shared fixtures. TensorFlow's start-up chatter is silenced before anything imports it."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

BIN = Path(sys.executable).parent


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
            page = (
                "---\njupytext:\n  text_representation:\n    extension: .md\n"
                "    format_name: myst\nkernelspec:\n  display_name: Python 3\n"
                "  language: python\n  name: python3\n---\n\n"
                f"# A page\n\n```{{code-cell}} python\n{code}\n```\n"
            )
        (tmp_path / "page.md").write_text(page)
        return tmp_path

    return make


# --------------------------------------------------------------------------- servers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, what: str, seconds: float = 60):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within {seconds} s")


@pytest.fixture(scope="module")
def scheduler():
    """A dask.distributed scheduler and two single-threaded worker processes on loopback."""
    port = free_port()
    procs = [
        subprocess.Popen(
            [
                str(BIN / "dask"),
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--no-dashboard",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    ]
    try:
        wait_for_port(port, procs[0], "the dask scheduler")
        address = f"tcp://127.0.0.1:{port}"
        procs.append(
            subprocess.Popen(
                [
                    str(BIN / "dask"),
                    "worker",
                    address,
                    "--nworkers",
                    "2",
                    "--nthreads",
                    "1",
                    "--host",
                    "127.0.0.1",
                    "--no-dashboard",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        from distributed import Client

        with Client(address, timeout=30) as client:
            client.wait_for_workers(2, timeout=120)
        yield address
    finally:
        for proc in reversed(procs):
            proc.terminate()
            proc.wait(timeout=60)


@pytest.fixture
def places(tmp_path, monkeypatch):
    """(tests/test_data*.py) No data anywhere: an empty Debian dir, an empty Keras home, no BNCOURSE_DATA_DIR."""
    from bncourse import data

    debian = tmp_path / "debian" / "fashion-mnist"
    keras_home = tmp_path / "keras-home"
    monkeypatch.setattr(data, "DEBIAN_DIRS", {"fashion_mnist": debian})
    monkeypatch.setenv("KERAS_HOME", str(keras_home))
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)
    monkeypatch.setenv(data.CACHE_DIR_ENV, str(tmp_path / "course-cache"))
    return {
        "debian": debian,
        "keras": keras_home / "datasets",
        "root": tmp_path,
        "cache": tmp_path / "course-cache",
    }
