"""Errors a user can cause. Scripts print their message and exit with status 2, no traceback."""


class PyroVAEError(Exception):
    """Base class: the message says what went wrong and what to do about it."""


class ConfigError(PyroVAEError, ValueError):
    """An unknown key, a value of the wrong type or out of range, an incompatible combination."""


class DatasetNotFoundError(PyroVAEError, FileNotFoundError):
    """The dataset files are neither on disk nor downloadable."""


class DatasetCorruptError(PyroVAEError):
    """A dataset file is on disk but does not match its published checksum or format."""


class CheckpointError(PyroVAEError):
    """A checkpoint is missing, truncated, corrupt or from an incompatible run."""


class TrainingDivergedError(PyroVAEError, FloatingPointError):
    """The loss or the parameters became NaN or infinite during training."""
