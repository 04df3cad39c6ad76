"""The tutorials' figures: learning curves, test accuracy, seconds per epoch, and T4's
accuracy by epoch on MNIST; :func:`save_report_figures` for ``bncourse report``."""

from __future__ import annotations

import statistics
from pathlib import Path

import numpy as np

from .style import (
    VARIANT_STYLE,
    _ORDER,
    _sd,
    _axes,
    _by_variant,
    _check,
    _subtitle,
)


def plot_learning_curves(records, metric: str = "accuracy", ax=None):
    """Mean training (dashed) and validation (solid) curves per variant, ±1 std bands."""
    if metric not in ("accuracy", "loss"):
        raise ValueError(f"metric must be 'accuracy' or 'loss', got {metric!r}")
    records = _check(records)
    ax = _axes(ax)
    for bn, runs in _by_variant(records):
        style = VARIANT_STYLE[bn]
        for key, dashes, what in ((metric, "--", "training"), (f"val_{metric}", "-", "validation")):
            curves = np.array([r["history"][key] for r in runs])
            epochs = np.arange(1, curves.shape[1] + 1)
            mean, std = curves.mean(axis=0), _sd(curves, axis=0)
            ax.plot(
                epochs,
                mean,
                dashes,
                color=style["color"],
                lw=1.8,
                label=f"{style['label']}, {what}",
            )
            if len(runs) > 1:
                ax.fill_between(
                    epochs, mean - std, mean + std, color=style["color"], alpha=0.15, lw=0
                )
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.set_title(f"Learning curves ({metric})\n{_subtitle(records)}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(
        fontsize=8,
        ncols=len(_by_variant(records)),
        loc="upper center",
        bbox_to_anchor=(0.5, -0.14),
        frameon=False,
    )
    return ax


__all__ = [
    "plot_accuracy_by_epoch",
    "plot_epoch_seconds",
    "plot_learning_curves",
    "plot_test_accuracy",
    "save_report_figures",
]


def plot_test_accuracy(records, ax=None):
    """Final test accuracy per variant: the mean with a ±1 std error bar, and each seed."""
    records = _check(records)
    ax = _axes(ax)
    labels = []
    for i, (bn, runs) in enumerate(_by_variant(records)):
        style = VARIANT_STYLE[bn]
        acc = [r["test"]["accuracy"] for r in runs]
        std = statistics.stdev(acc) if len(acc) > 1 else 0.0
        ax.errorbar(
            [i],
            [statistics.fmean(acc)],
            yerr=[std],
            fmt="o",
            color=style["color"],
            capsize=6,
            ms=8,
            lw=2,
        )
        ax.plot(np.full(len(acc), i + 0.12), acc, "x", color=style["color"], alpha=0.7, ms=6)
        labels.append(style["label"])
    ax.set_xticks(range(len(labels)), labels)
    ax.set_xlim(-0.5, len(labels) - 0.5)
    ax.set_ylabel("test accuracy")
    ax.set_title(
        f"Test accuracy: mean ± 1 std (o) and each seed (x)\n{_subtitle(records)}", fontsize=10
    )
    ax.grid(axis="y", alpha=0.3)
    return ax


def plot_epoch_seconds(records, ax=None):
    """Seconds per training epoch per variant: median and interquartile range over every
    epoch but the first (which compiles) of all seeds, with the ratio to no BN above."""
    from bncourse.results import steady_epoch_seconds

    records = _check(records)
    ax = _axes(ax)
    medians, tops, labels = {}, {}, []
    for i, (bn, runs) in enumerate(_by_variant(records)):
        style = VARIANT_STYLE[bn]
        seconds = np.concatenate([steady_epoch_seconds(r) for r in runs])
        q1, median, q3 = np.percentile(seconds, [25, 50, 75])
        medians[bn], tops[bn] = median, q3
        ax.bar([i], [median], color=style["color"], alpha=0.8, width=0.6)
        ax.errorbar(
            [i], [median], yerr=[[median - q1], [q3 - median]], fmt="none", color="black", capsize=5
        )
        labels.append(style["label"])
    if "none" in medians:
        for i, (bn, _) in enumerate(_by_variant(records)):
            ax.annotate(
                f"{medians[bn] / medians['none']:.2f}x",
                (i, tops[bn]),
                textcoords="offset points",
                xytext=(0, 6),
                ha="center",
                fontsize=9,
            )
    ax.set_xticks(range(len(labels)), labels)
    ax.set_ylabel("seconds per epoch (training, first epoch left out)")
    ax.set_ylim(0, max(tops.values()) * 1.2)
    machine = records[0]["provenance"]["machine"]
    ax.set_title(
        f"Time per epoch: median, interquartile range, ratio to no BN\n{_subtitle(records)}; "
        f"{machine.get('cpus')} CPUs, {machine.get('keras_backend')}",
        fontsize=10,
    )
    ax.grid(axis="y", alpha=0.3)
    return ax


def _save(ax, stem) -> list:
    """Save ``ax``'s figure as ``stem``.png and ``stem``.svg, close it, return the paths."""
    import matplotlib.pyplot as plt

    paths = []
    for ext in ("png", "svg"):
        path = stem.with_name(f"{stem.name}.{ext}")
        ax.figure.savefig(path, dpi=120)
        paths.append(path)
    plt.close(ax.figure)
    return paths


def save_report_figures(records, out_dir) -> list:
    """Save the three figures of each experiment and profile as PNG and SVG; return paths."""
    import matplotlib

    matplotlib.use("Agg")

    from bncourse.experiments import protocols

    PROTOCOLS = protocols()
    groups = {}
    for r in records:
        c = r["config"]
        if c["experiment"] in PROTOCOLS:
            groups.setdefault((c["experiment"], c["profile"], c["dataset"]), []).append(r)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for (experiment, profile, dataset), runs in sorted(groups.items()):
        default = PROTOCOLS[experiment].dataset if experiment in PROTOCOLS else None
        stem = f"{experiment}-{profile}" + ("" if dataset == default else f"-{dataset}")
        for name, plot in (
            ("curves", plot_learning_curves),
            ("test-accuracy", plot_test_accuracy),
            ("epoch-seconds", plot_epoch_seconds),
        ):
            paths += _save(plot(runs), out_dir / f"{stem}-{name}")
    return paths


def plot_accuracy_by_epoch(records, reported=None, ax=None):
    """T4 on MNIST: training (fit's log, training mode), validation and test accuracy after
    every epoch, with and without BN; mean over seeds.

    Args:
        records: runs of a protocol that records ``history["test_accuracy"]``.
        reported: ``{bn: accuracy}`` a tutorial reported (e.g. T4's), drawn as thin
            horizontal lines in the variant's colour; None for none.
    """
    ax = _axes(ax)
    styles = {
        "accuracy": ("-", "training (fit's log)"),
        "val_accuracy": (":", "validation"),
        "test_accuracy": ("--", "test"),
    }
    for bn in (b for b in _ORDER if any(r["config"]["bn"] == b for r in records)):
        runs = [r for r in records if r["config"]["bn"] == bn]
        style = VARIANT_STYLE[bn]
        for key, (ls, what) in styles.items():
            curves = [r["history"][key] for r in runs if key in r["history"]]
            if not curves:
                continue
            n = min(len(c) for c in curves)
            mean = np.mean([c[:n] for c in curves], axis=0)
            ax.plot(
                range(1, n + 1),
                mean,
                color=style["color"],
                ls=ls,
                lw=1.6,
                label=f"{style['label']}: {what}",
            )
        if reported and bn in reported:
            ax.axhline(
                float(reported[bn]),
                color=style["color"],
                ls="-.",
                lw=0.9,
                label=f"{style['label']}: reported {reported[bn]}",
            )
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    seeds = sorted({r["config"]["seed"] for r in records})
    ax.set_title(f"T4 CNN on MNIST, mean over {len(seeds)} seed(s)", fontsize=10)
    return ax
