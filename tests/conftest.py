"""Shared fixtures. TensorFlow's start-up chatter is silenced before anything imports it."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture
def rng():
    """A seeded generator: every test that draws numbers is repeatable."""
    return np.random.default_rng(20260)
