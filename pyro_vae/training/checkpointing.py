"""What a checkpoint holds, and how a trainer takes it back (the file format:
:mod:`pyro_vae.runs.checkpoint`; its schema: :mod:`pyro_vae.runs.checkpoint_schema`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

import pyro
import torch
from torch.distributions import constraints

from pyro_vae.runs.opening import load_weights
from pyro_vae.runs.rundir import RunDir
from pyro_vae.training.graphed import portable_state
from pyro_vae.training.rng import rng_state, set_rng_state
from pyro_vae.training.state import TrainingState

if TYPE_CHECKING:
    from pyro_vae.training.trainer import Trainer


def non_module_params() -> dict[str, torch.Tensor]:
    """Param-store state that lives outside the modules, e.g. the decaying average of
    TraceGraph_ELBO's baselines: without it a resumed run would restart the average."""
    store = pyro.get_param_store()
    return {name: store[name].detach().clone() for name in store.keys() if "$$$" not in name}


def checkpoint_state(trainer: "Trainer") -> dict[str, Any]:
    """Everything a resume needs, as of now (called inside the fit: the run's own generators and
    param store are the live ones)."""
    state = trainer.state
    return {"epoch": state.epoch, "step": state.step, "config": trainer.cfg.to_flat(),
            "model": trainer.model.state_dict(), "optimizer": portable_state(trainer.optimizer),
            "rng": rng_state(trainer.device), "metrics": state.history,
            "wall_seconds": state.wall_seconds, "pyro_params": non_module_params(),
            "best": state.best}


def restore(trainer: "Trainer", checkpoint: dict[str, Any], run: RunDir) -> tuple[TrainingState, dict, Optional[str]]:
    """Load ``checkpoint`` (read from ``run``) into the trainer's model and
    optimizer and the live generators; returns the run's state, its param-store scope and a note
    where a generator could not be restored (a run moved between the CPU and a GPU)."""
    load_weights(trainer.model, checkpoint["model"], run.path)
    load_weights(trainer.optimizer, checkpoint["optimizer"], run.path)
    pyro_params = {k: v.to(trainer.device) for k, v in checkpoint.get("pyro_params", {}).items()}
    scope = {"params": pyro_params, "constraints": {k: constraints.real for k in pyro_params}}
    note = set_rng_state(checkpoint["rng"], trainer.device, run.checkpoint_path)
    return TrainingState.from_checkpoint(checkpoint), scope, note
