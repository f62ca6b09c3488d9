"""Learning-rate schedules as pure functions of the epoch (so resuming needs no extra state)."""

from __future__ import annotations

from pyro_vae.core.choices import publish
from pyro_vae.core.registry import Registry

# name -> ``rate(base_lr, epoch, scale) -> lr``, for ``lr_schedule``.
LR_SCHEDULES = Registry(
    "lr_schedule",
    reads=(),  # the config keys it reads besides lr (flat keys); set under another, refused
)
publish("lr_schedule", LR_SCHEDULES)
IWAE_STAGES = 8  # i = 0..7: 3280 epochs in all


def iwae_stage(epoch: int, scale: float = 1.0) -> int:
    """Burda et al. (2016): stage i lasts 3^i epochs, i = 0..7 (3280 epochs); later epochs stay
    in the last stage. ``epoch`` counts from 1.

    ``scale`` stretches every stage to 3^i * scale epochs (``lr_schedule_scale``; 0.1 fits the
    whole schedule into 328 epochs). An epoch belongs to the stage that holds its midpoint.
    """
    t = (epoch - 0.5) / scale  # the epoch's midpoint on the paper's time axis
    stage = 0
    while stage < IWAE_STAGES - 1 and t >= (3 ** (stage + 1) - 1) / 2:  # stage i+1 starts there
        stage += 1
    return stage


@LR_SCHEDULES.register("constant", description="the base learning rate throughout")
def _constant(base_lr: float, epoch: int, scale: float) -> float:
    return base_lr


@LR_SCHEDULES.register("iwae", reads=("lr_schedule_scale",), description="Burda et al.'s staged decay: 10^(-i/7) in stage i")
def _iwae(base_lr: float, epoch: int, scale: float) -> float:
    return base_lr * 10 ** (-iwae_stage(epoch, scale) / 7)


def learning_rate(schedule: str, base_lr: float, epoch: int, scale: float = 1.0) -> float:
    """The learning rate for ``epoch`` (1-based)."""
    return LR_SCHEDULES.get(schedule).factory(base_lr, epoch, scale)
