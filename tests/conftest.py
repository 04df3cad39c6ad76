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
