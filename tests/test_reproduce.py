"""``bionn reproduce``: the paper table, ``--list``, ``--json`` and one tiny profile end to end.

Oracles:

- The verdict: a hand-written table of (ours, paper, direction, tolerance) -> verdict, worked
  out from the rule in words (meets on the right side of the paper's number, within tolerance
  up to ``tolerance`` on the wrong side, below beyond it; ``close``: within the tolerance
  either side), never from bionn's own output.
- The registry: every family of the reading list that has landed has an entry, each with a
  quick and a full profile whose runs are valid configs of registered rules, agents and data
  sets, and whose docs page exists.
- The end-to-end run: a paper registered here (digits, backprop and feedback alignment for one
  epoch) through ``bionn reproduce --json``; its numbers are recomputed from the sub-runs'
  own ``summary.json`` files and the verdicts from the rule above.
- ``train_size``: the run trains on exactly that many examples (the steps in an epoch).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bionn.cli import main
from bionn.core.config import TrainConfig
from bionn.core.registry import make_rule, rule_names
from bionn.core.run import run_training
from bionn.errors import ConfigError
from bionn.reproduce import (
    PROFILES,
    Claim,
    Paper,
    Profile,
    Run,
    all_papers,
    get_paper,
    register_paper,
    unregister_paper,
    verdict,
)

ROOT = Path(__file__).resolve().parents[1]
LANDED = {  # paper -> the family's docs page
    "feedback-alignment": "feedback_alignment",
    "predictive-coding": "predictive_coding",
    "krotov": "krotov_hopfield",
    "decolle": "decolle",
    "equilibrium-propagation": "contrastive",
    "temporal-credit": "temporal_credit",
    "free-convolution": "free_convolution",
    "dopamine": "reinforcement",
    "dendritic": "dendritic",
}


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


# -- the verdict ---------------------------------------------------------------------------------

VERDICT_CASES = [
    # ours, paper, direction, tolerance, expected
    (1.9, 2.1, "lower", 0.5, "meets"),
    (2.1, 2.1, "lower", 0.5, "meets"),
    (2.5, 2.1, "lower", 0.5, "within tolerance"),
    (2.7, 2.1, "lower", 0.5, "below"),
    (98.0, 97.0, "higher", 2.0, "meets"),
    (95.5, 97.0, "higher", 2.0, "within tolerance"),
    (94.0, 97.0, "higher", 2.0, "below"),
    (0.0, 0.0, "higher", 0.0, "meets"),
    (-0.01, 0.0, "higher", 0.0, "below"),
    (0.805, 0.8007, "close", 0.01, "meets"),
    (0.795, 0.8007, "close", 0.01, "meets"),
    (0.78, 0.8007, "close", 0.01, "below"),
    (0.83, 0.8007, "close", 0.01, "below"),
    (None, 1.0, "lower", 0.5, "not measured"),
    (float("nan"), 1.0, "higher", 0.5, "not measured"),
]


@pytest.mark.parametrize(("ours", "paper", "direction", "tol", "expected"), VERDICT_CASES)
def test_verdict_against_a_hand_written_table(ours, paper, direction, tol, expected):
    claim = Claim("k", "q", paper, "src", direction, tol)
    assert verdict(ours, claim) == expected


def test_claim_refuses_a_bad_direction_or_tolerance():
    with pytest.raises(ConfigError, match="direction"):
        Claim("k", "q", 1.0, "src", "sideways")
    with pytest.raises(ConfigError, match="tolerance"):
        Claim("k", "q", 1.0, "src", "lower", -1.0)


# -- the registry -------------------------------------------------------------------------------

def test_every_landed_paper_has_an_entry_with_both_profiles():
    papers = all_papers()
    assert set(LANDED) <= set(papers)
    for name, family in LANDED.items():
        paper = papers[name]
        assert paper.family == family
        assert (ROOT / "docs" / "rules" / f"{family}.md").is_file()
        assert set(PROFILES) <= set(paper.profiles)
        assert paper.claims and all(c.source and c.quantity for c in paper.claims)
        assert paper.profiles["quick"].expected_s < paper.profiles["full"].expected_s
        assert paper.profiles["quick"].expected_s <= 600  # "minutes on a laptop CPU"


@pytest.mark.parametrize("name", sorted(LANDED))
def test_every_profile_run_is_a_valid_config(name):
    from bionn.data import parse_dataset_spec
    from bionn.rl.run import RLConfig

    rules = set(rule_names())
    for profile in all_papers()[name].profiles.values():
        for run in profile.runs:
            if run.kind == "rl":
                RLConfig(**run.config)  # raises ConfigError on a bad agent, task or option
                continue
            config = TrainConfig(**run.config)
            assert config.rule in rules
            make_rule(config.rule, config.options)  # every option belongs to the rule
            parse_dataset_spec(config.dataset)


def test_aliases_and_unknown_names():
    assert get_paper("fa") is get_paper("feedback-alignment")
    assert get_paper("krotov-hopfield").name == "krotov"
    with pytest.raises(ConfigError, match="unknown paper 'nope'"):
        get_paper("nope")
    with pytest.raises(ValueError, match="already registered"):
        register_paper(get_paper("krotov"))


def test_a_paper_needs_both_profiles_and_unique_claims():
    quick = Profile((Run("a", {"rule": "bp"}),), "b", 1.0)
    claim = Claim("k", "q", 1.0, "src")
    with pytest.raises(ConfigError, match="no full profile"):
        Paper("x", "c", "f", "s", (claim,), {"quick": quick}, lambda r: {})
    with pytest.raises(ConfigError, match="unique keys"):
        Paper("x", "c", "f", "s", (claim, claim), {"quick": quick, "full": quick},
              lambda r: {})
    with pytest.raises(ConfigError, match="unique labels"):
        Profile((Run("a", {}), Run("a", {})), "b", 1.0)


def test_measure_of_feedback_alignment_from_given_results():
    results = {
        "bp": {"test_accuracy": 0.976, "history": []},
        "fa": {"test_accuracy": 0.979, "angle_to_backprop_deg": 40.0, "history": []},
        "dfa": {"test_accuracy": 0.9855, "history": []},
        "usf": {"test_accuracy": 0.974, "history": []},
    }
    ours = get_paper("feedback-alignment").measure(results)
    assert ours["fa_error"] == pytest.approx(2.1)
    assert ours["bp_error"] == pytest.approx(2.4)
    assert ours["dfa_error"] == pytest.approx(1.45)
    assert ours["usf_gap"] == pytest.approx(0.2)
    assert ours["fa_angle"] == 40.0


# -- the command line ---------------------------------------------------------------------------

def test_list_shows_every_paper_with_its_expected_times(capsys):
    code, out, err = cli(capsys, "reproduce", "--list")
    assert code == 0 and err == ""
    for name in LANDED:
        assert any(line.startswith(name) for line in out.splitlines()), name
    assert out.count("    quick about ") == len(all_papers())
    assert out.count("    full  about ") == len(all_papers())


def test_list_json(capsys):
    code, out, _ = cli(capsys, "reproduce", "--list", "--json")
    assert code == 0
    rows = json.loads(out.strip().splitlines()[-1])
    by_name = {r["name"]: r for r in rows}
    assert set(LANDED) <= set(by_name)
    for r in rows:
        assert set(r["profiles"]) == set(PROFILES)
        assert all(p["expected_s"] > 0 and p["budget"] for p in r["profiles"].values())


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("reproduce",), "needs a paper"),
        (("reproduce", "nope"), "unknown paper 'nope'"),
        (("reproduce", "krotov", "--profile", "huge"), "--profile must be one of quick, full"),
        (("reproduce", "krotov", "--list"), "--list takes no paper"),
        (("reproduce", "krotov", "--device", "tpu"), "--device"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, tmp_path, argv, message):
    code, out, err = cli(capsys, *argv, "--out", tmp_path / "run")
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and message in err
    assert "Traceback" not in out + err
    assert not (tmp_path / "run").exists()


@pytest.fixture
def tiny_paper():
    """A paper entry registered for the test: digits, bp and fa, one epoch."""
    common = {"dataset": "digits", "model": "mlp:32", "epochs": 1, "batch_size": 50}
    paper = Paper(
        name="tiny-test-paper",
        citation="a test entry",
        family="feedback_alignment",
        setting="digits, 64-32-10",
        claims=(
            Claim("fa_acc", "test accuracy, fa", 50.0, "the test", "higher", 5.0),
            Claim("gap", "test error of fa minus bp's", 0.0, "the test", "lower", 100.0,
                  "points"),
            Claim("impossible", "test accuracy, bp", 101.0, "the test", "higher", 0.5),
        ),
        profiles={
            "quick": Profile((Run("bp", {"rule": "bp", **common}, train_size=600),
                              Run("fa", {"rule": "fa", **common})), "one epoch", 5.0),
            "full": Profile((Run("bp", {"rule": "bp", **common}),
                             Run("fa", {"rule": "fa", **common})), "one epoch", 10.0),
        },
        measure=lambda r: {
            "fa_acc": 100 * r["fa"]["test_accuracy"],
            "gap": 100 * (r["bp"]["test_accuracy"] - r["fa"]["test_accuracy"]),
            "impossible": 100 * r["bp"]["test_accuracy"],
        },
    )
    register_paper(paper)
    yield paper
    unregister_paper(paper.name)


def test_a_tiny_profile_end_to_end(capsys, tmp_path, tiny_paper):
    out_dir = tmp_path / "repro"
    code, out, err = cli(capsys, "reproduce", tiny_paper.name, "--json", "--no-progress",
                         "--out", out_dir)
    assert code == 0, err
    lines = out.strip().splitlines()
    assert lines[0] == f"run folder: {out_dir}  (report: bionn report {out_dir})"
    assert lines[1].startswith("tiny-test-paper (quick): digits")
    assert lines[-2].startswith("test accuracy, bp")  # the table ends the output
    result = json.loads(lines[-1])
    summary = json.loads((out_dir / "summary.json").read_text())
    assert summary["kind"] == "reproduce" and summary["profile"] == "quick"
    assert summary["environment"]["torch"] and summary["environment"]["threads"] >= 1
    assert (out_dir / "reproduce.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # our numbers, recomputed from the sub-runs' own summaries
    bp = json.loads((out_dir / "bp" / "summary.json").read_text())
    fa = json.loads((out_dir / "fa" / "summary.json").read_text())
    assert bp["train_size"] == 600 and "train_size" not in fa
    expected = {"fa_acc": 100 * fa["test_accuracy"],
                "gap": 100 * (bp["test_accuracy"] - fa["test_accuracy"]),
                "impossible": 100 * bp["test_accuracy"]}
    rows = {r["key"]: r for r in result["rows"]}
    for key, value in expected.items():
        assert rows[key]["ours"] == pytest.approx(value)
    # the verdicts, by the rule in words
    assert rows["impossible"]["verdict"] == "below"
    assert rows["gap"]["verdict"] in ("meets", "within tolerance")
    fa_short = 50.0 - expected["fa_acc"]
    assert rows["fa_acc"]["verdict"] == (
        "meets" if fa_short <= 0 else "within tolerance" if fa_short <= 5.0 else "below")
    # the table printed: one line per claim, with the paper's number and the verdict
    table = [line for line in lines if line.startswith("test ")]
    assert len(table) == 3 and "101.00%" in table[-1] and "below" in table[-1]
    # bionn report reads the folder: the table's rows and every figure, embedded
    page = tmp_path / "report.html"
    assert cli(capsys, "report", out_dir, "-o", page)[0] == 0
    text = page.read_text()
    assert text.count("data:image/png;base64,") == len(list(out_dir.rglob("*.png"))) >= 3
    below = sum(r["verdict"] == "below" for r in result["rows"])
    assert "reproduce tiny-test-paper (quick)" in text
    assert text.count('class="below"') == below >= 1


def test_train_size_slices_the_training_set(tmp_path):
    config = TrainConfig(dataset="digits", model="mlp:16", epochs=1, batch_size=50,
                         out=str(tmp_path / "run"))
    summary = run_training(config, progress=False, plot=False, train_size=150)
    assert summary["train_size"] == 150
    record = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])
    assert record["step"] == 3  # 150 examples in batches of 50
    with pytest.raises(ConfigError, match="train_size"):
        run_training(config.replace(out=str(tmp_path / "other")), train_size=0)
