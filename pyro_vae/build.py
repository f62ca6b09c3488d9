"""Building a model from a config, and reopening a trained run: the one place both happen.

Training, evaluation, figures and the gradient diagnostic all build models and reopen runs;
they import this module, which imports none of them (no import cycle). Reopening goes through
:func:`load_run`, which never imports code that the saved config names unless the caller trusts
it (:func:`~pyro_vae.config.check_trusted_imports`).

Every model is built by :func:`build_model`, which first refuses sizes whose parameters the
machine could not hold (:func:`~pyro_vae.workload.check_model_size`): a config or a shared checkpoint asking for layers
of 10^12 units gets one line, not an allocation that the kernel kills.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import torch

from . import models
from .checkpoint import load_checkpoint
from .config import Config, make_config, saved_config, validate
from .data import IMAGE_SHAPE
from .distributed import check_own_gpu
from .errors import CheckpointError, ConfigError, UntrustedImportError
from .objectives import check_structure
from .rundir import RunDir
from .sites import Structure, probe
from .workload import check_model_size

__all__ = ["build_model", "load_run", "load_weights", "model_structure",
           "resolve_device", "run_config", "saved_run_values"]


def build_model(cfg: Config, image_shape: Sequence[int] = IMAGE_SHAPE,
                train_data: Optional[torch.Tensor] = None) -> torch.nn.Module:
    """The model ``cfg`` describes (:func:`pyro_vae.models.build_model`), after
    :func:`~pyro_vae.workload.check_model_size`: nothing is allocated for sizes the machine
    cannot hold."""
    check_model_size(cfg, image_shape)
    return models.build_model(cfg, image_shape, train_data)


def resolve_device(name: str) -> torch.device:
    """The device of "cpu", "cuda" or "auto" (cuda where PyTorch sees a GPU). In a torchrun job,
    "cuda" is the rank's own GPU, and a job with more ranks on a machine than GPUs is refused
    (:func:`~pyro_vae.distributed.check_own_gpu`)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was asked for but PyTorch sees no CUDA GPU; use "
                          "--device cpu (or auto)")
    if name == "cuda":
        check_own_gpu()
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
    path = checkpoint_path(run_dir, checkpoint)
    state = load_checkpoint(path)
    return state, run_config(state, run_dir, overrides, trusted_imports, source=str(path))


def saved_run_values(state: dict[str, Any], source: str, trusted_imports: Iterable[str] = ()
                     ) -> dict[str, Any]:
    """The config saved in a checkpoint ``state`` (read from ``source``) as checked, typed values.

    Its types were checked on load (:mod:`~pyro_vae.checkpoint_schema`); here import paths are
    refused unless trusted, and the whole must be a config that :func:`~pyro_vae.config.validate`
    accepts (of a model the machine can hold, among the rest). Anything else is the
    checkpoint's fault, not the user's: a one-line CheckpointError naming ``source`` and the field.
    """
    values = saved_config(state["config"], trusted_imports, source)
    try:
        validate(Config(**values))
    except UntrustedImportError:
        raise
    except ConfigError as e:
        raise CheckpointError(f"{source}: field 'config' holds a configuration that pyro-vae "
                              f"refuses: {e}") from None
    return values


def run_config(state: dict[str, Any], run_dir, overrides: Optional[dict[str, Any]] = None,
               trusted_imports: Iterable[str] = (), source: Optional[str] = None) -> Config:
    """The config saved in a checkpoint ``state`` read from ``run_dir`` (the file ``source``),
    checked (:func:`saved_run_values`), with ``overrides``; import paths only if trusted (see
    :func:`load_run`)."""
    values = saved_run_values(state, source or f"the checkpoint in {run_dir}", trusted_imports)
    return make_config({**values, **(overrides or {})})


def load_weights(module: torch.nn.Module | torch.optim.Optimizer, weights: dict, run_dir) -> None:
    """``module.load_state_dict(weights)``, or a one-line CheckpointError that names the run and
    the field ("model" or "optimizer"). An optimizer's moments are checked against the shapes of
    the parameters they belong to (torch would fail on the first step, or broadcast them)."""
    field = "optimizer" if isinstance(module, torch.optim.Optimizer) else "model"
    try:
        if isinstance(module, torch.optim.Optimizer):
            _check_moment_shapes(module, weights)
        module.load_state_dict(weights)
    except (RuntimeError, KeyError, ValueError, TypeError) as e:
        detail = " ".join(str(e).split())
        detail = detail if len(detail) <= 300 else detail[:297] + "..."
        raise CheckpointError(f"the checkpoint in {run_dir}: field {field!r} does not fit the model "
                              f"its config describes ({detail})") from None


def _check_moment_shapes(optimizer: torch.optim.Optimizer, saved: dict) -> None:
    """Each saved tensor of per-parameter state has its parameter's shape; parameters are
    matched to saved ids in order, as ``Optimizer.load_state_dict`` does."""
    ids = [i for group in saved["param_groups"] for i in group["params"]]
    params = [p for group in optimizer.param_groups for p in group["params"]]
    if len(ids) != len(params):
        raise ValueError(f"it lists {len(ids)} parameters, the model has {len(params)}")
    by_id = dict(zip(ids, params))
    for i, entries in saved["state"].items():
        for name, value in entries.items():
            if name != "step" and isinstance(value, torch.Tensor) and value.shape != by_id[i].shape:
                raise ValueError(f"state[{i}].{name} has shape {tuple(value.shape)}, its parameter "
                                 f"{tuple(by_id[i].shape)}")
