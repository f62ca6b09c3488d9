"""Early stopping: the run ends once ``early_stopping`` epochs pass without a better validation
ELBO (the best epoch's weights are best.pt, or in memory
:class:`~pyro_vae.training.callbacks.checkpoint.BestWeightsInMemory`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from pyro_vae.training.callbacks import Callback
from pyro_vae.training.state import TrainingState

if TYPE_CHECKING:
    from pyro_vae.training.trainer import Trainer


def stopped_early(state: TrainingState, patience: Optional[int]) -> bool:
    """Whether ``patience`` epochs have passed without a better validation ELBO."""
    return bool(patience and state.best and state.epoch - state.best["epoch"] >= patience)


def stop_reason(state: TrainingState, patience: Optional[int]) -> str:
    what = "validation accuracy" if "valid_accuracy" in state.best else "validation ELBO"
    return f"no better {what} for {patience} epochs; the best was {state.best_text()} at epoch {state.best['epoch']}"


class EarlyStopping(Callback):
    def __init__(self, patience: int):
        self.patience = patience

    def should_stop(self, trainer: "Trainer") -> Optional[str]:
        if stopped_early(trainer.state, self.patience):
            return stop_reason(trainer.state, self.patience)
        return None
