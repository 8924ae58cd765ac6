"""Every figure bionn draws: shared helpers in :mod:`bionn.plots.common`, and one module per
rule family (``bionn.plots.<family>``), named like the family's module in :mod:`bionn.rules`.

Figures are written with matplotlib's non-interactive Agg backend, so they work on a machine
without a screen. The names below are re-exported so ``from bionn.plots import NAME`` works for
every figure.
"""

from bionn.plots.common import plot_angles_per_layer, plot_learning_curves
from bionn.plots.contrastive import (
    plot_contrastive_angle,
    plot_contrastive_energy,
    plot_ep_estimate_error,
)
from bionn.plots.decolle import plot_local_losses, plot_spike_raster
from bionn.plots.dendritic import plot_alignment, plot_apical_error, plot_interneuron_error
from bionn.plots.eprop import (
    plot_eprop_angle,
    plot_eprop_learning_curves,
    plot_memory_vs_length,
    plot_rsnn_raster,
)
from bionn.plots.feedback_alignment import plot_feedback_alignment
from bionn.plots.free_convolution import (
    plot_accuracy_vs_shift,
    plot_neighbouring_kernels,
    plot_sharing_over_training,
)
from bionn.plots.krotov_hopfield import plot_receptive_fields, plot_synapse_norms
from bionn.plots.predictive_coding import plot_class_images, plot_pc_angle, plot_pc_energy
from bionn.plots.reinforcement import (
    plot_episode_curve,
    plot_fit_recovery,
    plot_reversal_curves,
    plot_reversal_grid,
    plot_reward_against_w,
    plot_rpe_heatmap,
)
from bionn.plots.reproduce import plot_claims
from bionn.plots.temporal_credit import (
    plot_cost_per_step,
    plot_credit_horizon,
    plot_learning_curves_side_by_side,
    plot_sequence_outputs,
)

__all__ = [
    "plot_accuracy_vs_shift",
    "plot_alignment",
    "plot_angles_per_layer",
    "plot_apical_error",
    "plot_claims",
    "plot_class_images",
    "plot_contrastive_angle",
    "plot_contrastive_energy",
    "plot_cost_per_step",
    "plot_credit_horizon",
    "plot_ep_estimate_error",
    "plot_episode_curve",
    "plot_eprop_angle",
    "plot_eprop_learning_curves",
    "plot_feedback_alignment",
    "plot_fit_recovery",
    "plot_interneuron_error",
    "plot_learning_curves",
    "plot_learning_curves_side_by_side",
    "plot_local_losses",
    "plot_memory_vs_length",
    "plot_neighbouring_kernels",
    "plot_pc_angle",
    "plot_pc_energy",
    "plot_receptive_fields",
    "plot_reversal_curves",
    "plot_reversal_grid",
    "plot_reward_against_w",
    "plot_rpe_heatmap",
    "plot_rsnn_raster",
    "plot_sequence_outputs",
    "plot_sharing_over_training",
    "plot_spike_raster",
    "plot_synapse_norms",
]
