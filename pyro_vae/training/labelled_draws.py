"""Which labelled images each step of a semi-supervised epoch takes.

An epoch is a pass over the unlabelled images, ``batch_size`` per step; every step also takes
``labelled_batch_size`` labelled images, in turn from fresh shuffles of the labelled set, so the
proportion of labelled to unlabelled images is the same in every step (a fixed mix, rather than
Pyro's tutorial's whole labelled batches every so many steps: each step's gradient then has both
terms, and the compiled step is traced once, for one set of shapes). The shuffles are drawn from
the run's generator when the epoch starts, after the unlabelled order, so a resumed run draws
what an uninterrupted one does.
"""

from __future__ import annotations

import math
from typing import Optional

import torch

from pyro_vae.data import VAEData


def labelled_per_step(data: VAEData, batch_size: int, given: Optional[int]) -> int:
    """``given``, or the labelled images' share of a step: ceil(batch_size x labelled /
    unlabelled), at least 1 (an epoch then sees each labelled image about once)."""
    if given is not None:
        return given
    return max(1, math.ceil(batch_size * len(data.labelled) / len(data.train)))


class LabelledDraws:
    """The labelled images of the steps of one epoch at a time (see the module docstring)."""

    def __init__(self, data: VAEData, per_step: int):
        self.data, self.per_step = data, per_step
        self.order: Optional[torch.Tensor] = None

    def start_epoch(self, num_batches: int, device: torch.device) -> None:
        needed, size = num_batches * self.per_step, len(self.data.labelled)
        shuffles = [torch.randperm(size, device=device) for _ in range(math.ceil(needed / size))]
        self.order = torch.cat(shuffles)[:needed]

    def batch(self, b: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x_labelled, y_labelled)`` of step ``b`` of the epoch."""
        return self.data.labelled_batch(self.order[b * self.per_step:(b + 1) * self.per_step])

    def first(self) -> tuple[torch.Tensor, torch.Tensor]:
        """A step's worth of labelled images without drawing (to compile the step)."""
        return self.data.labelled_batch(torch.arange(self.per_step, device=self.data.labelled.x.device)
                                        % len(self.data.labelled))
