"""``bionn reproduce``: each paper's benchmark setting, our number beside the paper's.

:mod:`bionn.reproduce.registry` defines the table (:class:`Paper`, :class:`Claim`,
:class:`Profile`, :class:`Run`, :func:`register_paper`, :func:`verdict`);
:mod:`bionn.reproduce.papers` holds the entries of the papers that have landed;
:func:`run_reproduction` runs one profile into a run folder that ``bionn report`` reads.
A new family adds its entry with :func:`register_paper`, in ``papers.py`` or in a module of
its own imported below.
"""

from bionn.reproduce import papers  # noqa: F401  (registers the entries)
from bionn.reproduce.registry import (
    DIRECTIONS,
    PROFILES,
    VERDICTS,
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
from bionn.reproduce.runner import environment, format_table, run_reproduction, table_rows

__all__ = [
    "DIRECTIONS",
    "PROFILES",
    "VERDICTS",
    "Claim",
    "Paper",
    "Profile",
    "Run",
    "all_papers",
    "environment",
    "format_table",
    "get_paper",
    "register_paper",
    "run_reproduction",
    "table_rows",
    "unregister_paper",
    "verdict",
]
