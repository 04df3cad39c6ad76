"""bncourse.stats: the t and exact binomial intervals the verdicts are taken on, and the
mean and standard deviation the book reports."""

import math

import pytest

from bncourse.stats import (
    Interval,
    binomial_interval,
    equivalence_power,
    mean_std,
    seeds_for_equivalence,
    t_interval,
)


def test_t_interval_is_the_mean_plus_minus_t_standard_errors():
    i = t_interval([1.0, 2.0, 3.0])
    # t(0.975, 2 degrees of freedom) = 4.3027; standard error = 1 / sqrt(3)
    assert i.estimate == 2.0
    assert i.high - 2.0 == pytest.approx(4.302653 / math.sqrt(3), rel=1e-6)
    assert i.low == pytest.approx(4.0 - i.high)
    assert i.values == (1.0, 2.0, 3.0) and "3 seeds" in i.method


def test_t_interval_edge_cases():
    assert t_interval([0.5, 0.5]).low == t_interval([0.5, 0.5]).high == 0.5
    one = t_interval([0.7])
    assert one.low == -math.inf and one.high == math.inf  # one seed cannot tell
    with pytest.raises(ValueError, match="at least one value"):
        t_interval([])
    with pytest.raises(ValueError, match="finite values"):
        t_interval([1.0, float("nan")])


def test_binomial_interval_is_exact():
    none = binomial_interval(0, 6)
    assert none.low == 0.0 and none.high == pytest.approx(1 - 0.025 ** (1 / 6))
    some = binomial_interval(1, 6)
    assert some.low > 0.0 and some.estimate == pytest.approx(1 / 6)
    assert binomial_interval(6, 6).high == 1.0
    with pytest.raises(ValueError, match="successes <= trials"):
        binomial_interval(7, 6)


def test_binomial_interval_matches_scipys_exact_interval():
    from scipy.stats import binomtest

    for successes, trials in [(0, 1), (1, 1), (0, 6), (1, 6), (3, 10), (5, 10), (9, 10), (10, 10)]:
        i = binomial_interval(successes, trials)
        ci = binomtest(successes, trials).proportion_ci(0.95, method="exact")
        assert (i.low, i.high) == pytest.approx((ci.low, ci.high), rel=1e-9, abs=1e-12)
    # the textbook value for 5 of 10
    assert binomial_interval(5, 10).low == pytest.approx(0.187086, abs=1e-6)
    assert binomial_interval(5, 10).high == pytest.approx(0.812914, abs=1e-6)
    # a wider interval for a higher confidence
    assert binomial_interval(5, 10, 0.99).low < binomial_interval(5, 10).low


def test_binomial_interval_keeps_one_value_per_trial_and_says_how():
    i = binomial_interval(2, 5)
    assert i.values == (1.0, 1.0, 0.0, 0.0, 0.0)
    assert i.estimate == 0.4
    assert i.method == "2 of 5 runs, 95% Clopper-Pearson interval"
    assert binomial_interval(1, 1).values == (1.0,)  # one trial is enough to ask
    with pytest.raises(ValueError, match=r"trials >= 1, got 0 of 0"):
        binomial_interval(0, 0)
    with pytest.raises(ValueError, match=r"got -1 of 3"):
        binomial_interval(-1, 3)


def test_mean_std_is_the_mean_and_the_sample_standard_deviation():
    assert mean_std([1.0, 3.0]) == (2.0, pytest.approx(math.sqrt(2.0)))  # divides by n - 1
    assert mean_std([4.0]) == (4.0, 0.0)
    assert mean_std([2.0, 2.0, 2.0]) == (2.0, 0.0)
    with pytest.raises(ValueError, match=r"^mean_std: expected at least one value, got none$"):
        mean_std([])


def test_t_interval_refuses_bad_input_with_a_message_naming_it():
    with pytest.raises(ValueError, match=r"^t_interval: expected at least one value, got none$"):
        t_interval([])
    for confidence in (0.0, 1.0, 1.5, -0.1):
        with pytest.raises(
            ValueError, match=rf"^confidence must be in \(0, 1\), got {confidence}$"
        ):
            t_interval([1.0, 2.0], confidence)
    assert t_interval([1.0, 2.0], 0.5).high < t_interval([1.0, 2.0]).high


def test_an_interval_contains_its_ends():
    i = Interval(0.5, 0.0, 1.0, (0.0, 1.0), "test")
    assert i.contains(0.0) and i.contains(1.0) and i.contains(0.5)
    assert not i.contains(-1e-12) and not i.contains(1.0 + 1e-12)
    assert str(i) == "0.5 [0, 1]"


def test_equivalence_power_matches_a_simulation_of_the_rule():
    """The chance that t_interval's upper end falls under the margin when the true effect is
    0, simulated with seeded normal effects, against the noncentral-t formula."""
    import numpy as np

    rng = np.random.default_rng(8)
    sd, margin = 0.02, 0.01
    for n in (5, 20, 31):
        draws = rng.normal(0.0, sd, size=(4000, n))
        shown = np.mean([t_interval(d).high < margin for d in draws])
        assert abs(shown - equivalence_power(n, sd, margin)) < 0.03


def test_equivalence_power_grows_with_seeds_and_margin_and_shrinks_with_noise():
    assert equivalence_power(10, 0.02, 0.01) < equivalence_power(20, 0.02, 0.01)
    assert equivalence_power(10, 0.02, 0.01) < equivalence_power(10, 0.02, 0.02)
    assert equivalence_power(10, 0.04, 0.01) < equivalence_power(10, 0.02, 0.01)
    assert equivalence_power(3, 0.0, 0.01) == 1.0  # no noise: the interval is the point 0
    assert equivalence_power(5, 0.02, 0.01, confidence=0.5) > equivalence_power(5, 0.02, 0.01)


def test_equivalence_power_matches_an_integral_over_the_sample_spread():
    """An independent route to the same chance: given the sample standard deviation s, the
    rule succeeds when the mean falls below margin - t * s / sqrt(n), a normal probability;
    integrate it over s, whose square is sd^2 chi^2(n - 1) / (n - 1)."""
    import numpy as np
    from scipy import integrate, stats

    sd, margin = 0.02, 0.01
    for n in (3, 5, 31):
        t = stats.t.ppf(0.975, n - 1)

        def given(q, n=n, t=t):
            s = sd * np.sqrt(q / (n - 1))
            return stats.norm.cdf((margin - t * s / np.sqrt(n)) / (sd / np.sqrt(n)))

        expected, _ = integrate.quad(
            lambda q, n=n, given=given: given(q) * stats.chi2.pdf(q, n - 1), 0, np.inf
        )
        assert equivalence_power(n, sd, margin) == pytest.approx(expected, abs=1e-7)


def test_seeds_for_equivalence_is_the_fewest_that_reach_the_power():
    n = seeds_for_equivalence(0.0192, 0.01)
    assert equivalence_power(n, 0.0192, 0.01) >= 0.8 > equivalence_power(n - 1, 0.0192, 0.01)
    assert n == 31
    assert seeds_for_equivalence(0.0192, 0.01, power=0.9) == 41
    assert seeds_for_equivalence(0.0, 0.01) == 2
    assert seeds_for_equivalence(0.001, 0.01) == 3  # t(0.975, 1) = 12.7 is too wide for 2
    # reaching the power exactly is enough
    exact = equivalence_power(31, 0.0192, 0.01)
    assert seeds_for_equivalence(0.0192, 0.01, power=exact) == 31
    # the confidence of the interval is the one the test will use
    assert seeds_for_equivalence(0.0192, 0.01, confidence=0.5) < 31
    assert seeds_for_equivalence(0.0192, 0.01, most=31) == 31
    with pytest.raises(ValueError, match="more than 30 seeds would be needed for sd 0.0192"):
        seeds_for_equivalence(0.0192, 0.01, most=30)


def test_equivalence_planning_refuses_bad_input():
    with pytest.raises(ValueError, match="n must be at least 2"):
        equivalence_power(1, 0.02, 0.01)
    with pytest.raises(ValueError, match="sd must be finite and >= 0"):
        equivalence_power(5, -0.1, 0.01)
    with pytest.raises(ValueError, match="margin must be finite and > 0"):
        equivalence_power(5, 0.02, 0.0)
    with pytest.raises(ValueError, match=r"confidence must be in \(0, 1\)"):
        equivalence_power(5, 0.02, 0.01, confidence=1.0)
    with pytest.raises(ValueError, match=r"confidence must be in \(0, 1\)"):
        equivalence_power(5, 0.02, 0.01, confidence=0.0)
    with pytest.raises(ValueError, match=r"power must be in \(0, 1\)"):
        seeds_for_equivalence(0.02, 0.01, power=1.0)
    with pytest.raises(ValueError, match=r"power must be in \(0, 1\)"):
        seeds_for_equivalence(0.02, 0.01, power=0.0)
    with pytest.raises(
        ValueError, match="more than 10,000 seeds .* widen the margin or make each run less noisy$"
    ):
        seeds_for_equivalence(1.0, 0.001)
