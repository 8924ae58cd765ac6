"""``bionn rl`` and ``bionn rl fit``: run folder, checkpoint, bit-identical resume, bad input."""

import json

import pytest
import torch

from bionn.cli import main
from bionn.rl.fit import simulate_choices, write_choices_csv


def _run(tmp_path, capsys, *args):
    code = main(["rl", *args, "--no-progress"])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_rl_run_writes_its_folder_and_resumes_bit_identically(tmp_path, capsys):
    whole, part = tmp_path / "whole", tmp_path / "part"
    base = ["--agent", "actor-critic", "--task", "maze", "--experiments", "4", "--seed", "3"]
    code, out, _ = _run(tmp_path, capsys, *base, "--episodes", "6", "--out", str(whole),
                        "--json")
    assert code == 0
    row = json.loads(out.strip().splitlines()[-1])
    assert row["episodes"] == 6 and row["agent"] == "actor-critic"
    for name in ("metrics.jsonl", "summary.json", "checkpoint.pt", "episodes.png"):
        assert (whole / name).is_file()
    state = torch.load(whole / "checkpoint.pt", weights_only=True)
    assert state["episode"] == 6
    assert _run(tmp_path, capsys, *base, "--episodes", "3", "--out", str(part))[0] == 0
    assert _run(tmp_path, capsys, "--episodes", "6", "--out", str(part), "--resume")[0] == 0
    a = torch.load(whole / "checkpoint.pt", weights_only=True)
    b = torch.load(part / "checkpoint.pt", weights_only=True)
    for key in a["agent"]:
        assert torch.equal(a["agent"][key], b["agent"][key]), key
    lines = (part / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 6
    strip = [{k: v for k, v in json.loads(x).items() if k != "wall_time_s"} for x in lines]
    assert strip == [{k: v for k, v in json.loads(x).items() if k != "wall_time_s"}
                     for x in (whole / "metrics.jsonl").read_text().splitlines()]


def test_rl_draws_the_reversal_curve_and_the_rpe_map(tmp_path, capsys):
    assert _run(tmp_path, capsys, "--agent", "two-timescale", "--task", "reversal:60/40",
                "--episodes", "2", "--experiments", "20", "--out", str(tmp_path / "a"))[0] == 0
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert len(summary["reversal_curve"]["p_better"]) == 40
    assert (tmp_path / "a" / "reversal.png").is_file()
    assert _run(tmp_path, capsys, "--agent", "td", "--task", "conditioning:0.2",
                "--episodes", "5", "--out", str(tmp_path / "b"))[0] == 0
    assert (tmp_path / "b" / "rpe.png").is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--agent", "td", "--task", "maze"], "does not run task maze"),
        (["--agent", "rw", "--task", "reversal:20/80"], "schedule"),
        (["--agent", "rw", "--task", "bandit"], "unknown task"),
        (["--agent", "q", "--task", "maze"], "unknown agent"),
        (["--agent", "rw", "--task", "reversal", "--lr", "0.1"], "--lr does not apply"),
        (["--agent", "rw", "--task", "reversal", "--alpha-pos", "2"], "alpha_pos"),
        (["--agent", "rw", "--task", "reversal", "--episodes", "0"], "--episodes"),
        (["--task", "maze"], "needs --agent"),
        (["--resume"], "--resume needs --out"),
    ],
)
def test_rl_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, message):
    code, _, err = _run(tmp_path, capsys, *args, "--out", str(tmp_path / "x")) if (
        "--resume" not in args) else _run(tmp_path, capsys, *args)
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1


def test_rl_resume_refuses_a_changed_run(tmp_path, capsys):
    out = str(tmp_path / "r")
    assert _run(tmp_path, capsys, "--agent", "rw", "--task", "reversal", "--episodes", "1",
                "--out", out)[0] == 0
    code, _, err = _run(tmp_path, capsys, "--agent", "rw", "--task", "reversal", "--episodes",
                        "1", "--out", out)
    assert code == 2 and "already holds a run" in err
    code, _, err = _run(tmp_path, capsys, "--task", "reversal:60/40", "--out", out, "--resume")
    assert code == 2 and "task was" in err


def test_rl_fit_reads_a_choice_file(tmp_path, capsys):
    params = {"alpha_pos": torch.tensor([0.6, 0.3]), "alpha_neg": torch.tensor([0.3, 0.5]),
              "beta": torch.tensor([6.0, 4.0])}
    data, _ = simulate_choices("rw", params, "80/20", n_blocks=2, seed=0)
    path = write_choices_csv(data, tmp_path / "c.csv")
    code, out, _ = _run(tmp_path, capsys, "fit", str(path), "--json",
                        "--out", str(tmp_path / "fit.json"))
    assert code == 0
    fits = json.loads(out.strip().splitlines()[-1])["fits"]
    assert [f["subject"] for f in fits] == ["s0", "s1"]
    assert json.loads((tmp_path / "fit.json").read_text())["model"] == "rw"


def test_rl_fit_bad_rows_are_named(tmp_path, capsys):
    path = tmp_path / "bad.csv"
    path.write_text("subject,block,trial,choice,reward\na,0,1,0,1\na,0,2,left,1\n")
    code, _, err = _run(tmp_path, capsys, "fit", str(path))
    assert code == 2 and "line 3" in err and len(err.strip().splitlines()) == 1
    code, _, err = _run(tmp_path, capsys, "fit", str(path), "--model", "td")
    assert code == 2 and "--model" in err


def test_a_noisy_amygdala_resumes_bit_identically(tmp_path, capsys):
    # the amygdala's noise draws from the run's generator, which the checkpoint holds
    whole, part = tmp_path / "whole", tmp_path / "part"
    base = ["--agent", "two-timescale", "--task", "reversal:70/30", "--noise-fast", "0.5",
            "--experiments", "6", "--seed", "4"]
    assert _run(tmp_path, capsys, *base, "--episodes", "4", "--out", str(whole))[0] == 0
    assert _run(tmp_path, capsys, *base, "--episodes", "2", "--out", str(part))[0] == 0
    assert _run(tmp_path, capsys, "--episodes", "4", "--out", str(part), "--resume")[0] == 0
    a = torch.load(whole / "checkpoint.pt", weights_only=True)
    b = torch.load(part / "checkpoint.pt", weights_only=True)
    for key in ("Q_fast", "Q_slow", "noise_fast"):
        assert torch.equal(a["agent"][key], b["agent"][key]), key
    assert torch.equal(a["generator"], b["generator"])
    noiseless = tmp_path / "noiseless"
    args = [x if x != "0.5" else "0" for x in base]
    assert _run(tmp_path, capsys, *args, "--episodes", "4", "--out", str(noiseless))[0] == 0
    c = torch.load(noiseless / "checkpoint.pt", weights_only=True)
    assert not torch.equal(a["agent"]["Q_fast"], c["agent"]["Q_fast"])  # the noise acts
