"""The reproduction table: one :class:`Paper` per paper of the reading list, and the verdict.

A paper entry names the paper's benchmark setting, the numbers the paper reports
(:class:`Claim`: value, unit, where in the paper, which direction is better, the tolerance),
and its profiles (:class:`Profile`: the runs to make, the budget in words, the expected time).
Its ``measure`` turns the runs' results into our numbers, one per claim key.

Adding a paper (a later family does this in its own module)::

    from bionn.reproduce import Claim, Paper, Profile, Run, register_paper

    register_paper(Paper(
        name="eprop", citation="Bellec et al. (2020), Nat. Commun. 11:3625",
        family="temporal_credit", setting="...",
        claims=(Claim("error", "test error (%)", 2.0, "Fig. 2", direction="lower",
                      tolerance=1.0),),
        profiles={"quick": Profile(runs=(Run("eprop", {"rule": "eprop", ...}),),
                                   budget="...", expected_s=120.0),
                  "full": Profile(...)},
        measure=lambda results: {"error": 100 * (1 - results["eprop"]["test_accuracy"])},
    ))

and imports that module from :mod:`bionn.reproduce` (``bionn/reproduce/__init__.py``), so the
entry appears in ``bionn reproduce --list``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bionn.errors import ConfigError

PROFILES = ("quick", "full")
"""The profiles every paper has: ``quick`` (minutes on a laptop CPU) and ``full`` (the
paper's budget)."""

DIRECTIONS = ("higher", "lower", "close")
"""How a claim is judged: ``higher`` is better (accuracy), ``lower`` is better (error), or
``close`` to the paper's value (a closed form)."""

VERDICTS = ("meets", "within tolerance", "below", "not measured")


@dataclass(frozen=True)
class Claim:
    """One number a paper reports.

    Attributes:
        key: the key under which the paper's ``measure`` returns our number.
        quantity: what it is, in words (``"test error, fa (%)"``).
        paper: the paper's value, in ``unit``.
        source: where the paper gives it (table, figure or text).
        direction: ``higher``, ``lower`` or ``close`` (see :func:`verdict`).
        tolerance: how far on the wrong side (``higher``/``lower``) or either side
            (``close``) still counts, in ``unit``.
        unit: ``"%"``, ``"deg"``, ``""``, ...
    """

    key: str
    quantity: str
    paper: float
    source: str
    direction: str = "lower"
    tolerance: float = 0.0
    unit: str = "%"

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise ConfigError(
                f"claim {self.key!r}: direction must be one of {', '.join(DIRECTIONS)}, "
                f"got {self.direction!r}"
            )
        if not (isinstance(self.tolerance, int | float) and self.tolerance >= 0):
            raise ConfigError(f"claim {self.key!r}: tolerance must be >= 0, got "
                              f"{self.tolerance!r}")


@dataclass(frozen=True)
class Run:
    """One training run of a profile.

    Attributes:
        label: the run's name (its sub-folder in the run folder).
        config: the fields of :class:`~bionn.core.config.TrainConfig` (``kind="train"``) or
            of :class:`~bionn.rl.run.RLConfig` (``kind="rl"``); ``out`` is set by the runner.
        kind: ``train`` (``run_training``) or ``rl`` (``run_rl``).
        train_size: train on a seeded random slice of this many training examples (None:
            all of them).
    """

    label: str
    config: Mapping[str, Any]
    kind: str = "train"
    train_size: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("train", "rl"):
            raise ConfigError(f"run {self.label!r}: kind must be train or rl, got {self.kind!r}")


@dataclass(frozen=True)
class Profile:
    """The runs of one profile, its budget in words and its expected wall time."""

    runs: tuple[Run, ...]
    budget: str
    expected_s: float

    def __post_init__(self) -> None:
        labels = [r.label for r in self.runs]
        if not labels or len(set(labels)) != len(labels):
            raise ConfigError(f"a profile needs runs with unique labels, got {labels}")


Results = Mapping[str, Mapping[str, Any]]
"""What ``measure`` receives: run label -> the run's summary, with its per-epoch (or
per-episode) records under ``"history"`` and its folder under ``"run_dir"``."""


@dataclass(frozen=True)
class Paper:
    """One paper's reproduction.

    Attributes:
        name: the name ``bionn reproduce NAME`` takes.
        citation: authors, year, venue, DOI or arXiv id.
        family: the family's docs page, ``docs/rules/<family>.md``.
        setting: the paper's benchmark setting, in words.
        claims: the paper's numbers.
        profiles: ``quick`` and ``full``.
        measure: results -> our numbers, one per claim key (None where not measured).
        notes: what differs from the paper's setting even in the ``full`` profile.
    """

    name: str
    citation: str
    family: str
    setting: str
    claims: tuple[Claim, ...]
    profiles: Mapping[str, Profile]
    measure: Callable[[Results], Mapping[str, float | None]]
    notes: str = ""
    aliases: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        missing = [p for p in PROFILES if p not in self.profiles]
        if missing:
            raise ConfigError(f"paper {self.name!r} has no {', '.join(missing)} profile")
        keys = [c.key for c in self.claims]
        if not keys or len(set(keys)) != len(keys):
            raise ConfigError(f"paper {self.name!r} needs claims with unique keys, got {keys}")


_PAPERS: dict[str, Paper] = {}
_ALIASES: dict[str, str] = {}


def register_paper(paper: Paper) -> None:
    """Add ``paper`` to the table; a name (or alias) may be registered once."""
    for name in (paper.name, *paper.aliases):
        if name in _PAPERS or name in _ALIASES:
            raise ValueError(f"paper {name!r} is already registered")
    _PAPERS[paper.name] = paper
    for alias in paper.aliases:
        _ALIASES[alias] = paper.name


def unregister_paper(name: str) -> None:
    """Remove a paper (and its aliases) from the table."""
    paper = _PAPERS.pop(name)
    for alias in paper.aliases:
        _ALIASES.pop(alias, None)


def all_papers() -> dict[str, Paper]:
    """Every registered paper, by name, in registration order."""
    return dict(_PAPERS)


def get_paper(name: str) -> Paper:
    """The paper called ``name`` (or one of its aliases); :class:`ConfigError` if none is."""
    name = _ALIASES.get(name, name)
    if name not in _PAPERS:
        raise ConfigError(
            f"unknown paper {name!r}; choose one of: {', '.join(_PAPERS)} "
            "(`bionn reproduce --list`)"
        )
    return _PAPERS[name]


def verdict(ours: float | None, claim: Claim) -> str:
    """``meets``, ``within tolerance``, ``below`` or ``not measured``.

    With d the signed distance on the wrong side (paper - ours for ``higher``, ours - paper
    for ``lower``): meets if d <= 0, within tolerance if d <= tolerance, else below. For
    ``close`` it is |ours - paper|: meets if it is at most the tolerance, else below.
    """
    if ours is None or not math.isfinite(ours):
        return "not measured"
    if claim.direction == "close":
        return "meets" if abs(ours - claim.paper) <= claim.tolerance else "below"
    short = claim.paper - ours if claim.direction == "higher" else ours - claim.paper
    if short <= 0:
        return "meets"
    return "within tolerance" if short <= claim.tolerance else "below"
