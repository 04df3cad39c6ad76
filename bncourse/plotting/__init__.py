"""Figures from saved results. Each function takes result records and returns an Axes.

Colours and line styles are the same in every figure: one colour per BN variant (no BN in
grey, BN before the activation in blue, after it in orange); training curves dashed,
validation curves solid; bands are ±1 standard deviation over seeds.

The figures live in three modules: :mod:`.style` (the palette and what every figure
shares), :mod:`.curves` (the tutorials' figures) and :mod:`.claims` (the claims' and the
verdicts' figures); everything is imported from here.
"""

from .claims import (
    CLAIM_FIGURES,
    CLAIM_STYLE,
    OUTCOME_COLOURS,
    plot_bias_before_bn,
    plot_gamma_beta,
    plot_ics,
    plot_inference_stats,
    plot_input_scaling,
    plot_regularisation,
    plot_small_batch,
    plot_sweep,
    plot_verdict,
    plot_verdicts,
    save_claim_figures,
)
from .curves import (
    plot_accuracy_by_epoch,
    plot_epoch_seconds,
    plot_learning_curves,
    plot_test_accuracy,
    save_report_figures,
)
from .style import PALETTE, VARIANT_STYLE

__all__ = [
    "CLAIM_FIGURES",
    "CLAIM_STYLE",
    "OUTCOME_COLOURS",
    "PALETTE",
    "VARIANT_STYLE",
    "plot_accuracy_by_epoch",
    "plot_bias_before_bn",
    "plot_epoch_seconds",
    "plot_gamma_beta",
    "plot_ics",
    "plot_inference_stats",
    "plot_input_scaling",
    "plot_learning_curves",
    "plot_regularisation",
    "plot_small_batch",
    "plot_sweep",
    "plot_test_accuracy",
    "plot_verdict",
    "plot_verdicts",
    "save_claim_figures",
    "save_report_figures",
]
