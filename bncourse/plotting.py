"""Figures from saved results. Each function takes result records and returns an Axes.

Colours and line styles are the same in every figure: one colour per BN variant (no BN in
grey, BN before the activation in blue, after it in orange); training curves dashed,
validation curves solid; bands are ±1 standard deviation over seeds.
"""

from __future__ import annotations

import statistics
from pathlib import Path

import numpy as np

__all__ = [
    "PALETTE",
    "VARIANT_STYLE",
    "plot_epoch_seconds",
    "plot_learning_curves",
    "plot_accuracy_by_epoch",
    "plot_test_accuracy",
    "plot_verdict",
    "plot_verdicts",
    "save_report_figures",
]

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


# --------------------------------------------------------------------------- claims

CLAIM_STYLE = {
    "none": (PALETTE["grey"], "no BN"),
    "bn": (PALETTE["blue"], "BN"),
    "noisy-bn": (PALETTE["reddish purple"], "BN + noise"),
    "bias": (PALETTE["orange"], "bias before BN"),
    "nobias": (PALETTE["blue"], "no bias before BN"),
    "dropout": (PALETTE["bluish green"], "dropout"),
    "bn+dropout": (PALETTE["reddish purple"], "BN + dropout"),
    "raw": (PALETTE["vermillion"], "raw [0, 255]"),
    "unit": (PALETTE["blue"], "[0, 1]"),
    "standard": (PALETTE["bluish green"], "standardised"),
    "m0.99": (PALETTE["blue"], "momentum 0.99"),
    "m0.9": (PALETTE["orange"], "momentum 0.9"),
    "frozen": (PALETTE["black"], "control: hidden layers frozen"),
}
OUTCOME_COLOURS = {
    "supported": PALETTE["bluish green"],
    "inconclusive": PALETTE["grey"],
    "contradicted": PALETTE["vermillion"],
}


def _claim_groups(records, key=None):
    groups = {}
    for r in records:
        c = r["config"]
        groups.setdefault(c["variant"] if key is None else (c["variant"], c[key]), []).append(r)
    return groups


def plot_ics(records, ax=None):
    """Claim 1: the 15th-85th percentile band and the median of a sigmoid unit's input over
    training steps, per variant (mean over seeds)."""
    ax = _axes(ax)
    for variant, runs in _claim_groups(records).items():
        color, label = CLAIM_STYLE[variant]
        steps = runs[0]["steps"]
        p = np.mean([r["percentiles"] for r in runs], axis=0)
        ax.fill_between(steps, p[:, 0], p[:, 2], color=color, alpha=0.15, lw=0)
        ax.plot(steps, p[:, 1], color=color, lw=1.8, label=f"{label}: median, 15th-85th band")
    ax.set_xlabel("training step")
    ax.set_ylabel("input of one sigmoid unit")
    ax.set_title("Claim 1a: a unit's input distribution during training", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return ax


def plot_sweep(records, key, ax=None):
    """Claims 4 and 6: best validation accuracy against the swept value (log scale), with
    and without BN, mean ± 1 std over seeds."""
    ax = _axes(ax)
    groups = _claim_groups(records, key)
    for variant in sorted({v for v, _ in groups}):
        color, label = CLAIM_STYLE[variant]
        values = sorted(k for v, k in groups if v == variant)
        accs = [[r["best_val_accuracy"] for r in groups[(variant, k)]] for k in values]
        ax.errorbar(
            values,
            [np.mean(a) for a in accs],
            yerr=[_sd(a) for a in accs],
            color=color,
            marker="o",
            capsize=4,
            label=label,
        )
    ax.set_xscale("log")
    ax.axhline(0.1, color="black", lw=0.8, ls=":", label="chance")
    ax.set_xlabel(
        {
            "init_scale": "initial weight scale (x He)",
            "learning_rate": "learning rate (plain SGD)",
        }.get(key, key)
    )
    ax.set_ylabel("best validation accuracy")
    ax.set_ylim(0, 1)
    claim = {"init_scale": 4, "learning_rate": 6}.get(key, "")
    ax.set_title(f"Claim {claim}: six-layer MLP, mean ± 1 std over seeds", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return ax


def plot_gamma_beta(records, ax=None):
    """Claim 10: each feature's learned gamma against the standard deviation of BN's input
    (runs without bias), with the line gamma = std that the claim predicts."""
    ax = _axes(ax)
    stds, gammas = [], []
    for r in records:
        if r["config"]["variant"] != "nobias":
            continue
        for layer in r["layers"]:
            stds += layer["input_std"]
            gammas += layer["gamma"]
    ax.scatter(stds, gammas, s=6, alpha=0.4, color=PALETTE["blue"], label="one feature")
    top = max(max(stds), max(gammas))
    ax.plot([0, top], [0, top], color="black", ls="--", lw=1, label="gamma = input std (claim)")
    ax.set_xlabel("standard deviation of BN's input")
    ax.set_ylabel("learned gamma")
    ax.set_title("Claim 10: what gamma learns, every feature of every BN layer", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return ax


def plot_input_scaling(records, ax=None):
    """Claim 11: each layer's gradient norm at initialisation (log scale), per input scaling
    and initial scale (mean over seeds)."""
    ax = _axes(ax)
    for (variant, gain), runs in sorted(_claim_groups(records, "init_gain").items()):
        color, label = CLAIM_STYLE[variant]
        norms = np.mean([r["initial_grad_norms"] for r in runs], axis=0)
        ax.plot(
            np.arange(1, len(norms) + 1),
            norms,
            color=color,
            ls="-" if gain == 1.0 else "--",
            marker="o",
            ms=3,
            label=f"{label}, He x {gain:g}",
        )
    ax.set_yscale("log")
    ax.set_xlabel("layer (1 = first)")
    ax.set_ylabel("kernel gradient norm at initialisation")
    ax.set_title("Claim 11: plain 12-layer ReLU network, gradient norms by layer", fontsize=10)
    ax.grid(alpha=0.3)
    # below the axes: the curves span every decade, so no corner inside is free
    ax.legend(fontsize=8, ncols=3, loc="upper center", bbox_to_anchor=(0.5, -0.14), frameon=False)
    return ax


def _bars(ax, labels, values, errors, colors):
    ax.bar(
        range(len(labels)), values, yerr=errors, color=colors, alpha=0.85, capsize=5, ecolor="black"
    )
    ax.set_xticks(range(len(labels)), labels)


def plot_regularisation(records, ax=None):
    """Claim 5: the train-validation accuracy gap per variant, mean ± 1 std over seeds."""
    ax = _axes(ax)
    order = [v for v in ("none", "bn", "dropout", "bn+dropout") if v in _claim_groups(records)]
    groups = _claim_groups(records)
    gaps = [[r["train_accuracy"] - r["final_val_accuracy"] for r in groups[v]] for v in order]
    _bars(
        ax,
        [CLAIM_STYLE[v][1] for v in order],
        [np.mean(g) for g in gaps],
        [_sd(g) for g in gaps],
        [CLAIM_STYLE[v][0] for v in order],
    )
    ax.set_ylabel("training minus validation accuracy")
    ax.set_title("Claim 5: overfitting with and without BN and dropout", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    return ax


def plot_inference_stats(records, ax=None):
    """Claim 12: test accuracy with the moving statistics and with recomputed ones, after a
    short and a long training, per BN momentum."""
    ax = _axes(ax)
    groups = _claim_groups(records, "steps")
    keys = sorted(groups, key=lambda k: (k[1], k[0]))
    labels, width = [], 0.38
    for i, key in enumerate(keys):
        moving = [r["test_accuracy_moving"] for r in groups[key]]
        precise = [r["test_accuracy_precise"] for r in groups[key]]
        ax.bar(
            i - width / 2,
            np.mean(moving),
            width,
            yerr=_sd(moving),
            color=PALETTE["orange"],
            ecolor="black",
            capsize=4,
            label="moving statistics" if i == 0 else None,
        )
        ax.bar(
            i + width / 2,
            np.mean(precise),
            width,
            yerr=_sd(precise),
            color=PALETTE["blue"],
            ecolor="black",
            capsize=4,
            label="recomputed statistics" if i == 0 else None,
        )
        labels.append(f"{CLAIM_STYLE[key[0]][1]}\n{key[1]} steps")
    ax.set_xticks(range(len(keys)), labels, fontsize=8)
    ax.set_ylabel("test accuracy (inference mode)")
    ax.set_ylim(0, 1)
    ax.set_title("Claims 12a and 12b: BN's moving statistics against recomputed ones", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return ax


def plot_bias_before_bn(records, ax=None):
    """Claim 8: test accuracy with and without a bias before BN, mean ± 1 std over seeds."""
    ax = _axes(ax)
    groups = _claim_groups(records)
    order = [v for v in ("bias", "nobias") if v in groups]
    accs = [[r["test"]["accuracy"] for r in groups[v]] for v in order]
    params = [groups[v][0]["n_params"]["trainable"] for v in order]
    _bars(
        ax,
        [f"{CLAIM_STYLE[v][1]}\n{p:,} parameters" for v, p in zip(order, params)],
        [np.mean(a) for a in accs],
        [_sd(a) for a in accs],
        [CLAIM_STYLE[v][0] for v in order],
    )
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1)
    ax.set_title("Claim 8: a bias before BN", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    return ax


def plot_small_batch(records, ax=None):
    """Claim 12: test accuracy against batch size for BN, GroupNorm and LayerNorm (BN also
    with recomputed statistics), mean ± 1 std over seeds."""
    ax = _axes(ax)
    groups = _claim_groups(records, "batch_size")
    names = {
        "bn": (PALETTE["blue"], "BN"),
        "gn": (PALETTE["bluish green"], "GroupNorm (8 groups)"),
        "ln": (PALETTE["reddish purple"], "LayerNormalization (over channels only)"),
    }
    for variant, (color, label) in names.items():
        batches = sorted(b for v, b in groups if v == variant)
        if not batches:
            continue
        for key, style, suffix in (
            ("test", "-", ""),
            ("test_accuracy_recomputed", "--", ", recomputed statistics"),
        ):
            if key != "test" and variant != "bn":
                continue
            accs = [
                [r["test"]["accuracy"] if key == "test" else r[key] for r in groups[(variant, b)]]
                for b in batches
            ]
            ax.errorbar(
                batches,
                [np.mean(a) for a in accs],
                yerr=[_sd(a) for a in accs],
                color=color,
                ls=style,
                marker="o",
                capsize=4,
                label=label + suffix,
            )
    ax.set_xscale("log", base=2)
    sizes = sorted({b for _, b in groups})
    ax.set_xticks(sizes, [str(b) for b in sizes])
    ax.set_xlabel("batch size")
    ax.set_ylabel("test accuracy (inference mode)")
    ax.set_title(
        "Claim 12c: small batches, BN against batch-independent normalisations", fontsize=10
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return ax


def plot_verdict(verdict, ax=None):
    """A verdict's evidence in one panel: each effect on its own row, one dot per seed (or
    run), its interval as a bar coloured by its outcome, and the rule's threshold as a
    vertical line."""
    ax = _axes(ax)
    for row, e in enumerate(reversed(verdict.effects)):
        i = e.interval
        colour = OUTCOME_COLOURS[e.outcome]
        finite = [v for v in (i.low, i.high) if np.isfinite(v)]
        low = i.low if np.isfinite(i.low) else min(finite + list(i.values))
        high = i.high if np.isfinite(i.high) else max(finite + list(i.values))
        ax.plot(
            [low, high],
            [row, row],
            color=colour,
            lw=6,
            alpha=0.55,
            solid_capstyle="butt",
            label=f"interval: {e.outcome}"
            if row == 0 or e.outcome != verdict.effects[len(verdict.effects) - row].outcome
            else None,
        )
        offsets = np.linspace(-0.15, 0.15, len(i.values)) if len(i.values) > 1 else [0.0]
        ax.scatter(
            i.values,
            row + np.asarray(offsets),
            s=18,
            color="black",
            zorder=3,
            label="one seed (or run)" if row == 0 else None,
        )
        ax.plot([i.estimate], [row], marker="|", ms=16, mew=2, color="black")
        ax.axvline(
            e.threshold,
            ymin=(row + 0.1) / len(verdict.effects),
            ymax=(row + 0.9) / len(verdict.effects),
            color=PALETTE["black"],
            ls="--",
            lw=1.2,
            label="the rule's threshold" if row == 0 else None,
        )
    labels = [_wrap(e.label, 46) for e in reversed(verdict.effects)]
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.set_ylim(-0.6, len(labels) - 0.4)
    ax.set_title(f"Claim {verdict.claim}: {verdict.verdict}", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    handles, names = ax.get_legend_handles_labels()
    unique = dict(zip(names, handles))
    ax.legend(unique.values(), unique.keys(), fontsize=7, loc="best")
    return ax


def plot_verdicts(verdicts, width=7.0):
    """One :func:`plot_verdict` panel per verdict, stacked in one figure whose panels are as
    tall as their number of effects; returns the list of Axes."""
    import matplotlib.pyplot as plt

    from bncourse.stats import CONFIDENCE

    verdicts = list(verdicts)
    if not verdicts:
        raise ValueError("plot_verdicts: expected at least one verdict, got none")
    rows = [max(len(v.effects), 1) for v in verdicts]
    fig, axes = plt.subplots(
        len(verdicts),
        1,
        figsize=(width, 0.9 + 0.75 * sum(rows) + 0.6 * len(verdicts)),
        layout="constrained",
        gridspec_kw={"height_ratios": rows},
        squeeze=False,
    )
    for ax, v in zip(axes[:, 0], verdicts):
        plot_verdict(v, ax=ax)
    axes[-1, 0].set_xlabel(f"effect (one dot per seed or run; bar: {CONFIDENCE:.0%} interval)")
    return list(axes[:, 0])


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


def _wrap(text, width):
    import textwrap

    return "\n".join(textwrap.wrap(text, width))


CLAIM_FIGURES = {
    "ics": ("claim01-ics", plot_ics),
    "init-scale": ("claim04-init-scale", lambda r: plot_sweep(r, "init_scale")),
    "regularisation": ("claim05-regularisation", plot_regularisation),
    "learning-rate": ("claim06-learning-rate", lambda r: plot_sweep(r, "learning_rate")),
    "bias-before-bn": ("claim08-bias", plot_bias_before_bn),
    "input-scaling": ("claim11-input-scaling", plot_input_scaling),
    "inference-stats": ("claim12-inference-stats", plot_inference_stats),
    "small-batch": ("claim12-small-batch", plot_small_batch),
}


def save_claim_figures(records, out_dir) -> list:
    """One figure per claim experiment with results (full profile preferred), and one per
    verdict (:func:`plot_verdict`), PNG and SVG."""
    import matplotlib

    matplotlib.use("Agg")
    from bncourse.experiments import verdicts

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for v in verdicts(records):
        paths += _save(plot_verdict(v), out_dir / f"verdict-claim{v.claim}")
    for name, (stem, plot) in CLAIM_FIGURES.items():
        runs = [r for r in records if r["config"]["experiment"] == name]
        profiles = {r["config"]["profile"] for r in runs}
        if not runs:
            continue
        profile = "full" if "full" in profiles else "quick"
        runs = [r for r in runs if r["config"]["profile"] == profile]
        figures = [(stem, plot)]
        if name == "bias-before-bn":
            figures.append(("claim10-gamma", plot_gamma_beta))
        for figure_stem, figure_plot in figures:
            paths += _save(figure_plot(runs), out_dir / f"{figure_stem}-{profile}")
    return paths
