"""pyro-vae: variational autoencoders as Pyro model/guide programs, trained by SVI.

The public API (docs/python-api.md); ``import pyro_vae as pv``:

- training: :func:`train` (a new run, in memory or into a run directory), :func:`resume`;
  a run: :class:`Run`, :func:`open_run` (reopens a run directory safely) -- ``pyro_vae.api``
- data: :func:`load_dataset`, :class:`VAEData` -- ``pyro_vae.data``
- evaluation: :func:`log_likelihood` (importance sampling with PSIS diagnostics), :func:`ais`,
  :func:`accuracy` (of a model's classifier q(y | x)), and their results :class:`LogLikelihood`, :class:`AISEstimate` -- ``pyro_vae.api.evaluation``
- generation: :func:`sample`, :func:`reconstruct`; figures: :func:`plot_run` -- ``pyro_vae.api``
- extensions: :func:`register_model` (``pyro_vae.models``), :func:`register_prior`
  (``pyro_vae.models.priors``), :func:`register_objective` (``pyro_vae.infer.objectives``),
  :func:`register_dataset` (``pyro_vae.data``)
- configuration: :class:`Config`, :func:`make_config` -- ``pyro_vae.config``
- errors: :class:`PyroVAEError` and its subclasses -- ``pyro_vae.core.errors``

Each name is imported on first use, so ``import pyro_vae`` is cheap (no torch, no matplotlib).
The layers below, one subpackage each (core, config, data, nn, models, infer, runs, evaluation,
viz, training, studies, cli), are docs/contributing.md's map.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from pyro_vae.core.errors import (
    CheckpointError,
    ConfigError,
    DatasetCorruptError,
    DatasetNotFoundError,
    InterruptedRunError,
    PyroVAEError,
    RunDirError,
    RunLockedError,
    TrainingDivergedError,
    UntrustedImportError,
    WriteError,
)

__version__ = "0.1.0"

# public name -> the module it is imported from when first used
_LAZY = {
    "train": "pyro_vae.api.training", "resume": "pyro_vae.api.training",
    "Run": "pyro_vae.api.runs", "open_run": "pyro_vae.api.runs",
    "load_dataset": "pyro_vae.data", "VAEData": "pyro_vae.data",
    "log_likelihood": "pyro_vae.api.evaluation", "LogLikelihood": "pyro_vae.api.evaluation",
    "ais": "pyro_vae.api.evaluation", "AISEstimate": "pyro_vae.api.evaluation",
    "accuracy": "pyro_vae.api.evaluation",
    "sample": "pyro_vae.api.generation", "reconstruct": "pyro_vae.api.generation",
    "plot_run": "pyro_vae.api.figures",
    "register_model": "pyro_vae.models", "register_prior": "pyro_vae.models.priors",
    "register_objective": "pyro_vae.infer.objectives", "register_dataset": "pyro_vae.data",
    "Config": "pyro_vae.config", "make_config": "pyro_vae.config",
}

__all__ = [
    "train", "resume", "Run", "open_run",
    "load_dataset", "VAEData",
    "log_likelihood", "LogLikelihood", "ais", "AISEstimate", "accuracy",
    "sample", "reconstruct", "plot_run",
    "register_model", "register_prior", "register_objective", "register_dataset",
    "Config", "make_config",
    "PyroVAEError", "ConfigError", "UntrustedImportError", "DatasetNotFoundError", "DatasetCorruptError",
    "CheckpointError", "RunDirError", "WriteError", "RunLockedError", "TrainingDivergedError",
    "InterruptedRunError",
]


def __getattr__(name: str) -> Any:
    """A public name, imported from its module on first use (PEP 562)."""
    if name not in _LAZY:
        raise AttributeError(f"module 'pyro_vae' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


if TYPE_CHECKING:  # what editors and type checkers see
    from pyro_vae.api.evaluation import AISEstimate, LogLikelihood, ais, log_likelihood
    from pyro_vae.api.figures import plot_run
    from pyro_vae.api.generation import reconstruct, sample
    from pyro_vae.api.runs import Run, open_run
    from pyro_vae.api.training import resume, train
    from pyro_vae.config import Config, make_config
    from pyro_vae.data import VAEData, load_dataset, register_dataset
    from pyro_vae.infer.objectives import register_objective
    from pyro_vae.models import register_model
    from pyro_vae.models.priors import register_prior
