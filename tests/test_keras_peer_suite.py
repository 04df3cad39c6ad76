"""Keras's own tests of ``keras.layers.BatchNormalization``, run on bncourse's BatchNorm.

Keras ships the test file of its layer in its wheel,
``keras/src/layers/normalization/batch_normalization_test.py``. This file imports that
module from the installed Keras (nothing of it is copied here), points the name
``layers.BatchNormalization`` in the module's namespace at
:class:`bncourse.keras_bn.BatchNorm`, and runs each test of its ``BatchNormalizationTest``
class with :mod:`unittest`: Keras's test base class, ``keras.src.testing.TestCase``, is a
``unittest.TestCase``. Running Keras's suite means importing ``keras.src``, and this file is
the only place that does; the package itself never imports it.

Each Keras test is seeded here (``keras.utils.set_random_seed``), since Keras's file draws
from NumPy's global generator without a seed, and each must build our layer and never
Keras's, so that a replacement that missed a call site cannot pass on Keras's layer.

Left out, chosen by name, are the cases of what the course's layer deliberately does not do:

* ``test_renorm_basics``, ``test_renorm_correctness``, ``test_renorm_inference``,
  ``test_renorm_invalid_clipping_keys``, ``test_renorm_stddev_initializer``: batch
  renormalisation (``renorm=True``, ``renorm_clipping``, ``renorm_momentum``);
* ``test_serialization``: the configuration round trip of a layer built with
  ``renorm=True``;
* any case whose parameters say ``synchronized=True`` (statistics across devices). The
  installed file means to add one under TensorFlow but compares the function
  ``backend.backend`` with a string, so it generates only ``synchronized=False``, Keras's
  default, which our layer accepts and which is run.

A second test checks that each case left out fails on our layer for that reason alone: the
refused argument. With Keras 3.15, 27 of the file's 33 tests run and 6 are left out.
"""

import functools
import importlib
import unittest

import pytest

import keras

from bncourse.keras_bn import BatchNorm

pytestmark = pytest.mark.keras_backend

PEER = importlib.import_module("keras.src.layers.normalization.batch_normalization_test")
CASES = unittest.defaultTestLoader.getTestCaseNames(PEER.BatchNormalizationTest)


def _left_out(name: str) -> bool:
    """Whether Keras's test ``name`` tests renormalisation or synchronised statistics."""
    described = str(PEER.BatchNormalizationTest(name))  # "name (params) (module.Class)"
    return (
        name.startswith("test_renorm")
        or name == "test_serialization"
        or "synchronized=True" in described
    )


KEPT = [name for name in CASES if not _left_out(name)]
LEFT_OUT = [name for name in CASES if _left_out(name)]


class _LayersWithOurBatchNorm:
    """The ``layers`` module as Keras's test file sees it: BatchNorm in place of
    BatchNormalization, every other name as it is."""

    BatchNormalization = BatchNorm

    def __init__(self, layers):
        self._layers = layers

    def __getattr__(self, name):
        return getattr(self._layers, name)


def _counting_builds(monkeypatch, cls) -> list:
    """Patch ``cls.build`` to record the input shape of each build; returns the record.

    ``build`` rather than ``__init__``: Keras reads the constructor's argument list when a
    layer is made, and a wrapper around ``__init__`` would change it.
    """
    built = []
    original = cls.build

    @functools.wraps(original)
    def build(self, input_shape):
        built.append(input_shape)
        return original(self, input_shape)

    monkeypatch.setattr(cls, "build", build)
    return built


@pytest.fixture
def run_on_our_layer(monkeypatch):
    """Runs one of Keras's tests with our layer; returns its unittest result and how many
    of our layers and of Keras's it built."""
    monkeypatch.setattr(PEER, "layers", _LayersWithOurBatchNorm(PEER.layers))
    ours = _counting_builds(monkeypatch, BatchNorm)
    theirs = _counting_builds(monkeypatch, keras.layers.BatchNormalization)
    filtering = keras.config.is_traceback_filtering_enabled()

    def run(name):
        keras.utils.set_random_seed(1337)
        result = unittest.TestResult()
        PEER.BatchNormalizationTest(name).run(result)
        return result, len(ours), len(theirs)

    yield run
    if filtering:  # Keras's TestCase.setUp turns it off for the whole process
        keras.config.enable_traceback_filtering()


@pytest.mark.parametrize("name", KEPT)
def test_keras_test_passes_on_our_layer(run_on_our_layer, name):
    result, ours, theirs = run_on_our_layer(name)
    problems = [text for _, text in result.errors + result.failures]
    assert not problems, "\n".join(problems)
    assert result.testsRun == 1 and not result.skipped and not result.unexpectedSuccesses
    assert ours >= 1 and theirs == 0, f"built {ours} BatchNorm, {theirs} BatchNormalization"


@pytest.mark.parametrize("name", LEFT_OUT)
def test_a_left_out_test_fails_only_on_the_refused_argument(run_on_our_layer, name):
    result, _, _ = run_on_our_layer(name)
    problems = [text for _, text in result.errors + result.failures]
    assert len(problems) == 1, "left out, yet it passes on our layer: run it"
    refused = ("renorm=True is not supported", "synchronized=True is not supported")
    assert any(reason in problems[0] for reason in refused), problems[0]


def test_the_selection_keeps_the_core_of_keras_tests():
    """Basics, correctness on 3-D and 4-D input, trainable=False and masking are run."""
    assert {
        "test_bn_basics",
        "test_trainable_behavior",
        "test_masked_broadcast_normalization",
    } <= set(KEPT)
    assert sum(name.startswith("test_correctness") for name in KEPT) >= 8
    assert "test_input_fully_masked0" in KEPT  # synchronized=False, Keras's default
