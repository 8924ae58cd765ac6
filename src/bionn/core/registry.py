"""The table of rules the command line knows, and their hyperparameters as options.

Each rule registers a factory with its one-line description, its paper and, if it has
hyperparameters, its ``config_class``: a frozen dataclass whose fields become command-line flags
(``--field-name``, plus an optional short alias in the field's ``metadata["flag"]``) and TOML
keys. ``bionn rules`` prints this table and ``bionn compare`` runs every supervised entry.

The rules themselves live in :mod:`bionn.rules`; the table loads that package the first time it is
read, so ``make_rule("fa")`` works without importing anything else first.
"""

from __future__ import annotations

import dataclasses
import importlib
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from bionn.core.rule import Backprop, LearningRule
from bionn.errors import ConfigError


@dataclass(frozen=True)
class RuleInfo:
    """One registry entry.

    Attributes:
        name: the command-line name.
        factory: builds the rule; called with no argument, or with an instance of
            ``config_class`` when the rule has one.
        description: one line saying what the rule does.
        paper: the citation.
        supervised: whether it learns from labels (and so is part of ``bionn compare``).
        config_class: the frozen dataclass of the rule's hyperparameters, or None.
    """

    name: str
    factory: Callable[..., LearningRule]
    description: str
    paper: str
    supervised: bool = True
    config_class: type | None = None


@dataclass(frozen=True)
class OptionSpec:
    """A rule hyperparameter as the command line sees it.

    Attributes:
        name: the config field (the TOML key, and the flag with underscores as dashes).
        flags: the flag strings, long first (``--inference-steps``), then any short alias.
        kind: the value type: ``int``, ``float``, ``str``, ``bool``, ``tuple[int]`` or
            ``tuple[float]``.
        help: the field's help text.
        rules: the rules that have this option.
    """

    name: str
    flags: tuple[str, ...]
    kind: str
    help: str
    rules: tuple[str, ...]


RULES: dict[str, RuleInfo] = {}
_LOADED = False


def register_rule(info: RuleInfo) -> None:
    """Add ``info`` to the table; a name may be registered once."""
    if info.name in RULES:
        raise ValueError(f"rule {info.name!r} is already registered")
    if info.config_class is not None and not dataclasses.is_dataclass(info.config_class):
        raise TypeError(f"rule {info.name!r}: config_class must be a dataclass")
    RULES[info.name] = info


def _load_rules() -> dict[str, RuleInfo]:
    """The table, after importing :mod:`bionn.rules` (which registers every rule) once."""
    global _LOADED
    if not _LOADED:
        _LOADED = True
        importlib.import_module("bionn.rules")
    return RULES


def all_rules() -> dict[str, RuleInfo]:
    """Every registered rule, by name, in registration order."""
    return _load_rules()


def rule_names(supervised_only: bool = False) -> list[str]:
    """Registered names, in registration order."""
    return [n for n, i in _load_rules().items() if i.supervised or not supervised_only]


def rule_info(name: str) -> RuleInfo:
    """The entry called ``name``, or a :class:`ConfigError` listing the valid names."""
    rules = _load_rules()
    try:
        return rules[name]
    except KeyError:
        valid = ", ".join(rules)
        raise ConfigError(f"unknown rule {name!r}; choose one of: {valid}") from None


def _kind(annotation: Any) -> str:
    """The option kind of a config field's type annotation."""
    if annotation in (int, float, str, bool):
        return annotation.__name__
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis and args[0] in (int, float):
        return f"tuple[{args[0].__name__}]"
    if origin in (typing.Union, types.UnionType):
        raise TypeError(f"optional fields are not supported as rule options: {annotation}")
    raise TypeError(f"unsupported rule option type {annotation}")


def _option_fields(config_class: type) -> list[tuple[dataclasses.Field, str]]:
    hints = typing.get_type_hints(config_class)
    return [(f, _kind(hints[f.name])) for f in dataclasses.fields(config_class) if f.init]


def rule_options() -> dict[str, OptionSpec]:
    """Every rule hyperparameter of every registered rule, by field name.

    A field name used by several rules is one option; it must have the same type in each.
    """
    specs: dict[str, OptionSpec] = {}
    for info in _load_rules().values():
        if info.config_class is None:
            continue
        for field, kind in _option_fields(info.config_class):
            flags = ("--" + field.name.replace("_", "-"),)
            alias = field.metadata.get("flag")
            if alias and alias not in flags:
                flags += (alias,)
            old = specs.get(field.name)
            if old is None:
                specs[field.name] = OptionSpec(
                    field.name, flags, kind, str(field.metadata.get("help", "")), (info.name,)
                )
                continue
            if old.kind != kind:
                raise TypeError(
                    f"option {field.name!r} is {old.kind} in {old.rules} but {kind} in "
                    f"{info.name!r}"
                )
            merged = old.flags + tuple(f for f in flags if f not in old.flags)
            specs[field.name] = dataclasses.replace(
                old, flags=merged, rules=old.rules + (info.name,)
            )
    return specs


def parse_option(spec: OptionSpec, value: Any) -> Any:
    """``value`` (a command-line string or a TOML value) as the option's type."""
    flag = spec.flags[0]
    try:
        if spec.kind == "bool":
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("true", "yes", "1", "on"):
                return True
            if text in ("false", "no", "0", "off"):
                return False
            raise ValueError(value)
        if spec.kind == "int":
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            return int(value)
        if spec.kind == "float":
            if isinstance(value, bool):
                raise ValueError(value)
            return float(value)
        if spec.kind == "str":
            if not isinstance(value, str):
                raise ValueError(value)
            return value
        item = int if spec.kind == "tuple[int]" else float
        items = value if isinstance(value, list | tuple) else str(value).split(",")
        return tuple(item(str(v).strip()) for v in items if str(v).strip())
    except (ValueError, TypeError, OverflowError):  # a list, a table, 10**400 as a float
        what = {"tuple[int]": "comma-separated integers", "tuple[float]": "comma-separated numbers"}
        expected = what.get(spec.kind, "true or false" if spec.kind == "bool" else spec.kind)
        raise ConfigError(f"{flag} must be {expected}, got {value!r}") from None


def rule_config(name: str, options: Mapping[str, Any] | None = None) -> Any:
    """The config dataclass of rule ``name`` with ``options`` set (None if it has none)."""
    info = rule_info(name)
    options = dict(options or {})
    if info.config_class is None:
        if options:
            flags = ", ".join("--" + k.replace("_", "-") for k in sorted(options))
            raise ConfigError(f"rule {name!r} has no options; {flags} does not apply to it")
        return None
    fields = {f.name: kind for f, kind in _option_fields(info.config_class)}
    unknown = sorted(k for k in options if k not in fields)
    if unknown:
        flags = ", ".join("--" + k.replace("_", "-") for k in unknown)
        valid = ", ".join("--" + k.replace("_", "-") for k in fields)
        raise ConfigError(f"{flags} does not apply to rule {name!r}; its options: {valid}")
    specs = rule_options()
    parsed = {k: parse_option(specs[k], v) for k, v in options.items()}
    try:
        return info.config_class(**parsed)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"rule {name!r}: {exc}") from None


def make_rule(name: str, options: Mapping[str, Any] | None = None) -> LearningRule:
    """A new instance of the rule called ``name``, configured by ``options`` (field -> value)."""
    info = rule_info(name)
    config = rule_config(name, options)
    return info.factory() if config is None else info.factory(config)


register_rule(
    RuleInfo(
        name="bp",
        factory=Backprop,
        description="error backpropagation, the baseline every rule is measured against",
        paper="Rumelhart, Hinton & Williams 1986, Nature 323:533-536",
    )
)
