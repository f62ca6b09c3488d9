"""The observation model: independent Bernoulli pixels on logits, as one event.

This is ``dist.Bernoulli(logits=...).to_event(1)`` with one change: ``log_prob`` sums the
per-pixel binary cross-entropies *before* negating. Torch's ``Bernoulli.log_prob`` negates all
K x B x 784 values and ``Independent`` sums afterwards, a full extra pass over the largest tensor
of an importance-sampling evaluation (about 5% of its time). Numerically it is the same stable
``binary_cross_entropy_with_logits``: no clamping, no probabilities.
"""

from __future__ import annotations

import pyro.distributions as dist
import torch
from torch.distributions.utils import broadcast_all
from torch.nn import functional as F


class BernoulliPixels(dist.Independent):
    def __init__(self, logits: torch.Tensor, validate_args=None):
        super().__init__(dist.Bernoulli(logits=logits), 1, validate_args=validate_args)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        logits, value = broadcast_all(self.base_dist.logits, value)
        return -F.binary_cross_entropy_with_logits(logits, value, reduction="none").sum(-1)

    def expand(self, batch_shape, _instance=None):
        return BernoulliPixels(self.base_dist.logits.expand(torch.Size(batch_shape) + self.event_shape))
