"""``--likelihood continuous-bernoulli``: the continuous Bernoulli of Loaiza-Ganem & Cunningham
(2019), a proper density on [0, 1] with the Bernoulli's shape, p(x | l) = C(l) sigmoid(l)^x
sigmoid(-l)^(1 - x), its normalizing constant C included (torch's ``ContinuousBernoulli``, which
switches to a Taylor expansion of log C near l = 0, where the closed form is 0/0). It is what a
Bernoulli "on grey levels" should have been: without C, the Bernoulli's cross-entropy on values in
(0, 1) is not a log-density, and its optimum is not the data.
"""

from __future__ import annotations

import pyro.distributions as dist
import torch

from pyro_vae.models.likelihoods.base import Likelihood
from pyro_vae.models.likelihoods.bernoulli import logit


class ContinuousBernoulli(Likelihood):
    """One logit per value; scores values in [0, 1] (dequantized 8-bit data)."""

    data = "continuous"

    def distribution(self, output: torch.Tensor) -> dist.TorchDistribution:
        return dist.ContinuousBernoulli(logits=output).to_event(1)

    def output_bias(self, mean_image: torch.Tensor) -> torch.Tensor:
        # lambda whose mean is the mean pixel is not the logit of it; the logit is close for the
        # mid-range and a good start anyway
        return logit(mean_image.reshape(self.image_shape))
