"""Errors that carry a message meant for a person.

Every error raised because of user input (a bad flag, a missing or corrupt data file, an
unwritable folder) is a :class:`BionnError`. The command line prints its message on one line
of stderr and exits with status 2; library users can catch it like any exception.
"""

from __future__ import annotations


class BionnError(Exception):
    """Bad input or a bad environment, explained in the message."""


class ConfigError(BionnError, ValueError):
    """An invalid hyperparameter, flag or configuration file entry."""


class DatasetError(BionnError):
    """A data set that is missing, unknown or cannot be read."""


class ChecksumError(DatasetError):
    """A data file whose sha256 differs from the published one."""


class CheckpointError(BionnError):
    """A checkpoint that is missing, damaged, foreign or does not fit the run resuming it."""


class ResourceError(BionnError):
    """A request that cannot fit in this machine's memory (the message says how much)."""


class TrainingDiverged(BionnError):
    """The loss or the weights left any finite range; the last good checkpoint is kept."""
