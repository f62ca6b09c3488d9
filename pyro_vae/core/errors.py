"""Errors a user can cause. Scripts print their message and exit with status 2, no traceback."""

from __future__ import annotations


class PyroVAEError(Exception):
    """Base class: the message says what went wrong and what to do about it."""


class ConfigError(PyroVAEError, ValueError):
    """An unknown key, a value of the wrong type or out of range, an incompatible combination."""


class UntrustedImportError(ConfigError):
    """A run's saved config names code (an import path) that the person opening it did not name."""


class DatasetNotFoundError(PyroVAEError, FileNotFoundError):
    """The dataset files are neither on disk nor downloadable."""


class DatasetCorruptError(PyroVAEError):
    """A dataset file is on disk but does not match its published checksum or format."""


class CheckpointError(PyroVAEError):
    """A checkpoint is missing, truncated, corrupt or from an incompatible run."""


class RunDirError(PyroVAEError):
    """A directory is not a run directory, or one of its files is missing or malformed."""


class WriteError(PyroVAEError, OSError):
    """A file could not be written (disk full, read-only, no permission). ``errno`` is the
    operating system's; the file that was there before, if any, is unchanged."""

    def __init__(self, message: str, errno: int | None = None):
        super().__init__(message)  # one argument: str() is the message, without "[Errno N]"
        self.errno = errno


class RunLockedError(PyroVAEError):
    """Another process holds the run directory's lock: two writers must not share a run."""


class TrainingDivergedError(PyroVAEError, FloatingPointError):
    """The loss or the parameters became NaN or infinite during training."""


class InterruptedRunError(PyroVAEError):
    """Ctrl-C (SIGINT): the message says what was kept and how to continue. Scripts exit 130."""
