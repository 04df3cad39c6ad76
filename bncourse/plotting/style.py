"""The course's figure style: one palette, one colour per BN variant, and the helpers every
figure shares (:mod:`bncourse.plotting`)."""

from __future__ import annotations

import numpy as np

# Okabe and Ito's colour-blind-safe palette (plus a neutral grey): every colour in every
# figure of the course comes from here, and tests/test_plotting.py checks that it does.
PALETTE = {
    "grey": "#666666",
    "black": "#000000",
    "orange": "#E69F00",
    "sky blue": "#56B4E9",
    "bluish green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "reddish purple": "#CC79A7",
}

VARIANT_STYLE = {
    "none": {"color": PALETTE["grey"], "label": "no BN"},
    "before": {"color": PALETTE["blue"], "label": "BN before ReLU"},
    "after": {"color": PALETTE["orange"], "label": "BN after ReLU"},
}
_ORDER = ("none", "before", "after")


def _sd(values, axis=None):
    """The sample standard deviation over seeds (ddof=1, as in the tables and verdicts); 0
    for a single seed."""
    values = np.asarray(values, dtype=float)
    n = values.shape[axis] if axis is not None else values.size
    return np.std(values, axis=axis, ddof=1) if n > 1 else np.zeros_like(np.mean(values, axis=axis))


def _axes(ax):
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=(6.4, 4.2), layout="constrained")
    return ax


def _by_variant(records):
    groups = {}
    for r in records:
        groups.setdefault(r["config"]["bn"], []).append(r)
    return [(bn, groups[bn]) for bn in _ORDER if bn in groups]


def _check(records):
    records = list(records)
    if not records:
        raise ValueError("no results to plot")
    keys = {
        (r["config"]["experiment"], r["config"]["profile"], r["config"]["dataset"]) for r in records
    }
    if len(keys) > 1:
        raise ValueError(f"results of several experiments cannot share a figure: {sorted(keys)}")
    return records


def _subtitle(records) -> str:
    c = records[0]["config"]
    seeds = sorted({r["config"]["seed"] for r in records})
    return (
        f"{c['experiment']} ({c['profile']}): {c['model']} on {c['dataset']}, {len(seeds)} seed(s)"
    )
