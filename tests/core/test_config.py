"""TrainConfig validation and TOML reading (oracle: the documented allowed values)."""

from __future__ import annotations

import math

import pytest

from bionn.core.config import TrainConfig, read_toml
from bionn.errors import ConfigError


@pytest.mark.parametrize(
    "changes, flag",
    [
        ({"epochs": 0}, "--epochs"),
        ({"epochs": -3}, "--epochs"),
        ({"epochs": 2.5}, "--epochs"),
        ({"batch_size": 0}, "--batch-size"),
        ({"lr": 0.0}, "--lr"),
        ({"lr": -1e-3}, "--lr"),
        ({"lr": math.nan}, "--lr"),
        ({"lr": math.inf}, "--lr"),
        ({"lr": "fast"}, "--lr"),
        ({"optimizer": "rmsprop"}, "adam, sgd"),
        ({"device": "tpu"}, "--device"),
        ({"seed": "zero"}, "--seed"),
        ({"optimizer": "sgd", "momentum": -0.1}, "--momentum"),
        ({"optimizer": "sgd", "momentum": 1.0}, "--momentum"),
        ({"optimizer": "sgd", "momentum": math.nan}, "--momentum"),
        ({"optimizer": "sgd", "momentum": "high"}, "--momentum"),
        ({"optimizer": "sgd", "momentum": True}, "--momentum"),
        ({"optimizer": "adam", "momentum": 0.9}, "--optimizer sgd"),
        ({"optimizer": "sgd", "nesterov": True}, "--momentum > 0"),
        ({"optimizer": "sgd", "momentum": 0.9, "nesterov": "yes"}, "--nesterov"),
        ({"clip_grad": 0.0}, "--clip-grad"),
        ({"clip_grad": -1.0}, "--clip-grad"),
        ({"clip_grad": math.nan}, "--clip-grad"),
        ({"clip_grad": math.inf}, "--clip-grad"),
        ({"clip_grad": True}, "--clip-grad"),
        ({"clip_grad": "5"}, "--clip-grad"),
    ],
)
def test_invalid_values_name_the_flag(changes, flag):
    with pytest.raises(ConfigError, match=flag):
        TrainConfig(**changes)


def test_learning_rate_defaults_by_optimizer():
    assert TrainConfig().learning_rate == 1e-3
    assert TrainConfig(optimizer="sgd").learning_rate == 0.1
    assert TrainConfig(optimizer="sgd", lr=0.5).learning_rate == 0.5


def test_momentum_defaults_to_plain_sgd_and_takes_the_half_open_unit_interval():
    assert TrainConfig().momentum == 0.0 and TrainConfig().nesterov is False
    assert TrainConfig(optimizer="sgd", momentum=0).momentum == 0.0
    assert TrainConfig(optimizer="sgd", momentum=0.99).momentum == 0.99
    assert TrainConfig(optimizer="sgd", momentum=0.9, nesterov=True).nesterov is True
    assert TrainConfig(optimizer="adam", momentum=0.0).optimizer == "adam"


def test_clip_grad_is_off_by_default_and_takes_a_positive_number():
    assert TrainConfig().clip_grad is None
    assert TrainConfig(clip_grad=5).clip_grad == 5.0
    assert isinstance(TrainConfig(clip_grad=5).clip_grad, float)
    assert TrainConfig(optimizer="sgd", momentum=0.9, clip_grad=0.25).clip_grad == 0.25
    assert TrainConfig(clip_grad=2.0).to_dict()["clip_grad"] == 2.0  # recorded in the summary


def test_toml_reads_clip_grad(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("clip-grad = 3.5\n")
    values = read_toml(path)
    assert values == {"clip_grad": 3.5}
    assert TrainConfig(**values).clip_grad == 3.5


def test_toml_reads_momentum(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('optimizer = "sgd"\nmomentum = 0.9\nnesterov = true\n')
    values = read_toml(path)
    assert values == {"optimizer": "sgd", "momentum": 0.9, "nesterov": True}
    assert TrainConfig(**values).momentum == 0.9


def test_toml_accepts_dashes_and_underscores(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('batch-size = 32\nepochs = 2\nmodel = "mlp:10"\n')
    assert read_toml(path) == {"batch_size": 32, "epochs": 2, "model": "mlp:10"}


def test_toml_unknown_key_and_syntax_errors(tmp_path):
    bad_key = tmp_path / "k.toml"
    bad_key.write_text("epoch = 2\n")
    with pytest.raises(ConfigError, match="'epoch'"):
        read_toml(bad_key)
    bad_syntax = tmp_path / "s.toml"
    bad_syntax.write_text("epochs = = 2\n")
    with pytest.raises(ConfigError, match="malformed"):
        read_toml(bad_syntax)
    with pytest.raises(ConfigError, match="cannot read"):
        read_toml(tmp_path / "absent.toml")
