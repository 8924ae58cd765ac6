"""Hostile input, one test per class: every bad input is one line on stderr and exit status 2
(a diverged run: exit 1), every damaged file is named, and no message advises loading a file
in a way that could run its code.

Oracle: the documented contract (README, "Bad input"); each message is checked for the fact
it must name, and files that are refused are checked to be left byte for byte as they were.
"""

from __future__ import annotations

import collections
import os
import pickle
from pathlib import Path

import pytest
import torch

from bionn.cli import main
from bionn.core.checkpoint import load_checkpoint

TINY = ["--dataset", "digits", "--model", "mlp:16", "--batch-size", "300", "--no-progress"]


def bionn(capsys, *argv):
    """``bionn argv`` in-process: (exit status, stdout, stderr lines)."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err.strip().splitlines()


def refused(capsys, *argv, needle, status=2):
    code, out, err = bionn(capsys, *argv)
    assert code == status, (code, out, err)
    assert len(err) == 1, err
    assert needle in err[0], err[0]
    assert "Traceback" not in err[0] and "weights_only" not in err[0]
    return err[0]


@pytest.fixture(scope="module")
def good_run(tmp_path_factory):
    """A finished 2-epoch run on digits."""
    out = tmp_path_factory.mktemp("good") / "run"
    assert main(["train", *TINY, "--epochs", "2", "--out", str(out)]) == 0
    return out


def copy_run(good_run: Path, dest: Path, checkpoint: bytes | object | None = None) -> Path:
    dest.mkdir()
    for f in good_run.iterdir():
        (dest / f.name).write_bytes(f.read_bytes())
    if isinstance(checkpoint, bytes):
        (dest / "checkpoint.pt").write_bytes(checkpoint)
    elif checkpoint is not None:
        torch.save(checkpoint, dest / "checkpoint.pt")
    return dest


# -- config files ---------------------------------------------------------------------------

@pytest.mark.parametrize(
    "content", [bytes(range(128, 256)), 'model = "caf\xe9"\n'.encode("latin-1")]
)
def test_config_that_is_not_utf8_is_refused(capsys, tmp_path, content):
    path = tmp_path / "run.toml"
    path.write_bytes(content)
    refused(capsys, "train", *TINY, "--out", tmp_path / "r", "--config", path, needle="not UTF-8")


def test_huge_config_is_refused_without_reading_it_all(capsys, tmp_path):
    big = tmp_path / "big.toml"
    big.write_bytes(b"# " + b"x" * (2 << 20) + b"\n")
    refused(capsys, "train", *TINY, "--out", tmp_path / "r", "--config", big,
            needle="larger than 1 MiB")
    if Path("/dev/zero").exists():  # endless: read only up to the limit
        refused(capsys, "train", *TINY, "--out", tmp_path / "r", "--config", "/dev/zero",
                needle="larger than 1 MiB")


# -- output folders -------------------------------------------------------------------------

def test_out_name_longer_than_the_file_system_allows(capsys, tmp_path):
    refused(capsys, "train", *TINY, "--out", tmp_path / ("a" * 300), needle="File name too long")


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc")
def test_out_folder_that_exists_but_takes_no_files(capsys):
    line = refused(capsys, "train", *TINY, "--out", "/proc", needle="it exists")
    assert "/proc" in line


# -- memory -----------------------------------------------------------------------------------

@pytest.mark.parametrize("model", ["mlp:1000000000000", "mlp:" + ",".join(["1000000"] * 30000)])
def test_network_too_large_for_memory_is_refused_before_allocating(capsys, tmp_path, model):
    line = refused(capsys, "train", *TINY[:2], "--model", model, "--out", tmp_path / "r",
                   needle="of memory")
    assert "needs" in line and "available" in line
    assert not (tmp_path / "r").exists()


def test_allocation_failure_of_a_rule_built_network_is_one_line(capsys, tmp_path):
    line = refused(capsys, "train", "--rule", "krotov", "--dataset", "digits", "--hidden",
                   10**12, "--no-progress", "--out", tmp_path / "r", needle="out of memory")
    assert "TiB" in line and "available" in line


@pytest.mark.parametrize("rule", ["snn-bptt", "decolle"])
def test_timesteps_that_cannot_fit_are_refused(capsys, tmp_path, rule):
    line = refused(capsys, "train", "--rule", rule, "--dataset", "digits", "--timesteps",
                   10**9, "--no-progress", "--out", tmp_path / "r", needle="--timesteps")
    assert "needs" in line and "available" in line


# -- checkpoints ------------------------------------------------------------------------------

class Payload:
    """An object a weights-only load refuses (a malicious file would hold code instead)."""


def _foreign(good):
    state = load_checkpoint(good / "checkpoint.pt")
    wrong_shape = dict(state)
    wrong_shape["model"] = {k: torch.zeros(3, 3) for k in state["model"]}
    raw = (good / "checkpoint.pt").read_bytes()
    return {
        "bare state_dict": (state["model"], "it looks like a bare model state_dict"),
        "list": ([1, 2, 3], "it holds a list"),
        "no config": ({k: v for k, v in state.items() if k != "config"}, "no 'config'"),
        "no optimizer": ({k: v for k, v in state.items() if k != "optimizer"},
                         "no 'optimizer'"),
        "epoch not an int": ({**state, "epoch": "three"}, "'epoch' is a str"),
        "wrong shape": (wrong_shape, "linears.0.weight has shape (3, 3)"),
        "pickled object": ({"a": Payload()}, "bionn never unpickles code"),
        "plain pickle": (pickle.dumps(collections.OrderedDict(a=1)),
                         "bionn never unpickles code"),
        "random bytes": (os.urandom(600), "not a bionn checkpoint, or damaged"),
        "truncated": (raw[: len(raw) // 2], "truncated or damaged"),
        "zero bytes": (b"", "truncated or damaged"),
    }


@pytest.mark.parametrize("case", [
    "bare state_dict", "list", "no config", "no optimizer", "epoch not an int", "wrong shape",
    "pickled object", "plain pickle", "random bytes", "truncated", "zero bytes",
])
def test_foreign_or_damaged_checkpoint_is_refused_in_one_line(capsys, tmp_path, good_run, case):
    obj, needle = _foreign(good_run)[case]
    run = copy_run(good_run, tmp_path / "run", obj)
    before = (run / "checkpoint.pt").read_bytes()
    line = refused(capsys, "train", "--resume", "--out", run, "--epochs", 3, "--no-progress",
                   needle=needle)
    assert str(run / "checkpoint.pt") in line
    assert (run / "checkpoint.pt").read_bytes() == before


def test_checkpoint_with_nan_weights_is_not_called_good(capsys, tmp_path, good_run):
    state = load_checkpoint(good_run / "checkpoint.pt")
    state["model"] = {k: v * float("nan") for k, v in state["model"].items()}
    run = copy_run(good_run, tmp_path / "run", state)
    line = refused(capsys, "train", "--resume", "--out", run, "--epochs", 3, "--no-progress",
                   needle="non-finite weights")
    assert "last good" not in line


def test_resume_with_fewer_epochs_than_done_is_refused(capsys, tmp_path, good_run):
    run = copy_run(good_run, tmp_path / "run")
    summary = (run / "summary.json").read_bytes()
    refused(capsys, "train", "--resume", "--out", run, "--epochs", 1, "--no-progress",
            needle="below the 2 epochs")
    assert (run / "summary.json").read_bytes() == summary


# -- data files -------------------------------------------------------------------------------

def test_data_dir_that_is_a_file(capsys, tmp_path):
    root = tmp_path / "afile"
    root.write_text("")
    line = refused(capsys, "train", "--dataset", "mnist", "--data-dir", root, "--no-progress",
                   "--out", tmp_path / "r", needle="is not a folder")
    assert "download" not in line.split("is not a folder")[0]


@pytest.mark.parametrize("kind", ["directory", "device"])
def test_data_file_that_is_not_a_regular_file(capsys, tmp_path, kind):
    folder = tmp_path / "data" / "mnist"
    folder.mkdir(parents=True)
    target = folder / "train-images-idx3-ubyte.gz"
    if kind == "directory":
        target.mkdir()
    else:
        if not Path("/dev/null").exists():
            pytest.skip("needs /dev/null")
        target.symlink_to("/dev/null")
    line = refused(capsys, "train", "--dataset", "mnist", "--data-dir", tmp_path / "data",
                   "--no-progress", "--out", tmp_path / "r", needle="not a regular file")
    assert str(target) in line
    code, out, err = bionn(capsys, "data", "verify", "mnist", "--data-dir", tmp_path / "data")
    assert code == 2 and len(err) == 1
    assert f"not a regular file  {target}" in out


# -- silent surprises -------------------------------------------------------------------------

def test_train_without_rule_says_it_trains_backprop(capsys, tmp_path):
    code, out, err = bionn(capsys, "train", *TINY, "--epochs", 1, "--out", tmp_path / "r")
    assert code == 0 and err == []
    assert out.splitlines()[0] == "no --rule given: training bp (backprop), the default"
    from bionn.cli import build_parser

    text = build_parser()._subparsers._group_actions[0].choices["train"].format_help()
    assert "bp (backprop) is trained" in " ".join(text.split())


def test_krotov_summary_names_the_network_it_trained(capsys, tmp_path):
    import json

    code, out, err = bionn(capsys, "train", "--rule", "krotov", "--dataset", "digits",
                           "--hidden", 20, "--unsupervised-epochs", 1, "--epochs", 1,
                           "--kernel", "torch",
                           "--no-progress", "--out", tmp_path / "k")
    assert code == 0, err
    assert json.loads((tmp_path / "k" / "summary.json").read_text())["model"] == (
        "64-20-10 competing hidden units")


def test_krotov_with_a_huge_rate_stops_as_diverged_keeping_the_last_checkpoint(capsys, tmp_path):
    line = refused(capsys, "train", "--rule", "krotov", "--dataset", "digits", "--hidden", 20,
                   "--unsupervised-epochs", 1, "--epochs", 2, "--lr", 1e30, "--no-progress",
                   "--out", tmp_path / "k", needle="weights diverged at epoch 2", status=1)
    assert "epoch 1) is kept" in line
    state = load_checkpoint(tmp_path / "k" / "checkpoint.pt")
    assert state["epoch"] == 1
    assert all(torch.isfinite(v).all() and v.abs().max() < 1e10 for v in state["model"].values())


def test_detach_reset_is_a_switch_of_snn_bptt(capsys, tmp_path):
    from bionn.cli import build_parser

    args = build_parser().parse_args(["train", "--rule", "snn-bptt", "--detach-reset"])
    assert args.opt__detach_reset == "true"
    args = build_parser().parse_args(["train", "--rule", "snn-bptt", "--detach-reset", "no"])
    assert args.opt__detach_reset == "no"
    refused(capsys, "train", "--rule", "decolle", "--detach-reset", "--out", tmp_path / "r",
            "--no-progress", needle="--detach-reset does not apply to rule 'decolle'")


@pytest.mark.parametrize("model", ["cnn", "mlp:500,500"])
def test_krotov_refuses_a_model_other_than_its_own(capsys, tmp_path, model):
    line = refused(capsys, "train", "--rule", "krotov", "--dataset", "digits", "--model", model,
                   "--hidden", 10, "--no-progress", "--out", tmp_path / "r", needle="--model")
    assert "its own network" in line and model in line
