"""The rule contract, the backprop baseline, model builders and the Trainer."""

from bionn.core.config import TrainConfig
from bionn.core.models import CNN, MLP, build_model
from bionn.core.registry import RULES, RuleInfo, make_rule, register_rule, rule_names
from bionn.core.rule import Backprop, BackpropConfig, LearningRule, trainable_parameters
from bionn.core.trainer import StepInfo, Trainer

__all__ = [
    "CNN",
    "MLP",
    "RULES",
    "Backprop",
    "BackpropConfig",
    "LearningRule",
    "RuleInfo",
    "StepInfo",
    "TrainConfig",
    "Trainer",
    "build_model",
    "make_rule",
    "register_rule",
    "rule_names",
    "trainable_parameters",
]
