"""The ``bionn`` command line, run in-process through :func:`bionn.cli.main`.

Oracles (the command line's documented contract, not bionn's own output):

- Bad input: exit status 2, exactly one non-empty line on stderr that says what was wrong
  (and, where the spec asks, what is allowed), and no traceback on stdout or stderr.
- A diverging run: exit status 1 and one line naming the epoch and the step.
- ``--json``: the last line of stdout is one JSON object (a list for ``compare``) with the
  keys of :data:`JSON_KEYS`; the files it names exist on disk in their real formats (a PNG
  starts with the 8-byte PNG signature).
- Expected checksums come from the data set's class data and found ones from ``hashlib``.

Happy paths train backprop on scikit-learn's digits (no download) with ``--model mlp:32`` for
one to three epochs, so the whole file runs in seconds.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bionn import __version__
from bionn.cli import main
from bionn.data.datasets import DATASETS, MNIST

JSON_KEYS = (
    "rule",
    "dataset",
    "epochs",
    "test_accuracy",
    "train_accuracy",
    "wall_time_s",
    "angle_to_backprop_deg",
    "run_dir",
)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
FAST = ("--dataset", "digits", "--model", "mlp:32", "--no-progress")
MNIST_FILES = tuple(name for name, _ in MNIST.resources)


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    """Run ``bionn *argv``; return (exit status, stdout, stderr).

    argparse reports its errors by raising SystemExit; its code is the exit status.
    """
    capsys.readouterr()  # drop anything printed before the command
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    out, err = capsys.readouterr()
    return code, out, err


def assert_usage_error(result: tuple[int, str, str]) -> str:
    """Exit status 2, one non-empty stderr line, no traceback; return that line."""
    code, out, err = result
    assert "Traceback" not in out and "Traceback" not in err, err
    assert code == 2, (code, out, err)
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].strip(), f"stderr is not one line: {err!r}"
    return lines[0]


def last_json(out: str):
    """The last line of stdout, parsed as JSON."""
    return json.loads(out.rstrip("\n").splitlines()[-1])


def train(capsys, out_dir: Path, *extra: str) -> tuple[int, str, str]:
    return cli(capsys, "train", "--rule", "bp", *FAST, "--out", out_dir, *extra)


def epochs_in(run_dir: Path) -> list[int]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["epoch"] for line in lines]


@pytest.fixture
def finished_run(capsys, tmp_path) -> Path:
    """A finished two-epoch backprop run on digits."""
    run_dir = tmp_path / "run"
    code, _, err = train(capsys, run_dir, "--epochs", 2)
    assert code == 0, err
    return run_dir


@pytest.fixture
def mnist_copy(tmp_path, data_root) -> Path:
    """A data root in tmp holding a copy of the four real MNIST files."""
    root = tmp_path / "data"
    (root / "mnist").mkdir(parents=True)
    for name in MNIST_FILES:
        shutil.copyfile(data_root / "mnist" / name, root / "mnist" / name)
    return root


def corrupt(path: Path) -> str:
    """Flip one byte in the middle of ``path``; return the file's new sha256."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    return hashlib.sha256(data).hexdigest()


# --- bad input: exit 2, one line ------------------------------------------------------------


def test_unknown_rule_lists_the_valid_ones(capsys, tmp_path):
    line = assert_usage_error(
        cli(capsys, "train", "--rule", "no-such-rule", *FAST, "--out", tmp_path / "r")
    )
    assert "no-such-rule" in line and "bp" in line
    assert not (tmp_path / "r").exists()  # nothing was started


def test_unknown_dataset_lists_the_valid_ones(capsys, tmp_path):
    line = assert_usage_error(
        cli(capsys, "train", "--rule", "bp", "--dataset", "imagenet", "--out", tmp_path / "r")
    )
    assert "imagenet" in line
    for name in ("digits", "mnist", "fashion-mnist", "cifar10"):
        assert name in line


@pytest.mark.parametrize("flag", ["--epochs", "--batch-size"])
@pytest.mark.parametrize("value", ["0", "-1"])
def test_non_positive_epochs_and_batch_size_are_refused(capsys, tmp_path, flag, value):
    line = assert_usage_error(train(capsys, tmp_path / "r", f"{flag}={value}"))
    assert flag in line and value in line


@pytest.mark.parametrize("value", ["0", "-1", "-inf", "nan", "inf", "1e400", "abc"])
def test_bad_learning_rates_are_refused(capsys, tmp_path, value):
    """``--lr=`` form: with ``--lr -inf`` argparse takes -inf for an option (see the report)."""
    line = assert_usage_error(train(capsys, tmp_path / "r", f"--lr={value}"))
    assert "--lr" in line


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "abc"])
def test_bad_clip_grad_is_refused(capsys, tmp_path, value):
    line = assert_usage_error(train(capsys, tmp_path / "r", f"--clip-grad={value}"))
    assert "--clip-grad" in line
    assert not (tmp_path / "r").exists()


def test_clip_grad_is_recorded_in_the_summary(capsys, tmp_path):
    code, _, err = train(capsys, tmp_path / "r", "--epochs", 1, "--clip-grad", "2.5")
    assert code == 0, err
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["clip_grad"] == 2.5


def test_bad_learning_rate_in_config_file_is_refused(capsys, tmp_path):
    config = tmp_path / "c.toml"
    config.write_text("lr = nan\n")
    line = assert_usage_error(train(capsys, tmp_path / "r", "--config", config))
    assert "--lr" in line and "nan" in line


def test_malformed_config_file(capsys, tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text("epochs = [\n")
    line = assert_usage_error(train(capsys, tmp_path / "r", "--config", config))
    assert "bad.toml" in line and "malformed" in line


def test_unknown_key_in_config_file_is_named(capsys, tmp_path):
    config = tmp_path / "c.toml"
    config.write_text("epochs = 1\nlearning-rat = 0.1\n")
    line = assert_usage_error(train(capsys, tmp_path / "r", "--config", config))
    assert "learning-rat" in line


def test_wrong_typed_value_in_config_file(capsys, tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('epochs = "ten"\n')
    line = assert_usage_error(
        cli(capsys, "train", "--rule", "bp", "--config", config, "--out", tmp_path / "r")
    )
    assert "epochs" in line and "ten" in line


def test_missing_config_file(capsys, tmp_path):
    line = assert_usage_error(train(capsys, tmp_path / "r", "--config", tmp_path / "none.toml"))
    assert "none.toml" in line


@pytest.mark.parametrize(
    "dataset", [d for d, c in DATASETS.items() if d != "digits" and hasattr(c, "mirrors")]
)
def test_missing_dataset_says_how_to_get_it(capsys, tmp_path, dataset):
    empty = tmp_path / "empty"
    empty.mkdir()
    line = assert_usage_error(
        cli(capsys, "train", "--rule", "bp", "--dataset", dataset, "--data-dir", empty,
            "--no-progress", "--out", tmp_path / "r")
    )
    assert "bionn data download" in line and "--download" in line
    assert str(empty) in line


def test_corrupt_data_file_is_named_with_both_checksums(capsys, tmp_path, mnist_copy):
    name = "train-labels-idx1-ubyte.gz"
    found = corrupt(mnist_copy / "mnist" / name)
    expected = dict(MNIST.resources)[name]
    line = assert_usage_error(
        cli(capsys, "train", "--rule", "bp", "--dataset", "mnist", "--data-dir", mnist_copy,
            "--model", "mlp:32", "--epochs", 1, "--no-progress", "--out", tmp_path / "r")
    )
    assert name in line and expected in line and found in line


def test_unwritable_output_folder(capsys, tmp_path):
    """Tests may run as root, where chmod changes nothing: the parent is a regular file."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder\n")
    line = assert_usage_error(train(capsys, blocker / "run", "--epochs", 1))
    assert "a-file" in line


def test_resume_without_checkpoint(capsys, tmp_path):
    run_dir = tmp_path / "never-trained"
    run_dir.mkdir()
    line = assert_usage_error(cli(capsys, "train", "--resume", "--out", run_dir, "--no-progress"))
    assert "checkpoint" in line and "never-trained" in line


def test_resume_without_out(capsys):
    line = assert_usage_error(cli(capsys, "train", "--rule", "bp", *FAST, "--resume"))
    assert "--out" in line


def test_out_folder_holding_a_run_needs_resume(capsys, finished_run):
    before = (finished_run / "checkpoint.pt").read_bytes()
    line = assert_usage_error(train(capsys, finished_run, "--epochs", 1))
    assert "--resume" in line
    assert (finished_run / "checkpoint.pt").read_bytes() == before
    assert epochs_in(finished_run) == [1, 2]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_device_without_cuda(capsys, tmp_path):
    line = assert_usage_error(train(capsys, tmp_path / "r", "--device", "cuda"))
    assert "cuda" in line.lower() and "cpu" in line


def test_compare_with_an_unknown_rule_trains_nothing(capsys, tmp_path):
    out = tmp_path / "cmp"
    line = assert_usage_error(
        cli(capsys, "compare", "--rules", "bp,no-such-rule", *FAST, "--out", out)
    )
    assert "no-such-rule" in line and "bp" in line
    assert not out.exists()


def test_compare_with_a_repeated_rule_trains_nothing(capsys, tmp_path):
    out = tmp_path / "cmp"
    line = assert_usage_error(cli(capsys, "compare", "--rules", "bp,bp", *FAST, "--out", out))
    assert "bp" in line and "more than once" in line
    assert not out.exists()


@pytest.mark.parametrize(
    "toml, needle",
    [("out = 5\n", "--out"), ("data_dir = 5\n", "--data-dir"), ('download = "no"\n', "download"),
     ("seed = 1180591620717411303424\n", "--seed")],
)
def test_wrong_typed_config_values(capsys, tmp_path, toml, needle):
    config = tmp_path / "c.toml"
    config.write_text(toml)
    line = assert_usage_error(cli(capsys, "train", *FAST, "--config", config))
    assert needle in line


@pytest.mark.parametrize("device", ["cuda:abc", "cudafoo"])
def test_malformed_device(capsys, tmp_path, device):
    line = assert_usage_error(train(capsys, tmp_path / "r", "--device", device))
    assert device in line


def test_bad_dataset_leaves_no_run_folder(capsys, tmp_path):
    out = tmp_path / "left"
    assert_usage_error(train(capsys, out, "--dataset", "nope"))
    assert not out.exists()


def test_compare_with_missing_data_leaves_no_folder(capsys, tmp_path):
    out = tmp_path / "cmp"
    empty = tmp_path / "no-data"
    empty.mkdir()
    line = assert_usage_error(cli(capsys, "compare", "--rules", "bp", "--dataset", "mnist",
                                  "--data-dir", empty, "--no-progress", "--out", out))
    assert "bionn data download" in line
    assert not out.exists()


def test_compare_with_empty_rules(capsys, tmp_path):
    line = assert_usage_error(cli(capsys, "compare", "--rules", ",", *FAST, "--out", tmp_path))
    assert "--rules" in line


def test_unknown_command(capsys):
    line = assert_usage_error(cli(capsys, "fly"))
    assert "fly" in line


# --- train --------------------------------------------------------------------------------


def test_train_json_reports_the_run_and_writes_its_files(capsys, tmp_path):
    run_dir = tmp_path / "run"
    code, out, err = train(capsys, run_dir, "--epochs", 2, "--json")
    assert code == 0, err
    row = last_json(out)
    assert isinstance(row, dict)
    assert set(JSON_KEYS) <= set(row)
    assert row["rule"] == "bp" and row["dataset"] == "digits" and row["epochs"] == 2
    assert 0.0 <= row["test_accuracy"] <= 1.0 and 0.0 <= row["train_accuracy"] <= 1.0
    # Backprop's update is the backprop gradient: the angle is zero up to rounding.
    assert 0.0 <= row["angle_to_backprop_deg"] < 1e-2
    assert math.isfinite(row["wall_time_s"]) and row["wall_time_s"] > 0
    assert Path(row["run_dir"]) == run_dir
    for name in ("metrics.jsonl", "summary.json", "checkpoint.pt", "curves.png"):
        assert (run_dir / name).is_file(), name
    assert (run_dir / "curves.png").read_bytes()[:8] == PNG_SIGNATURE
    assert epochs_in(run_dir) == [1, 2]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["test_accuracy"] == row["test_accuracy"]


@pytest.mark.parametrize("key", ["batch-size", "batch_size"])
def test_config_file_is_read_and_flags_override_it(capsys, tmp_path, key):
    config = tmp_path / "run.toml"
    config.write_text(
        f'rule = "bp"\ndataset = "digits"\nmodel = "mlp:32"\nepochs = 3\n{key} = 50\n'
    )
    run_dir = tmp_path / "run"
    code, out, err = cli(
        capsys, "train", "--config", config, "--epochs", 1, "--no-progress", "--out", run_dir,
        "--json",
    )
    assert code == 0, err
    assert last_json(out)["epochs"] == 1
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["epochs"] == 1 and summary["batch_size"] == 50
    assert summary["model"] == "mlp:32"
    assert epochs_in(run_dir) == [1]


def test_resume_extends_a_finished_run(capsys, finished_run):
    """The two finished epochs are kept as they were; a third, as long as they, is added."""
    before = (finished_run / "metrics.jsonl").read_text().splitlines()
    weights = torch.load(finished_run / "checkpoint.pt", weights_only=True)["model"]
    code, out, err = cli(
        capsys, "train", "--resume", "--out", finished_run, "--epochs", 3, "--no-progress",
        "--json",
    )
    assert code == 0, err
    # the default cosine schedule ended at lr 0; the extended run must learn again
    resumed = torch.load(finished_run / "checkpoint.pt", weights_only=True)["model"]
    assert not torch.equal(weights["linears.0.weight"], resumed["linears.0.weight"])
    assert last_json(out)["epochs"] == 3
    after = (finished_run / "metrics.jsonl").read_text().splitlines()
    assert after[:2] == before
    steps = [json.loads(line)["step"] for line in after]
    assert [json.loads(line)["epoch"] for line in after] == [1, 2, 3]
    assert steps[2] - steps[1] == steps[1] - steps[0] > 0
    assert json.loads((finished_run / "summary.json").read_text())["epochs"] == 3


def test_resume_with_a_changed_model_is_refused(capsys, finished_run):
    before = (finished_run / "checkpoint.pt").read_bytes()
    line = assert_usage_error(
        cli(capsys, "train", "--resume", "--out", finished_run, "--model", "mlp:16",
            "--epochs", 3, "--no-progress")
    )
    assert "model" in line and "mlp:16" in line
    assert (finished_run / "checkpoint.pt").read_bytes() == before


def test_diverging_run_exits_1_naming_epoch_and_step(capsys, tmp_path):
    """SGD with lr 1e30 on digits makes the loss non-finite within the first epoch."""
    code, out, err = train(capsys, tmp_path / "r", "--optimizer", "sgd", "--lr", "1e30",
                           "--epochs", 2)
    assert "Traceback" not in out and "Traceback" not in err
    assert code == 1, (code, err)
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert re.search(r"epoch 1, step \d+", lines[0]), lines[0]


# --- compare, rules, data -----------------------------------------------------------------


def test_compare_json_table_and_files(capsys, tmp_path):
    out_dir = tmp_path / "cmp"
    code, out, err = cli(
        capsys, "compare", "--rules", "bp", *FAST, "--epochs", 2, "--out", out_dir, "--json"
    )
    assert code == 0, err
    rows = last_json(out)
    assert isinstance(rows, list) and len(rows) == 1
    assert set(JSON_KEYS) <= set(rows[0])
    assert rows[0]["rule"] == "bp" and rows[0]["epochs"] == 2
    assert (out_dir / "compare.png").read_bytes()[:8] == PNG_SIGNATURE
    saved = json.loads((out_dir / "compare.json").read_text())
    assert [s["rule"] for s in saved] == ["bp"]
    header = [line for line in out.splitlines() if line.startswith("rule")]
    assert len(header) == 1 and "test acc" in header[0]


def test_rules_json(capsys):
    code, out, _ = cli(capsys, "rules", "--json")
    assert code == 0
    rows = json.loads(out)
    assert isinstance(rows, list)
    for row in rows:
        assert {"name", "description", "paper", "supervised"} <= set(row)
    bp = next(row for row in rows if row["name"] == "bp")
    assert bp["supervised"] is True


def test_rules_table_names_bp(capsys):
    code, out, _ = cli(capsys, "rules")
    assert code == 0
    assert any(line.split()[:1] == ["bp"] for line in out.splitlines())


def test_version(capsys):
    code, out, _ = cli(capsys, "--version")
    assert code == 0 and out.strip() == f"bionn {__version__}"


def test_data_verify_real_mnist(capsys, data_root):
    code, out, err = cli(capsys, "data", "verify", "mnist", "--data-dir", data_root)
    assert code == 0, out + err
    ok = [line for line in out.splitlines() if line.startswith("ok")]
    assert len(ok) == 4
    assert {line.rsplit("/", 1)[-1] for line in ok} == set(MNIST_FILES)


def test_data_verify_names_a_corrupt_file(capsys, mnist_copy):
    name = "t10k-labels-idx1-ubyte.gz"
    found = corrupt(mnist_copy / "mnist" / name)
    result = cli(capsys, "data", "verify", "mnist", "--data-dir", mnist_copy)
    assert_usage_error(result)
    out = result[1]
    bad = [line for line in out.splitlines() if not line.startswith("ok")]
    assert len(bad) == 1
    assert name in bad[0] and found in bad[0] and dict(MNIST.resources)[name] in bad[0]
    assert sum(line.startswith("ok") for line in out.splitlines()) == 3


def test_data_download_keeps_verified_files(capsys, mnist_copy):
    """All files present and correct: nothing is fetched (no network needed), each is ok."""
    code, out, err = cli(capsys, "data", "download", "mnist", "--data-dir", mnist_copy)
    assert code == 0, err
    assert sum(line.startswith("ok") for line in out.splitlines()) == 4


def test_python_m_bionn_help():
    proc = subprocess.run(
        [sys.executable, "-m", "bionn", "--help"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    for command in ("rules", "train", "compare", "data"):
        assert command in proc.stdout


def test_config_file_may_switch_on_json_and_no_progress(capsys, tmp_path):
    """The spec: a TOML config may hold any flag, the on/off switches included."""
    config = tmp_path / "c.toml"
    config.write_text('dataset = "digits"\nmodel = "mlp:32"\nepochs = 1\njson = true\n'
                      'no-progress = true\n')
    code, out, err = cli(capsys, "train", "--config", config, "--out", tmp_path / "r")
    assert code == 0, err
    assert last_json(out)["epochs"] == 1
    assert "it/s" not in err  # no progress bar


def test_config_switch_must_be_a_boolean(capsys, tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('json = "yes"\n')
    line = assert_usage_error(cli(capsys, "train", *FAST, "--config", config))
    assert "json" in line and "true or false" in line


def test_resume_accepts_the_default_learning_rate_spelled_out(capsys, finished_run):
    """The run was saved with lr unset (Adam's default 1e-3); --lr 0.001 is the same run."""
    code, out, err = cli(capsys, "train", "--resume", "--out", finished_run, "--epochs", 3,
                         "--lr", "0.001", "--no-progress")
    assert code == 0, err
    assert epochs_in(finished_run) == [1, 2, 3]
    line = assert_usage_error(cli(capsys, "train", "--resume", "--out", finished_run,
                                  "--epochs", 4, "--lr", "0.01", "--no-progress"))
    assert "lr" in line
