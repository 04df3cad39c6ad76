"""Verdicts on the tutorials' claims: three outcomes, each decided by an interval.

Every claim is turned, before any run, into one or more *effects*: a quantity measured once
per seed whose sign (or position against a stated margin) is what the claim predicts. Each
effect gets a confidence interval over the seeds (:mod:`bncourse.stats`), and its outcome is

* ``supported`` when the whole interval lies on the side the claim predicts;
* ``contradicted`` when the whole interval lies on the other side;
* ``inconclusive`` when the interval includes the threshold: the runs cannot tell.

A claim with several effects (several models, or a claim with two parts) is supported when
every effect is, contradicted when any effect is, and inconclusive otherwise.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from bncourse.stats import Interval

__all__ = [
    "CONTRADICTED",
    "INCONCLUSIVE",
    "OUTCOMES",
    "SUPPORTED",
    "VERDICTS_FILE",
    "Effect",
    "Verdict",
    "claim_key",
    "effect",
    "format_verdicts",
    "verdict",
]

SUPPORTED, INCONCLUSIVE, CONTRADICTED = "supported", "inconclusive", "contradicted"
OUTCOMES = (SUPPORTED, INCONCLUSIVE, CONTRADICTED)
VERDICTS_FILE = "claims-verdicts.txt"  # written by `bncourse report --claims DIR`
_SIDES = ("above", "below")


@dataclass(frozen=True)
class Effect:
    """One measured effect of a claim, with its interval and the side the claim predicts.

    Attributes:
        label: what was measured, e.g. "test accuracy, BN minus no BN (MNIST)".
        interval: its estimate and interval over seeds.
        threshold: the line: 0 for "no effect", or a stated margin.
        side: 'above' if the claim predicts the effect exceeds ``threshold``, 'below' if it
            predicts the effect stays under it.
        outcome: supported, inconclusive or contradicted (computed from the three above).
        prediction: what the claim predicts, in words, where "> threshold" or "< threshold"
            would misstate it (a guarantee predicts a share of exactly 0, which no interval
            can show: it can only be contradicted).
    """

    label: str
    interval: Interval
    threshold: float
    side: str
    outcome: str
    prediction: str = ""

    def describe(self) -> str:
        i = self.interval
        sign = ">" if self.side == "above" else "<"
        predicts = self.prediction or f"{sign} {self.threshold:g}"
        return (
            f"{self.label}: {i.estimate:.4g}, interval [{i.low:.4g}, {i.high:.4g}] "
            f"({i.method}); the claim predicts {predicts}: "
            f"{self.outcome.upper()}"
        )

    def change(self) -> str:
        """What would have given this effect another outcome, in a clause."""
        i, t = self.interval, self.threshold
        near, far = (i.low, i.high) if self.side == "above" else (i.high, i.low)
        toward = "above" if self.side == "above" else "below"
        away = "below" if self.side == "above" else "above"
        if self.outcome == SUPPORTED:
            return (
                f"it would have been inconclusive had the interval's "
                f"{'low' if self.side == 'above' else 'high'} end ({near:.3g}) not been "
                f"{toward} {t:g}"
            )
        if self.outcome == CONTRADICTED:
            return (
                f"it would have been inconclusive had the interval's "
                f"{'high' if self.side == 'above' else 'low'} end ({far:.3g}) reached {t:g}"
            )
        return (
            f"the interval [{i.low:.3g}, {i.high:.3g}] includes {t:g}: it needed to lie "
            f"wholly {toward} {t:g} to support the claim, wholly {away} to contradict it "
            "(more seeds narrow it)"
        )


def effect(
    label: str,
    interval: Interval,
    *,
    threshold: float = 0.0,
    side: str = "above",
    prediction: str = "",
) -> Effect:
    """An :class:`Effect` with its outcome decided by where ``interval`` lies.

    The boundary counts as inconclusive: an interval that touches the threshold has not
    excluded it. ``prediction`` words what the claim predicts where the side and threshold
    alone would misstate it (see :class:`Effect`).
    """
    if side not in _SIDES:
        raise ValueError(f"side must be 'above' or 'below', got {side!r}")
    if side == "above":
        outcome = (
            SUPPORTED
            if interval.low > threshold
            else CONTRADICTED
            if interval.high < threshold
            else INCONCLUSIVE
        )
    else:
        outcome = (
            SUPPORTED
            if interval.high < threshold
            else CONTRADICTED
            if interval.low > threshold
            else INCONCLUSIVE
        )
    return Effect(label, interval, float(threshold), side, outcome, prediction)


@dataclass(frozen=True)
class Verdict:
    """The verdict on one claim: its effects, the outcome they give, and the rule.

    Attributes:
        claim: the claim's id, '7' or '1a' (see ``../shared/SEEDS.md`` for the numbering).
        text: the claim in one line.
        experiment: the experiment(s) it is judged from.
        effects: the measured effects, each with its interval and outcome.
        rule: why the effects are a fair test of the claim: what would support it, what
            would contradict it.
        numbers: further context (key quantities, not part of the decision).
        verdict: supported, inconclusive or contradicted.
    """

    claim: str
    text: str
    experiment: str
    effects: tuple
    rule: str
    numbers: dict = field(default_factory=dict)
    verdict: str = INCONCLUSIVE

    def change(self) -> str:
        """One sentence on what would have changed the verdict."""
        if self.verdict == CONTRADICTED:
            deciding = [e for e in self.effects if e.outcome == CONTRADICTED]
        elif self.verdict == SUPPORTED:
            deciding = list(self.effects)
        else:
            deciding = [e for e in self.effects if e.outcome == INCONCLUSIVE]
        parts = [f"{e.label}: {e.change()}" for e in deciding]
        return "; ".join(parts) + "."


def verdict(claim, text, experiment, effects, rule, numbers=None) -> Verdict:
    """A :class:`Verdict` whose outcome combines its effects: supported if every effect is,
    contradicted if any effect is, inconclusive otherwise."""
    effects = tuple(effects)
    if not effects:
        raise ValueError(f"claim {claim}: a verdict needs at least one effect")
    outcomes = {e.outcome for e in effects}
    outcome = (
        CONTRADICTED
        if CONTRADICTED in outcomes
        else SUPPORTED
        if outcomes == {SUPPORTED}
        else INCONCLUSIVE
    )
    return Verdict(str(claim), text, experiment, effects, rule, dict(numbers or {}), outcome)


def claim_key(claim) -> tuple:
    """Sort key for claim ids: '2' < '10', '1a' < '1b' < '2'."""
    match = re.fullmatch(r"(\d+)([a-z]*)", str(claim))
    if not match:
        raise ValueError(f"a claim id is a number with an optional letter, got {claim!r}")
    return int(match.group(1)), match.group(2)


def format_verdicts(items) -> str:
    """The claims table: claim, experiment, key numbers, each effect with its interval, and
    the verdict."""
    if not items:
        return "no claim results"
    lines = []
    for v in items:
        lines.append(f"claim {v.claim}: {v.text}")
        lines.append(f"  experiment: {v.experiment}")
        for key, value in v.numbers.items():
            lines.append(f"  {key}: {value}")
        for e in v.effects:
            lines.append(f"  effect: {e.describe()}")
        intervals = "; ".join(
            f"{e.interval.estimate:.3g} [{e.interval.low:.3g}, "
            f"{e.interval.high:.3g}] vs {e.threshold:g}"
            for e in v.effects
        )
        lines.append(f"  verdict: {v.verdict.upper()} ({intervals}). Rule: {v.rule}")
        lines.append(f"  would change: {v.change()}")
    return "\n".join(lines)
