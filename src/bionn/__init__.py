"""bionn: biologically inspired learning rules for PyTorch, each measured against backprop."""

from bionn.errors import BionnError, ChecksumError, ConfigError, DatasetError

__version__ = "0.1.0"

__all__ = ["BionnError", "ChecksumError", "ConfigError", "DatasetError", "__version__"]
