"""The table of rules the command line knows.

Each rule registers a factory with its one-line description and its paper; ``bionn rules``
prints this table and ``bionn compare`` runs every supervised entry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bionn.core.rule import Backprop, LearningRule
from bionn.errors import ConfigError


@dataclass(frozen=True)
class RuleInfo:
    """One registry entry.

    Attributes:
        name: the command-line name.
        factory: builds the rule with its default configuration.
        description: one line saying what the rule does.
        paper: the citation.
        supervised: whether it learns from labels (and so is part of ``bionn compare``).
    """

    name: str
    factory: Callable[[], LearningRule]
    description: str
    paper: str
    supervised: bool = True


RULES: dict[str, RuleInfo] = {}


def register_rule(info: RuleInfo) -> None:
    """Add ``info`` to the table; a name may be registered once."""
    if info.name in RULES:
        raise ValueError(f"rule {info.name!r} is already registered")
    RULES[info.name] = info


def rule_names(supervised_only: bool = False) -> list[str]:
    """Registered names, in registration order."""
    return [n for n, i in RULES.items() if i.supervised or not supervised_only]


def make_rule(name: str) -> LearningRule:
    """A new instance of the rule called ``name``."""
    try:
        info = RULES[name]
    except KeyError:
        valid = ", ".join(RULES)
        raise ConfigError(f"unknown rule {name!r}; choose one of: {valid}") from None
    return info.factory()


register_rule(
    RuleInfo(
        name="bp",
        factory=Backprop,
        description="error backpropagation, the baseline every rule is measured against",
        paper="Rumelhart, Hinton & Williams 1986, Nature 323:533-536",
    )
)
