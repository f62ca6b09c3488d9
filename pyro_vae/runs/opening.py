"""Reopening a trained run: its checkpoint, its saved config and the model they rebuild.

Evaluation, figures, resuming and the gradient diagnostic all reopen runs through
:func:`load_run`, which never imports code that the saved config names unless the caller trusts
it (:func:`~pyro_vae.config.check_trusted_imports`), and checks every saved tensor's shape
against the model the config rebuilds before loading it (:func:`load_weights`). Opening writes
nothing.

A run whose model (prior, objective, data) was an object made in Python records it by its class
(:func:`~pyro_vae.core.registry.instance_name`), and no config can rebuild it: such a run opens
only where the caller passes the object again, and is refused otherwise in one line that says
what to pass (:func:`check_objects_given`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Collection, Iterable, Optional

import torch

from pyro_vae.config import Config, make_config, saved_config, validate
from pyro_vae.core.errors import CheckpointError, ConfigError, UntrustedImportError
from pyro_vae.core.options import uses_flags
from pyro_vae.core.registry import instance_class
from pyro_vae.runs.checkpoint import load_checkpoint
from pyro_vae.runs.rundir import RunDir

__all__ = ["checkpoint_path", "check_objects_given", "load_run", "load_weights", "recorded_objects",
           "run_config", "saved_run_values", "OBJECT_KEYWORDS"]


# Config keys whose value may record an object made in Python -> the keyword argument that
# passes such an object (pyro_vae.train, open_run, resume).
OBJECT_KEYWORDS = {"model": "model", "prior": "prior", "elbo": "elbo", "dataset": "data"}
_MADE_WITH = {"model": "trained from", "prior": "trained with a prior that was",
              "elbo": "trained with an objective that was", "dataset": "trained on data that were"}

CHECKPOINTS = ("best", "last")


def checkpoint_path(run_dir, checkpoint: str = "last") -> Path:
    """The file of ``checkpoint``: "last" is checkpoint.pt; "best" is best.pt (the epoch with the
    best validation ELBO), or checkpoint.pt for a run that has no best.pt (no validation split)."""
    run = RunDir(run_dir)
    if checkpoint not in CHECKPOINTS:
        raise ConfigError(f"unknown checkpoint {checkpoint!r}; choose one of {', '.join(CHECKPOINTS)}")
    return run.best_path if checkpoint == "best" and run.best_path.exists() else run.checkpoint_path


def load_run(run_dir, overrides: Optional[dict[str, Any]] = None,
             trusted_imports: Iterable[str] = (), checkpoint: str = "last",
             objects: Collection[str] = ()) -> tuple[dict[str, Any], Config]:
    """A run's checkpoint (see :func:`checkpoint_path`) and its saved config, with ``overrides``
    (e.g. device, data_dir) applied.

    Import paths in the saved config are imported only if ``trusted_imports`` names them
    (:func:`~pyro_vae.config.check_trusted_imports`): opening a run runs no code of its author's.
    ``objects``: the config keys whose objects the caller passes itself (see
    :func:`check_objects_given`).
    """
    path = checkpoint_path(run_dir, checkpoint)
    state = load_checkpoint(path)
    return state, run_config(state, run_dir, overrides, trusted_imports, source=str(path), objects=objects)


def saved_run_values(state: dict[str, Any], source: str, trusted_imports: Iterable[str] = ()
                     ) -> dict[str, Any]:
    """The config saved in a checkpoint ``state`` (read from ``source``) as checked, typed values.

    Its types were checked on load (:mod:`~pyro_vae.runs.checkpoint_schema`); here import paths are
    refused unless trusted, and the whole must be a config that :func:`~pyro_vae.config.validate`
    accepts (of a model the machine can hold, among the rest). Anything else is the
    checkpoint's fault, not the user's: a one-line CheckpointError naming ``source`` and the field.
    """
    values = saved_config(state["config"], trusted_imports, source)
    try:
        validate(Config.from_flat(**values))
    except UntrustedImportError:
        raise
    except ConfigError as e:
        raise CheckpointError(f"{source}: field 'config' holds a configuration that pyro-vae "
                              f"refuses: {e}") from None
    return values


def run_config(state: dict[str, Any], run_dir, overrides: Optional[dict[str, Any]] = None,
               trusted_imports: Iterable[str] = (), source: Optional[str] = None,
               objects: Collection[str] = ()) -> Config:
    """The config saved in a checkpoint ``state`` read from ``run_dir`` (the file ``source``),
    checked (:func:`saved_run_values`), with ``overrides``; import paths only if trusted (see
    :func:`load_run`); a model or prior that was an object only if ``objects`` names it (see
    :func:`check_objects_given`)."""
    values = saved_run_values(state, source or f"the checkpoint in {run_dir}", trusted_imports)
    check_objects_given(values, objects, run_dir)
    return make_config({**values, **(overrides or {})})


def recorded_objects(values: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """Config key -> (class, module), for each of :data:`OBJECT_KEYWORDS` whose value in a run's
    saved config ``values`` records an object made in Python. Read as data: nothing is imported."""
    found = {key: instance_class(values.get(key)) for key in OBJECT_KEYWORDS}
    return {key: cls for key, cls in found.items() if cls}


def check_objects_given(values: dict[str, Any], objects: Collection[str], run_dir,
                        needed: Collection[str] = ("model", "prior")) -> None:
    """Refuse to open the run in ``run_dir`` (saved config ``values``) where a key of ``needed``
    records an object made in Python that the caller does not pass (``objects``): its class's
    name cannot rebuild it, for the arguments it was made with are not recorded. A model passed
    holds its own prior. The message says what to pass, in Python (the commands cannot pass one)."""
    missing = recorded_objects(values)
    if "model" in objects:
        missing.pop("prior", None)
    for key in needed:
        if key in missing and key not in objects:
            qualname, module = missing[key]
            keyword = f"{OBJECT_KEYWORDS[key]}={qualname}(...)"
            what = (f"open or resume it in Python with {keyword} (pyro_vae.open_run({str(run_dir)!r}, "
                    f"{keyword}), pyro_vae.resume)" if uses_flags() else f"pass {keyword}")
            raise ConfigError(f"{run_dir} was {_MADE_WITH[key]} an instance of {qualname} (from module "
                              f"{module}) that cannot be rebuilt from its config: {what}")


def load_weights(module: torch.nn.Module | torch.optim.Optimizer, weights: dict, run_dir,
                 against: str = "the model its config describes") -> None:
    """``module.load_state_dict(weights)``, or a one-line CheckpointError that names the run and
    the field ("model" or "optimizer"): every tensor must be there, with its shape, and nothing
    else. An optimizer's moments are checked against the shapes of the parameters they belong to
    (torch would fail on the first step, or broadcast them). ``against``: what ``module`` is, for
    the message."""
    field = "optimizer" if isinstance(module, torch.optim.Optimizer) else "model"
    try:
        if isinstance(module, torch.optim.Optimizer):
            _check_moment_shapes(module, weights)
        module.load_state_dict(weights)
    except (RuntimeError, KeyError, ValueError, TypeError) as e:
        detail = " ".join(str(e).split())
        detail = detail if len(detail) <= 300 else detail[:297] + "..."
        raise CheckpointError(f"the checkpoint in {run_dir}: field {field!r} does not fit {against} "
                              f"({detail})") from None


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
