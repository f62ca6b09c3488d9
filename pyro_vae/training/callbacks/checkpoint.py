"""Saving each epoch: into the run directory, or, for a run in memory, its best weights."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

import torch

from pyro_vae.core.errors import WriteError
from pyro_vae.runs.checkpoint import save_checkpoint
from pyro_vae.training.callbacks import Callback
from pyro_vae.training.checkpointing import checkpoint_state

if TYPE_CHECKING:
    from pyro_vae.training.trainer import Trainer


class Checkpointing(Callback):
    """After every epoch: best.pt if the epoch has the best validation ELBO, then checkpoint.pt,
    then config.yaml and metrics.jsonl, all from the same state. best.pt comes first so that the
    checkpoint never names a best epoch that is not on disk; the checkpoint comes before the two
    copies, so that it is the run's source of truth (a resume repairs the copies from it)."""

    def on_epoch_end(self, trainer: "Trainer", record: dict[str, Any]) -> None:
        run, state = trainer.run, trainer.state
        try:
            payload = checkpoint_state(trainer)
            if state.is_best(record["epoch"]):
                save_checkpoint(payload, run.best_path)
            save_checkpoint(payload, run.checkpoint_path)
            state.saved_epoch = state.epoch
            run.write_config(trainer.cfg.to_flat())
            run.write_metrics(state.history)
        except WriteError as e:
            raise WriteError(f"{e}. {trainer.kept()}", e.errno) from None


class BestWeightsInMemory(Callback):
    """A run in memory with early stopping: the weights of the best epoch are kept (a copy, in
    memory) and put back into the model when training ends, as best.pt would be evaluated."""

    every_rank = True  # every rank's model ends with the best weights

    def __init__(self) -> None:
        self.weights: Optional[dict[str, torch.Tensor]] = None
        self.epoch = 0

    def on_epoch_end(self, trainer: "Trainer", record: dict[str, Any]) -> None:
        if trainer.state.is_best(record["epoch"]):
            self.weights = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
            self.epoch = record["epoch"]

    def on_fit_end(self, trainer: "Trainer") -> None:
        if self.weights is not None and self.epoch != trainer.state.epoch:
            trainer.model.load_state_dict(self.weights)
            trainer.state.model_epoch = self.epoch
