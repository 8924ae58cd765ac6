"""``--threads`` (and the TOML key ``threads``) on ``bionn train`` and ``bionn compare``.

Oracles: the thread count torch reports inside the run (read by a step callback, or recorded by
the summary), the value asked for, and the suite's own count, which must be back afterwards.
"""

from __future__ import annotations

import json

import pytest
import torch

import bionn.core.resources as resources
from bionn.cli import main
from bionn.core.config import TrainConfig
from bionn.core.run import resume_config, run_training
from bionn.errors import ConfigError

FAST = ("--dataset", "digits", "--model", "mlp:32", "--no-progress")


def cli(capsys, *argv):
    """Run ``bionn *argv``; return (exit status, stdout, stderr)."""
    capsys.readouterr()
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def assert_usage_error(result):
    """Exit status 2 and one stderr line without a traceback; return the line."""
    code, out, err = result
    assert "Traceback" not in err and code == 2, (code, out, err)
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].strip(), err
    return lines[0]


def _summary(run_dir):
    return json.loads((run_dir / "summary.json").read_text())


@pytest.mark.parametrize("value", ["0", "-2", "1.5", "many"])
def test_bad_thread_counts_are_refused_in_one_line(capsys, tmp_path, value):
    line = assert_usage_error(
        cli(capsys, "train", "--rule", "bp", *FAST, "--threads", value, "--out", tmp_path / "r")
    )
    assert "--threads" in line
    with pytest.raises(ConfigError, match="--threads must be a positive integer"):
        TrainConfig(threads=0)


def test_threads_flag_and_toml_key_set_the_runs_count_and_the_summary_records_it(capsys,
                                                                                 tmp_path):
    """Asked for one thread in a process that has two: the runs use one (seen by a step
    callback and recorded in summary.json), and the process has two again afterwards. (The
    runs themselves use one thread: two threads on a busy machine are what this is about.)"""
    torch.set_num_threads(2)
    code, _, err = cli(capsys, "train", "--rule", "bp", *FAST, "--epochs", "1", "--threads",
                       "1", "--out", tmp_path / "flag")
    assert code == 0, err
    assert _summary(tmp_path / "flag")["threads"] == 1
    assert torch.get_num_threads() == 2  # put back after the run
    config = tmp_path / "c.toml"
    config.write_text("threads = 1\nepochs = 1\n")
    code, _, err = cli(capsys, "compare", "--rules", "bp", *FAST, "--config", config,
                       "--out", tmp_path / "cmp")
    assert code == 0, err
    assert _summary(tmp_path / "cmp" / "bp")["threads"] == 1
    assert torch.get_num_threads() == 2
    # resuming (on another machine, say) may change the count; nothing else may change
    assert resume_config(tmp_path / "flag", {"threads": 3, "epochs": 2}).threads == 3
    with pytest.raises(ConfigError, match="only .*threads"):
        resume_config(tmp_path / "flag", {"threads": 3, "seed": 9})


def test_without_threads_the_command_line_takes_the_default_and_the_library_keeps_its_count(
    capsys, tmp_path, monkeypatch
):
    monkeypatch.setattr(resources, "default_threads", lambda load=None: 1)
    torch.set_num_threads(2)
    code, _, err = cli(capsys, "train", "--rule", "bp", *FAST, "--epochs", "1",
                       "--out", tmp_path / "cli")
    assert code == 0, err
    assert _summary(tmp_path / "cli")["threads"] == 1  # the default, not the process's 2
    assert torch.get_num_threads() == 2
    monkeypatch.setattr(resources, "default_threads", lambda load=None: 2)
    torch.set_num_threads(1)
    seen = []
    config = TrainConfig(dataset="digits", model="mlp:32", epochs=1, out=str(tmp_path / "lib"))
    run_training(config, progress=False, plot=False,
                 callbacks=[lambda info: seen.append(torch.get_num_threads())])
    assert set(seen) == {1}  # threads=None: the library leaves the process's count alone
    assert _summary(tmp_path / "lib")["threads"] == 1


def test_a_resumed_run_keeps_its_recorded_count_unless_threads_is_given(capsys, tmp_path,
                                                                        monkeypatch):
    """The default count follows the machine's load, so a run resumed without --threads would
    otherwise pick another count than it started with, and its float reductions (and with
    them bit-identical resume) could change: it keeps the count its checkpoint recorded."""
    torch.set_num_threads(1)
    monkeypatch.setattr(resources, "default_threads", lambda load=None: 1)
    run = tmp_path / "r"
    code, _, err = cli(capsys, "train", "--rule", "bp", *FAST, "--epochs", "1", "--out", run)
    assert code == 0, err
    monkeypatch.setattr(resources, "default_threads", lambda load=None: 2)  # the load changed
    code, _, err = cli(capsys, "train", "--resume", "--out", run, "--epochs", "2",
                       "--no-progress")
    assert code == 0, err
    assert _summary(run)["threads"] == 1
    code, _, err = cli(capsys, "train", "--resume", "--out", run, "--epochs", "3",
                       "--threads", "2", "--no-progress")
    assert code == 0, err
    assert _summary(run)["threads"] == 2
