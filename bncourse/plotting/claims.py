"""The claims' figures: one per claim experiment, and one per verdict (the effect, its
interval and the rule's threshold); :func:`save_claim_figures` for ``bncourse report --claims``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .style import (
    PALETTE,
    _sd,
    _axes,
)
from .curves import _save

__all__ = [
    "CLAIM_FIGURES",
    "CLAIM_STYLE",
    "OUTCOME_COLOURS",
    "plot_bias_before_bn",
    "plot_gamma_beta",
    "plot_ics",
    "plot_inference_stats",
    "plot_input_scaling",
    "plot_regularisation",
    "plot_small_batch",
    "plot_sweep",
    "plot_verdict",
    "plot_verdicts",
    "save_claim_figures",
]


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
