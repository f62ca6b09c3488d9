"""A training-time budget: the run ends after the epoch at which its steps have taken
``max_minutes`` in all, so that objectives of different cost per step can be compared at equal
training time (the discrete-estimator comparison of issue 26)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from pyro_vae.training.callbacks import Callback

if TYPE_CHECKING:
    from pyro_vae.training.trainer import Trainer


def training_seconds(history: list[dict]) -> float:
    """The seconds spent in training steps over the recorded epochs (evaluation excluded; runs
    recorded before ``train_seconds`` existed count their whole epochs)."""
    return sum(r.get("train_seconds", r.get("epoch_seconds", 0.0)) for r in history)


class TimeLimit(Callback):
    def __init__(self, minutes: float):
        self.minutes = minutes

    def should_stop(self, trainer: "Trainer") -> Optional[str]:
        spent = training_seconds(trainer.state.history)
        if spent >= 60 * self.minutes:
            return (f"the training time budget of {self.minutes:g} minutes is spent "
                    f"({spent / 60:.1f} minutes of steps in {trainer.state.epoch} epochs)")
        return None
