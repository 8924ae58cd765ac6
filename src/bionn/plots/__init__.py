"""Every figure bionn draws: shared helpers in :mod:`bionn.plots.common`, and one module per
rule family (``bionn.plots.<family>``), named like the family's module in :mod:`bionn.rules`.

Figures are written with matplotlib's non-interactive Agg backend, so they work on a machine
without a screen. The names below are re-exported so ``from bionn.plots import NAME`` works for
every figure.
"""

from bionn.plots.common import plot_learning_curves
from bionn.plots.decolle import plot_local_losses, plot_spike_raster
from bionn.plots.feedback_alignment import plot_feedback_alignment
from bionn.plots.krotov_hopfield import plot_receptive_fields, plot_synapse_norms
from bionn.plots.predictive_coding import plot_class_images, plot_pc_angle, plot_pc_energy
from bionn.plots.reinforcement import (
    plot_episode_curve,
    plot_fit_recovery,
    plot_reversal_curves,
    plot_reversal_grid,
    plot_rpe_heatmap,
)

__all__ = [
    "plot_class_images",
    "plot_episode_curve",
    "plot_feedback_alignment",
    "plot_fit_recovery",
    "plot_learning_curves",
    "plot_local_losses",
    "plot_pc_angle",
    "plot_pc_energy",
    "plot_receptive_fields",
    "plot_reversal_curves",
    "plot_reversal_grid",
    "plot_rpe_heatmap",
    "plot_spike_raster",
    "plot_synapse_norms",
]
