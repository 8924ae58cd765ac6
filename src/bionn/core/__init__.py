"""The rule contract, the backprop baseline, model builders and the Trainer."""

from bionn.core.config import TrainConfig
from bionn.core.models import CNN, MLP, build_model
from bionn.core.registry import (
    RULES,
    RuleInfo,
    all_rules,
    make_rule,
    register_rule,
    rule_names,
    rule_options,
)
from bionn.core.rule import Backprop, BackpropConfig, LearningRule, Phase, trainable_parameters
from bionn.core.trainer import StepInfo, Trainer

__all__ = [
    "CNN",
    "MLP",
    "RULES",
    "Backprop",
    "BackpropConfig",
    "LearningRule",
    "Phase",
    "RuleInfo",
    "StepInfo",
    "TrainConfig",
    "Trainer",
    "all_rules",
    "build_model",
    "make_rule",
    "register_rule",
    "rule_names",
    "rule_options",
    "trainable_parameters",
]
