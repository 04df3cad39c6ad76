"""bncourse.grading.compare on its own: each comparison's verdict at its boundaries and the
exact message a student reads. Written to kill the mutants that `make mutation` found alive
(tests/test_grading.py has the first tests of these functions)."""

from __future__ import annotations

import numpy as np
import pytest

from bncourse.grading.compare import (
    all_finite,
    all_nan,
    all_true,
    allclose,
    any_true,
    array_equal,
    assert_close,
    assert_equal,
    carried_forward,
    own_wrong,
)
from bncourse.grading.student.messages import CheckFailed

# --------------------------------------------------------------------------- assert_close


def test_a_one_dimensional_index_is_a_plain_number():
    with pytest.raises(CheckFailed) as err:
        assert_close("dbeta", np.array([0.0, 0.0, 1.0]), np.zeros(3))
    assert str(err.value) == "dbeta: wrong values, off by 1 at index 2 (got 1, expected 0)"


def test_the_largest_difference_is_the_one_reported_not_the_largest_value():
    expected = np.array([[1.0, 5.0], [9.0, 3.0]])
    actual = expected.copy()
    actual[0, 1] += 1e-9
    assert assert_close("out", actual, expected) == (
        "approximately equal, largest difference 1e-09 at (0, 1)"
    )


def test_nan_where_the_reference_has_nan_is_no_difference():
    expected = np.array([np.nan, 1.0])
    assert assert_close("out", np.array([np.nan, 1.0 + 1e-9]), expected) == (
        "approximately equal, largest difference 1e-09 at 1"
    )


def test_a_value_where_the_reference_has_nan_is_reported_there():
    with pytest.raises(CheckFailed) as err:
        assert_close("out", np.array([1.0, 2.0]), np.array([np.nan, 2.0]))
    assert str(err.value) == "out: wrong values, off by nan at index 0 (got 1, expected nan)"


def test_the_first_unexpected_inf_or_nan_is_located():
    actual = np.ones((2, 3))
    actual[1, 0] = np.inf
    actual[1, 2] = np.nan
    with pytest.raises(CheckFailed) as err:
        assert_close("dx", actual, np.ones((2, 3)))
    assert str(err.value) == "dx: inf or NaN where none were expected, first at (1, 0)"


def test_a_wrong_dtype_names_both_and_gives_the_hint():
    with pytest.raises(CheckFailed) as err:
        assert_close("out", np.ones(2, np.float32), np.ones(2))
    assert err.value.lines() == [
        "out: wrong dtype float32, expected float64",
        "hint: compute in the input's precision and return that dtype",
    ]
    # unless the caller does not care about the dtype
    assert assert_close("out", np.ones(2, np.float32), np.ones(2), check_dtype=False) == "exact"


def test_a_value_that_is_not_an_array_is_named():
    with pytest.raises(AssertionError) as err:
        assert_close("dgamma", [1.0, 2.0], np.ones(2))
    assert str(err.value).startswith("dgamma: expected a NumPy array")


def test_the_tolerance_boundary_passes():
    # |2.0 - 1.0| == atol + rtol * |1.0| exactly, in binary floating point
    assert allclose(np.array([2.0]), np.array([1.0]), rtol=0.5, atol=0.5)
    assert assert_close("out", np.array([2.0]), np.array([1.0]), rtol=0.5, atol=0.5) == (
        "approximately equal, largest difference 1 at 0"
    )
    assert not allclose(np.array([2.0]), np.array([1.0]), rtol=0.5, atol=0.4375)


# --------------------------------------------------------------------------- allclose


def test_allclose_defaults_are_numpys():
    assert allclose([1.0 + 5e-6, 0.0], [1.0, 5e-9])
    assert not allclose([1.0 + 1e-4], [1.0])  # beyond rtol=1e-5
    assert not allclose([1e-7], [0.0])  # beyond atol=1e-8
    assert allclose(np.ones(3), np.ones(3))


def test_allclose_is_relative_to_the_expected_value():
    assert allclose([1.0], [2.0], rtol=0.5, atol=0.0)  # 1 <= 0.5 * 2
    assert not allclose([2.0], [1.0], rtol=0.5, atol=0.0)  # 1 > 0.5 * 1


def test_allclose_refuses_other_shapes_and_misplaced_nan():
    assert not allclose(np.ones(2), np.ones(3))
    assert not allclose(np.ones((2, 1)), np.ones((1, 2)))
    assert not allclose([np.nan, 1.0], [1.0, 1.0])
    assert not allclose([1.0, 1.0], [1.0, np.nan])
    assert allclose([np.nan, 1.0], [np.nan, 1.0])


# --------------------------------------------------------------------------- plain predicates


def test_the_predicates_say_true_and_false():
    assert any_true([False, True]) is True and any_true([False, False]) is False
    assert all_true([True, True]) is True and all_true([True, False]) is False
    assert all_finite([1.0, -2.0]) is True and all_finite([1.0, np.inf]) is False
    assert all_nan([np.nan, np.nan]) is True and all_nan([np.nan, 0.0]) is False
    assert all_nan([]) is True  # as documented: True for no values
    assert array_equal(np.arange(3), [0, 1, 2]) is True
    assert array_equal(np.arange(3), [0, 1, 3]) is False


def test_the_predicates_use_numpy_as_it_was_at_import(monkeypatch):
    monkeypatch.setattr(np, "all", lambda *a, **k: True)
    monkeypatch.setattr(np, "isfinite", lambda *a, **k: np.array([True]))
    assert all_finite([np.inf]) is False
    assert all_true([False]) is False


# --------------------------------------------------------------------------- assert_equal


def test_assert_equal_names_the_type_and_the_values():
    assert assert_equal("shape", (2, 3), (2, 3)) == "exact"
    with pytest.raises(CheckFailed) as err:
        assert_equal("shape", [2, 3], (2, 3))
    assert str(err.value) == "shape: expected a tuple ((2, 3)), got a list ([2, 3])"
    with pytest.raises(CheckFailed) as err:
        assert_equal("n", 3, 4)
    assert str(err.value) == "n: wrong value, expected 4, got 3"


def test_assert_equal_accepts_none_only_for_none():
    assert assert_equal("cache", None, None) == "exact"
    with pytest.raises(CheckFailed, match="cache: expected a NoneType"):
        assert_equal("cache", 0, None)


# --------------------------------------------------------------------------- error carried forward


def test_own_wrong_uses_the_given_tolerances_and_numpys_defaults():
    expected = {"mean": np.zeros(3), "var": np.ones(3)}
    assert own_wrong("f", {"mean": np.zeros(3), "var": np.ones(3)}, expected) is None
    # the default atol is 1e-8: 1e-7 off zero is wrong
    assert own_wrong("f", {"mean": np.full(3, 1e-7), "var": np.ones(3)}, expected) == "f"
    # the default rtol is 1e-5: 1e-4 off one is wrong
    assert own_wrong("f", {"mean": np.zeros(3), "var": np.full(3, 1.0001)}, expected) == "f"
    assert (
        own_wrong("f", {"mean": np.full(3, 0.1), "var": np.ones(3)}, expected, atol=0.125) is None
    )
    assert (
        own_wrong("f", {"mean": np.zeros(3), "var": np.full(3, 1.25)}, expected, rtol=0.5) is None
    )
    assert own_wrong("f", {"mean": np.zeros(2), "var": np.ones(3)}, expected) == "f"
    assert (
        own_wrong("f", {"mean": [0.0, 0.0, 0.0], "var": np.ones(3, np.float32)}, expected) is None
    )


def _failing(message, hint=None):
    def judge():
        raise CheckFailed(message, hint=hint)

    return judge


def test_carried_forward_names_every_wrong_function():
    judged = carried_forward(
        "dx", _failing("dx: wrong values"), lambda: "exact", ["batch_mean_var", "staged_dvar"]
    )
    assert judged == "exact, given your batch_mean_var and staged_dvar (wrong: fix it first)"
    with pytest.raises(CheckFailed) as err:
        carried_forward(
            "dx",
            _failing("dx: wrong values"),
            _failing("dx: wrong values"),
            ["batch_mean_var", "staged_dvar"],
        )
    assert err.value.lines() == [
        "dx uses your batch_mean_var and staged_dvar, which are wrong: fix them first",
        "hint: the test cell of batch_mean_var and staged_dvar says what is wrong",
    ]


def test_carried_forward_keeps_a_recognised_mistake_and_the_plain_case():
    assert carried_forward("dx", lambda: "exact", None, []) == "exact"
    with pytest.raises(CheckFailed, match="hint: you divide by N - 1"):
        carried_forward(
            "var", _failing("var: wrong values", "you divide by N - 1"), None, ["batch_mean_var"]
        )
    assert (
        carried_forward("out", lambda: "exact", _failing("out: wrong values"), ["batch_mean_var"])
        == "exact"
    )
