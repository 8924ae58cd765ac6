"""Figures of the dendritic error models: each is written from records of the documented keys."""

from __future__ import annotations

from bionn.plots import plot_alignment, plot_apical_error, plot_interneuron_error
from bionn.plots.dendritic import _series


def test_series_reads_train_prefixed_and_plain_keys():
    history = [{"epoch": 1, "train_apical_norm_1": 0.5, "apical_norm_2": 0.2},
               {"epoch": 2, "train_apical_norm_1": 0.1, "apical_norm_2": None}]
    assert _series(history, "apical_norm") == {1: [(1.0, 0.5), (2.0, 0.1)], 2: [(1.0, 0.2)]}


def test_figures_are_written(tmp_path):
    history = [{"epoch": e, "train_apical_norm_1": 1.0 / e, "top_down_angle_deg_1": 80.0 - e,
                "pi_angle_deg_1": 50.0 / e, "train_interneuron_error_1": 0.5 / e}
               for e in range(1, 4)]
    for fn, name in ((plot_apical_error, "a.png"), (plot_alignment, "b.png"),
                     (plot_interneuron_error, "c.png")):
        path = fn(history, tmp_path / name)
        assert path.is_file() and path.stat().st_size > 1000
