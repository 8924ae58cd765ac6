"""``bionn train --augment``, ``--robustness`` and the Ott et al. model specs on the command line.

Oracles: the run's own files (the recorded config, the robustness report), the exit status and
the one-line error of bad input.
"""

from __future__ import annotations

import json

import pytest

from bionn.cli import main

FAST = ("train", "--rule", "bp", "--dataset", "digits", "--model", "mlp:32", "--no-progress",
        "--epochs", "1")


def cli(capsys, *argv):
    capsys.readouterr()
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def test_augmented_run_records_the_option_and_reports_robustness(capsys, tmp_path):
    run = tmp_path / "run"
    code, out, err = cli(capsys, *FAST, "--augment", "shift:0.25", "--robustness", "--json",
                         "--out", run)
    assert code == 0, err
    row = json.loads(out.splitlines()[-1])
    report = json.loads((run / "robustness.json").read_text())
    assert row["robustness"] == report
    assert set(report) == {"clean", "shift_0.25", "rotation_45", "noise_0.15", "quadrant_swap"}
    assert report["clean"] == pytest.approx(row["test_accuracy"])
    assert "robustness: clean" in out
    saved = json.loads((run / "summary.json").read_text())
    assert saved["augment"] == "shift:0.25" and saved["robustness"] is True
    # the augmentation is part of the run: resuming with another one is refused
    code, _, err = cli(capsys, *FAST, "--augment", "shift:0.5", "--out", run, "--resume",
                       "--epochs", "2")
    assert code == 2 and "augment" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize(("flags", "needle"), [
    (("--augment", "shift:2"), "[0, 1)"),
    (("--augment", "blur:1"), "unknown augmentation"),
    (("--model", "fcn-ott"), "too small"),
    (("--model", "fcn-ott:vcp=1.5"), "vcp"),
])
def test_bad_augment_and_model_specs_exit_2_with_one_line(capsys, tmp_path, flags, needle):
    code, out, err = cli(capsys, *FAST, *flags, "--out", tmp_path / "run")
    assert code == 2, (out, err)
    assert "Traceback" not in err and len(err.splitlines()) == 1 and needle in err
