"""Sticking the landing, STL (Roeder, Wu & Duvenaud 2017).

The reparameterized ELBO gradient for the guide's parameters has two parts: the path through
z and a score-function term E_q[grad_phi log q(z | x)], which is zero in expectation but not
per sample. STL drops it by evaluating log q at fixed parameters (only the path through z), an
unbiased estimator whose variance vanishes as q approaches the true posterior.
"""

from __future__ import annotations

import torch

from ..importance import data_scale, log_weights
from .base import PerDatapointELBO, single_latent


class STL_ELBO(PerDatapointELBO):
    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        traces = self._traces(model, guide, args, kwargs)
        single_latent(traces)
        return -data_scale(traces) * log_weights(traces, path_only_guide=True).mean(0).sum()
