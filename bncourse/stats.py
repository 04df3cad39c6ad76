"""Summaries over seeds and the intervals that verdicts are taken on.

Pure functions of plain numbers; nothing here knows about BN or Keras. An effect is measured
once per seed (for two variants run with the same seed, as a paired difference), and its
mean gets a Student-t confidence interval over the seeds: with three seeds the interval is
the mean ± 4.30 standard errors, with five ± 2.78, which is what a few seeds can say.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

__all__ = [
    "CONFIDENCE",
    "Interval",
    "binomial_interval",
    "equivalence_power",
    "mean_std",
    "seeds_for_equivalence",
    "t_interval",
]

CONFIDENCE = 0.95


def mean_std(values) -> tuple:
    """Mean and sample standard deviation (0.0 for a single value)."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("mean_std: expected at least one value, got none")
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


@dataclass(frozen=True)
class Interval:
    """An estimate with its confidence interval, from ``values`` (one per seed or run).

    Attributes:
        estimate: the point estimate (the mean, or a proportion).
        low, high: the interval's ends.
        values: the measurements it was computed from, in seed order.
        method: how, in words (for verdict lines and captions).
    """

    estimate: float
    low: float
    high: float
    values: tuple
    method: str

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high

    def __str__(self):
        return f"{self.estimate:.4g} [{self.low:.4g}, {self.high:.4g}]"


def t_interval(values, confidence: float = CONFIDENCE, *, unit: str = "seeds") -> Interval:
    """Mean of ``values`` with a two-sided Student-t interval over them; ``unit`` names what
    the values are one per (seeds, or timing rounds), for the interval's description.

    A single value gives an interval of infinite width: one seed cannot tell an effect from
    noise. Equal values give a zero-width interval at their mean.
    """
    from scipy import stats as _stats

    values = tuple(float(v) for v in values)
    if not values:
        raise ValueError("t_interval: expected at least one value, got none")
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"t_interval: expected finite values, got {values}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    n = len(values)
    mean, std = mean_std(values)
    if n == 1:
        low, high = -math.inf, math.inf
    else:
        half = float(_stats.t.ppf(0.5 + confidence / 2, n - 1)) * std / math.sqrt(n)
        low, high = mean - half, mean + half
    return Interval(mean, low, high, values, f"mean over {n} {unit}, {confidence:.0%} t-interval")


def binomial_interval(successes: int, trials: int, confidence: float = CONFIDENCE) -> Interval:
    """A proportion with its exact (Clopper-Pearson) interval: the low end is 0 exactly when
    nothing happened, and above 0 as soon as one trial succeeded."""
    from scipy import stats as _stats

    if not 0 <= successes <= trials or trials < 1:
        raise ValueError(
            f"expected 0 <= successes <= trials and trials >= 1, got {successes} of {trials}"
        )
    alpha = 1.0 - confidence
    low = (
        0.0
        if successes == 0
        else float(_stats.beta.ppf(alpha / 2, successes, trials - successes + 1))
    )
    high = (
        1.0
        if successes == trials
        else float(_stats.beta.ppf(1 - alpha / 2, successes + 1, trials - successes))
    )
    values = (1.0,) * successes + (0.0,) * (trials - successes)
    return Interval(
        successes / trials,
        low,
        high,
        values,
        f"{successes} of {trials} runs, {confidence:.0%} Clopper-Pearson interval",
    )


def equivalence_power(n: int, sd: float, margin: float, confidence: float = CONFIDENCE) -> float:
    """The chance that ``n`` paired seeds show an effect to lie below ``margin`` (the upper
    end of :func:`t_interval` under it) when the true effect is 0 and the per-seed effects
    are normal with standard deviation ``sd``.

    The upper end lies below the margin when ``(margin - mean) / (s / sqrt(n))`` exceeds the
    t quantile, and that statistic follows a noncentral t distribution with ``n - 1`` degrees
    of freedom and noncentrality ``margin * sqrt(n) / sd``.
    """
    from scipy import stats as _stats

    if n < 2:
        raise ValueError(f"n must be at least 2 (one seed gives no interval), got {n}")
    if not (math.isfinite(sd) and sd >= 0.0):
        raise ValueError(f"sd must be finite and >= 0, got {sd}")
    if not (math.isfinite(margin) and margin > 0.0):
        raise ValueError(f"margin must be finite and > 0, got {margin}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if sd == 0.0:
        return 1.0
    critical = float(_stats.t.ppf(0.5 + confidence / 2, n - 1))
    return float(_stats.nct.sf(critical, n - 1, margin * math.sqrt(n) / sd))


def seeds_for_equivalence(
    sd: float,
    margin: float,
    power: float = 0.8,
    confidence: float = CONFIDENCE,
    *,
    most: int = 10_000,
) -> int:
    """The fewest seeds whose :func:`equivalence_power` reaches ``power``: how many an
    equivalence test needs, given the spread ``sd`` of its per-seed effect (from a pilot).
    More than ``most`` seeds is an error."""
    if not 0.0 < power < 1.0:
        raise ValueError(f"power must be in (0, 1), got {power}")
    for n in range(2, most + 1):
        if equivalence_power(n, sd, margin, confidence) >= power:
            return n
    raise ValueError(
        f"more than {most:,} seeds would be needed for sd {sd} and margin {margin}: "
        "widen the margin or make each run less noisy"
    )
