"""The rule hooks: options as flags, phases, extra epoch metrics, the rule's own plots.

A toy rule registered for these tests only exercises every hook. Oracles: the initial weights
(built again from the same seed), a hand-written SGD step, an uninterrupted run (for resume), and
the command line's documented contract (exit status 2 and one line for bad input).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

from bionn.cli import main
from bionn.core.config import TrainConfig
from bionn.core.models import build_model
from bionn.core.registry import (
    RULES,
    RuleInfo,
    all_rules,
    make_rule,
    register_rule,
    rule_config,
    rule_options,
)
from bionn.core.rule import Backprop, Phase
from bionn.core.run import run_compare, run_training
from bionn.errors import ConfigError


@dataclass(frozen=True)
class ToyConfig:
    scale: float = field(default=1.0, metadata={"help": "gradient scale s", "flag": "-s"})
    sizes: tuple[int, ...] = field(default=(1, 2), metadata={"help": "sizes"})
    first_epochs: int = field(default=1, metadata={"help": "epochs of the first phase"})
    loud: bool = field(default=False, metadata={"help": "a switch"})
    second_scale: float = field(default=1.0, metadata={"help": "the second phase's inputs, "
                                                                "scaled (phase_inputs)"})

    def __post_init__(self) -> None:
        if self.scale <= 0:
            raise ConfigError(f"--scale must be > 0, got {self.scale}")


class ToyPhased(Backprop):
    """Backprop, scaled by ``s``; its first phase (SGD, lr 0.5) trains the output layer only."""

    name = "toy-phased"
    config_class = ToyConfig
    normalize_inputs = False

    def __init__(self, config: ToyConfig | None = None) -> None:
        super().__init__()
        self.config = config or ToyConfig()
        self.phase = None
        self.calls: list[str] = []

    def phases(self, epochs: int) -> list[Phase]:
        first = self.config.first_epochs
        return [
            Phase("first", first, optimizer="sgd", lr=0.5, schedule="constant"),
            Phase("second", epochs - first),
        ]

    def set_phase(self, name: str) -> None:
        self.phase = name
        self.calls.append(name)

    def phase_inputs(self, model, name, x):
        if name == "second" and self.config.second_scale != 1.0:
            return x * self.config.second_scale
        return None

    def fill_grads(self, model, x, y):
        metrics = super().fill_grads(model, x, y)
        for name, p in model.named_parameters():
            if self.phase == "first" and not name.startswith("linears.1"):
                p.grad = None
            elif p.grad is not None:
                p.grad.mul_(self.config.scale)
        metrics["input_max"] = float(x.max())
        return metrics

    def epoch_metrics(self, model):
        return {"toy_phase": self.phase}

    def plots(self, model, history, run_dir, data):
        path = Path(run_dir) / "toy.txt"
        path.write_text(f"{len(history)} {tuple(data[0].shape)}")
        return [path]


@pytest.fixture
def toy_rule():
    all_rules()  # load the real table first, so the toy is added after it
    register_rule(
        RuleInfo("toy-phased", ToyPhased, "a toy", "no paper", supervised=True,
                 config_class=ToyConfig)
    )
    yield
    del RULES["toy-phased"]


def _config(tmp_path, **kw) -> TrainConfig:
    base = dict(rule="toy-phased", dataset="digits", model="mlp:16", epochs=3, batch_size=64,
                out=str(tmp_path / "run"), seed=3)
    base.update(kw)
    return TrainConfig(**base)


def _history(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_options_are_parsed_and_validated(toy_rule):
    specs = rule_options()
    assert specs["scale"].flags == ("--scale", "-s")
    assert specs["sizes"].kind == "tuple[int]"
    config = rule_config("toy-phased", {"scale": "2.5", "sizes": "3, 4", "loud": "true"})
    assert config == ToyConfig(scale=2.5, sizes=(3, 4), loud=True)
    assert make_rule("toy-phased", {"scale": 2}).config.scale == 2.0
    with pytest.raises(ConfigError, match="--scale must be > 0"):
        make_rule("toy-phased", {"scale": -1})
    with pytest.raises(ConfigError, match="--sizes must be comma-separated integers"):
        make_rule("toy-phased", {"sizes": "a,b"})
    with pytest.raises(ConfigError, match="--nope does not apply to rule 'toy-phased'"):
        make_rule("toy-phased", {"nope": 1})
    with pytest.raises(ConfigError, match="rule 'bp' has no options; --scale"):
        make_rule("bp", {"scale": 1.0})


def test_phases_train_in_order_with_their_own_optimizer(toy_rule, tmp_path):
    summary = run_training(_config(tmp_path), progress=False)
    run = Path(summary["run_dir"])
    history = _history(run)
    assert [r["phase"] for r in history] == ["first", "second", "second"]
    assert [r["toy_phase"] for r in history] == ["first", "second", "second"]
    assert [r["epoch"] for r in history] == [1, 2, 3]
    # normalize_inputs = False: the rule saw raw intensities in [0, 1]
    assert 0.9 < history[0]["train_input_max"] <= 1.0
    assert summary["phases"][0] == {"name": "first", "epochs": 1, "last_epoch": 1}
    assert (run / "toy.txt").read_text() == "3 (360, 1, 8, 8)"
    assert summary["plots"] == [str(run / "toy.txt")]


def test_a_phase_without_evaluation_records_no_test_accuracy(toy_rule, tmp_path, monkeypatch):
    """Phase(evaluate=False): the test set is not run through the model in that phase."""
    original = ToyPhased.phases

    def phases(self, epochs):
        first, second = original(self, epochs)
        return [dataclasses.replace(first, evaluate=False), second]

    monkeypatch.setattr(ToyPhased, "phases", phases)
    predicted = []
    monkeypatch.setattr(ToyPhased, "predict",
                        lambda self, model, x: predicted.append(self.phase) or model(x))
    summary = run_training(_config(tmp_path), progress=False)
    history = _history(Path(summary["run_dir"]))
    assert [r["test_accuracy"] is None for r in history] == [True, False, False]
    assert [r["test_loss"] is None for r in history] == [True, False, False]
    assert "first" not in predicted and "second" in predicted
    assert summary["test_accuracy"] == history[-1]["test_accuracy"] is not None
    assert summary["train_accuracy"] is not None
    with pytest.raises(ConfigError, match="evaluate"):
        Phase("p", 1, evaluate="no")


def test_first_phase_is_one_sgd_step_by_hand(toy_rule, tmp_path):
    """Oracle: autograd on the same full batch and one SGD step of lr 0.5 written by hand."""
    from bionn.data import load_dataset

    config = _config(tmp_path, epochs=2, batch_size=5000)  # one full batch per epoch

    def stop_in_second_phase(info):
        if info.global_step == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_training(config, progress=False, callbacks=[stop_in_second_phase])
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 1 and state["phase"] == "first"
    train = load_dataset("digits", None, train=True)
    torch.manual_seed(config.seed)
    model = build_model("mlp:16", (1, 8, 8), 10, "relu")
    loss = torch.nn.functional.cross_entropy(model(train.data), train.targets)
    grads = torch.autograd.grad(loss, list(model.parameters()))
    saved = state["model"]
    assert torch.equal(saved["linears.0.weight"], model.linears[0].weight.detach())
    assert torch.equal(saved["linears.0.bias"], model.linears[0].bias.detach())
    torch.testing.assert_close(saved["linears.1.weight"], model.linears[1].weight - 0.5 * grads[2])
    torch.testing.assert_close(saved["linears.1.bias"], model.linears[1].bias - 0.5 * grads[3])
    assert state["optimizer"]["param_groups"][0]["lr"] == 0.5
    assert "momentum" in state["optimizer"]["param_groups"][0]  # an SGD state


@pytest.mark.parametrize("stop_epoch", [1, 2])
def test_resume_across_and_inside_phases_is_identical(toy_rule, tmp_path, stop_epoch):
    """Oracle: an uninterrupted run with the same config."""
    whole = run_training(_config(tmp_path, out=str(tmp_path / "whole")), progress=False)
    config = _config(tmp_path, out=str(tmp_path / "cut"))
    steps_per_epoch = 23  # ceil(1437 / 64)

    def stop(info):
        if info.global_step == stop_epoch * steps_per_epoch + 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_training(config, progress=False, callbacks=[stop])
    assert len(_history(tmp_path / "cut")) == stop_epoch
    resumed = run_training(config, resume=True, progress=False)
    a = torch.load(Path(whole["run_dir"]) / "checkpoint.pt", weights_only=True)
    b = torch.load(Path(resumed["run_dir"]) / "checkpoint.pt", weights_only=True)
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert [r["phase"] for r in _history(tmp_path / "cut")] == ["first", "second", "second"]


def test_cli_flags_and_toml_reach_the_rule(toy_rule, tmp_path, capsys):
    out = tmp_path / "cli"
    code = main(["train", "--rule", "toy-phased", "--dataset", "digits", "--model", "mlp:8",
                 "--epochs", "2", "--no-progress", "-s", "0.5", "--sizes", "4,5",
                 "--out", str(out), "--json"])
    assert code == 0
    saved = json.loads((out / "summary.json").read_text())
    assert saved["options"] == {"scale": 0.5, "sizes": [4, 5]}
    toml = tmp_path / "c.toml"
    toml.write_text('rule = "toy-phased"\ndataset = "digits"\nmodel = "mlp:8"\nepochs = 2\n'
                    'scale = 2.0\nloud = true\nno-progress = true\n'
                    f'out = "{(tmp_path / "t").as_posix()}"\n')
    assert main(["train", "--config", str(toml)]) == 0
    assert json.loads((tmp_path / "t" / "summary.json").read_text())["options"] == {
        "scale": 2.0, "loud": True}
    capsys.readouterr()
    code = main(["train", "--rule", "bp", "--dataset", "digits", "--scale", "2",
                 "--no-progress", "--out", str(tmp_path / "bad")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "has no options; --scale" in err[0]
    assert not (tmp_path / "bad").exists()
    code = main(["train", "--rule", "toy-phased", "--dataset", "digits", "-s", "x",
                 "--no-progress", "--out", str(tmp_path / "bad2")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == ["bionn: error: --scale must be float, got 'x'"]


def test_resume_refuses_changed_options(toy_rule, tmp_path, capsys):
    out = tmp_path / "r"
    args = ["train", "--rule", "toy-phased", "--dataset", "digits", "--model", "mlp:8",
            "--epochs", "2", "--no-progress", "--out", str(out)]
    assert main(args) == 0
    capsys.readouterr()
    assert main([*args, "--resume", "--epochs", "3", "-s", "3"]) == 2
    assert "scale was None, got 3.0" in capsys.readouterr().err
    assert main([*args, "--resume", "--epochs", "3"]) == 0


def test_compare_gives_each_rule_its_own_options(toy_rule, tmp_path):
    config = TrainConfig(dataset="digits", model="mlp:8", epochs=2, out=str(tmp_path / "c"),
                         options={"scale": 0.5})
    summaries, _ = run_compare(config, ["bp", "toy-phased"], progress=False)
    assert [s["options"] for s in summaries] == [{}, {"scale": 0.5}]
    with pytest.raises(ConfigError, match="--scale does not apply to any of the rules bp"):
        run_compare(dataclasses.replace(config, out=str(tmp_path / "d")), ["bp"], progress=False)


def test_rules_lists_options(toy_rule, capsys):
    assert main(["rules", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["toy-phased"]["options"] == ["--scale", "--sizes", "--first-epochs", "--loud",
                                             "--second-scale"]
    assert rows["bp"]["options"] == []


def test_phase_inputs_reach_their_phase_only_and_survive_resume(toy_rule, tmp_path):
    """The second phase trains on its inputs x 3 (oracle: the inputs' largest value, 1, seen in
    every batch of digits), the first on the raw inputs; a run cut inside the second phase and
    resumed ends as the uninterrupted one does."""
    seen: dict[int, set[float]] = {}

    def record(info):
        seen.setdefault(info.epoch, set()).add(round(info.metrics["input_max"], 6))

    options = {"second_scale": 3.0}
    whole = run_training(_config(tmp_path, out=str(tmp_path / "whole"), options=options),
                         progress=False, callbacks=[record])
    assert seen == {1: {1.0}, 2: {3.0}, 3: {3.0}}
    config = _config(tmp_path, out=str(tmp_path / "cut"), options=options)

    def stop(info):
        if info.global_step == 2 * 23 + 1:  # inside the second phase's second epoch
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_training(config, progress=False, callbacks=[stop])
    seen.clear()
    resumed = run_training(config, resume=True, progress=False, callbacks=[record])
    assert seen == {3: {3.0}}
    a = torch.load(Path(whole["run_dir"]) / "checkpoint.pt", weights_only=True)
    b = torch.load(Path(resumed["run_dir"]) / "checkpoint.pt", weights_only=True)
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key


def test_phase_inputs_must_have_a_row_per_example():
    from bionn.core.trainer import Trainer

    model = build_model("mlp:4", (1, 2, 2), 3)
    x, y = torch.rand(10, 1, 2, 2), torch.randint(0, 3, (10,))
    trainer = Trainer(model, Backprop(), torch.optim.SGD(model.parameters(), lr=0.1), (x, y),
                      progress=False)
    with pytest.raises(ConfigError, match="9 rows for 10 training examples"):
        trainer.set_train_inputs(torch.rand(9, 4))
    trainer.set_train_inputs(x + 1)
    assert torch.equal(next(iter(trainer.loader))[0].min() >= 1, torch.tensor(True))
    trainer.set_train_inputs(None)
    assert trainer.loader.x is x
