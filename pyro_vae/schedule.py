"""Learning-rate schedules as pure functions of the epoch (so resuming needs no extra state)."""

from __future__ import annotations

LR_SCHEDULES = ("constant", "iwae")


def iwae_stage(epoch: int) -> int:
    """Burda et al. (2016): stage i lasts 3^i epochs, i = 0..7 (3280 epochs); later epochs stay
    in the last stage. ``epoch`` counts from 1."""
    stage, end = 0, 1
    while epoch > end and stage < 7:
        stage += 1
        end += 3 ** stage
    return stage


def learning_rate(schedule: str, base_lr: float, epoch: int) -> float:
    """The learning rate for ``epoch`` (1-based)."""
    if schedule == "constant":
        return base_lr
    if schedule == "iwae":
        return base_lr * 10 ** (-iwae_stage(epoch) / 7)
    raise ValueError(f"unknown lr_schedule {schedule!r}; choose one of {', '.join(LR_SCHEDULES)}")
