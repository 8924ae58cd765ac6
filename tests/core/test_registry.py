"""The rule table (oracle: the names registered in it)."""

from __future__ import annotations

import pytest

from bionn.core.registry import RULES, RuleInfo, make_rule, register_rule, rule_names
from bionn.core.rule import Backprop
from bionn.errors import ConfigError


def test_bp_is_registered_and_supervised():
    assert isinstance(make_rule("bp"), Backprop)
    assert "bp" in rule_names(supervised_only=True)
    assert all(RULES[n].paper and RULES[n].description for n in rule_names())


def test_unknown_rule_lists_the_valid_ones():
    with pytest.raises(ConfigError, match=r"unknown rule 'nope'.*bp"):
        make_rule("nope")


def test_a_name_is_registered_once():
    with pytest.raises(ValueError, match="already registered"):
        register_rule(RuleInfo("bp", Backprop, "again", "paper"))
