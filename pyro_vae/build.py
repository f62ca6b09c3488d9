"""Building a model from a config, and reopening a trained run: the one place both happen.

Training, evaluation, figures and the gradient diagnostic all build models and reopen runs;
they import this module, which imports none of them (no import cycle). Reopening goes through
:func:`load_run`, which never imports code that the saved config names unless the caller trusts
it (:func:`~pyro_vae.config.check_trusted_imports`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Optional

import torch

from .checkpoint import load_checkpoint
from .config import Config, make_config, saved_config
from .errors import CheckpointError, ConfigError
from .models import build_model
from .objectives import check_structure
from .rundir import RunDir
from .sites import Structure, probe

__all__ = ["build_model", "load_run", "load_weights", "model_structure", "resolve_device", "run_config"]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was asked for but PyTorch sees no CUDA GPU; use "
                          "--device cpu (or auto)")
    return torch.device(name)


def model_structure(model, cfg: Config, x: torch.Tensor) -> Structure:
    """The model's latent sites, checked against the site rules, and refused where the objective
    cannot train them (:func:`~pyro_vae.objectives.check_structure`). ``x``: a few data points."""
    structure = probe(model.model, model.guide, x, cfg.model)
    check_structure(cfg, structure)
    return structure


CHECKPOINTS = ("best", "last")


def checkpoint_path(run_dir, checkpoint: str = "last") -> Path:
    """The file of ``checkpoint``: "last" is checkpoint.pt; "best" is best.pt (the epoch with the
    best validation ELBO), or checkpoint.pt for a run that has no best.pt (no validation split)."""
    run = RunDir(run_dir)
    if checkpoint not in CHECKPOINTS:
        raise ConfigError(f"unknown checkpoint {checkpoint!r}; choose one of {', '.join(CHECKPOINTS)}")
    return run.best_path if checkpoint == "best" and run.best_path.exists() else run.checkpoint_path


def load_run(run_dir, overrides: Optional[dict[str, Any]] = None,
             trusted_imports: Iterable[str] = (), checkpoint: str = "last"
             ) -> tuple[dict[str, Any], Config]:
    """A run's checkpoint (see :func:`checkpoint_path`) and its saved config, with ``overrides``
    (e.g. device, data_dir) applied.

    Import paths in the saved config are imported only if ``trusted_imports`` names them
    (:func:`~pyro_vae.config.check_trusted_imports`): opening a run runs no code of its author's.
    """
    state = load_checkpoint(checkpoint_path(run_dir, checkpoint))
    return state, run_config(state, run_dir, overrides, trusted_imports)


def run_config(state: dict[str, Any], run_dir, overrides: Optional[dict[str, Any]] = None,
               trusted_imports: Iterable[str] = ()) -> Config:
    """The config saved in a checkpoint ``state`` read from ``run_dir``, with ``overrides``; import
    paths only if trusted (see :func:`load_run`)."""
    values = saved_config(state["config"], trusted_imports, f"the checkpoint in {run_dir}")
    return make_config({**values, **(overrides or {})})


def load_weights(module: torch.nn.Module | torch.optim.Optimizer, weights: dict, run_dir) -> None:
    """``module.load_state_dict(weights)``, or a CheckpointError that names the run."""
    try:
        module.load_state_dict(weights)
    except (RuntimeError, KeyError, ValueError) as e:
        raise CheckpointError(f"the checkpoint in {run_dir} does not fit the model its config "
                              f"describes ({e})") from None
