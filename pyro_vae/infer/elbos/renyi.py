"""Importance-weighted bounds: IWAE (Burda et al. 2016) and the Renyi family (Li & Turner 2016).

Per data point, with K importance weights w_k = p(x, z_k) / q(z_k | x), z_k ~ q:

    L_alpha = 1/(1 - alpha) * log( (1/K) sum_k w_k^(1 - alpha) ),

alpha = 0 is the IWAE bound and alpha -> 1 the ELBO. Unlike Pyro's ``RenyiELBO``, the bound is
taken per data point and any subsampling scale (N/B) multiplies it *outside* the logsumexp, so
it stays an unbiased estimate of the full-data objective under minibatching.
"""

from __future__ import annotations

import torch

from pyro_vae.infer.elbos.base import PerDatapointELBO, iwae_bound
from pyro_vae.infer.importance import data_scale, log_weights


class RenyiBound(PerDatapointELBO):
    def __init__(self, alpha: float = 0.0, num_particles: int = 2, **kwargs):
        super().__init__(num_particles=num_particles, **kwargs)
        self.alpha = alpha

    def bound(self, log_w: torch.Tensor) -> torch.Tensor:
        """``(B,)`` bound values from ``(K, B)`` log-weights."""
        if self.alpha == 1:
            return log_w.mean(0)
        return iwae_bound((1 - self.alpha) * log_w) / (1 - self.alpha)

    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        traces = self._traces(model, guide, args, kwargs)
        return -data_scale(traces) * self.bound(log_weights(traces)).sum()


class IWAE_ELBO(RenyiBound):
    """The importance-weighted bound (Renyi alpha = 0), reparameterized gradient."""

    def __init__(self, num_particles: int = 2, **kwargs):
        super().__init__(alpha=0.0, num_particles=num_particles, **kwargs)
