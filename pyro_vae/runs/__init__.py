"""The run directory on disk: :class:`~.rundir.RunDir`, its lock (:mod:`.lock`), checkpoints
(:mod:`.checkpoint`) and their schema (:mod:`.checkpoint_schema`, written in the checks of
:mod:`.field_checks`), evaluation results (:mod:`.results`) and reopening a run safely
(:mod:`.opening`).

Other layers import from here (``from pyro_vae.runs import RunDir, load_checkpoint``). The names
are loaded on first use (PEP 562), not when the package is imported: a process that only holds a
run's lock (:mod:`.lock` needs nothing but the standard library) should not import torch, Pyro
and the model stack that :mod:`.opening` needs, which take seconds.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyro_vae.runs.checkpoint import checkpoint_sha256, load_checkpoint, save_checkpoint
    from pyro_vae.runs.checkpoint_schema import METRIC_KEYS, check_checkpoint
    from pyro_vae.runs.lock import RunLock
    from pyro_vae.runs.opening import checkpoint_path, load_run, load_weights
    from pyro_vae.runs.results import read_result, read_summary, save_result, write_result
    from pyro_vae.runs.rundir import RunDir

_EXPORTS = {  # name: its module (the names of __all__)
    "METRIC_KEYS": "checkpoint_schema",
    "RunDir": "rundir",
    "RunLock": "lock",
    "check_checkpoint": "checkpoint_schema",
    "checkpoint_path": "opening",
    "checkpoint_sha256": "checkpoint",
    "load_checkpoint": "checkpoint",
    "load_run": "opening",
    "load_weights": "opening",
    "read_result": "results",
    "read_summary": "results",
    "save_checkpoint": "checkpoint",
    "save_result": "results",
    "write_result": "results",
}

__all__ = [
    "METRIC_KEYS",
    "RunDir",
    "RunLock",
    "check_checkpoint",
    "checkpoint_path",
    "checkpoint_sha256",
    "load_checkpoint",
    "load_run",
    "load_weights",
    "read_result",
    "read_summary",
    "save_checkpoint",
    "save_result",
    "write_result",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # found directly from now on
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
