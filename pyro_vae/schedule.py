"""Learning-rate schedules as pure functions of the epoch (so resuming needs no extra state)."""

from __future__ import annotations

LR_SCHEDULES = ("constant", "iwae")
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


def learning_rate(schedule: str, base_lr: float, epoch: int, scale: float = 1.0) -> float:
    """The learning rate for ``epoch`` (1-based)."""
    if schedule == "constant":
        return base_lr
    if schedule == "iwae":
        return base_lr * 10 ** (-iwae_stage(epoch, scale) / 7)
    raise ValueError(f"unknown lr_schedule {schedule!r}; choose one of {', '.join(LR_SCHEDULES)}")
