"""A small base for objectives built from per-datapoint importance log-weights.

Subclasses define :meth:`differentiable_loss`; ``loss`` and ``loss_and_grads`` follow, so the
objects plug into ``pyro.infer.SVI`` and pyro-vae's trainer like any Pyro ELBO. Particles are
always vectorized (the networks accept ``(K, B, ...)`` inputs).
"""

from __future__ import annotations

import math

import torch
from pyro.infer import ELBO
from pyro.infer.util import torch_item
from pyro.util import warn_if_nan

from ..importance import ParticleTraces, trace_particles
from ..model import MAX_PLATE_NESTING


class PerDatapointELBO(ELBO):
    def __init__(self, num_particles: int = 1, max_plate_nesting: int = MAX_PLATE_NESTING):
        super().__init__(num_particles=num_particles, max_plate_nesting=max_plate_nesting,
                         vectorize_particles=True)

    def _traces(self, model, guide, args, kwargs) -> ParticleTraces:
        return trace_particles(model, guide, *args, num_samples=self.num_particles,
                               max_plate_nesting=self.max_plate_nesting, **kwargs)

    def _get_trace(self, model, guide, args, kwargs):
        """Pyro's hook: the (model, guide) trace pair, here with all particles vectorized."""
        traces = self._traces(model, guide, args, kwargs)
        return traces.model, traces.guide

    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        raise NotImplementedError

    def loss(self, model, guide, *args, **kwargs) -> float:
        with torch.no_grad():
            return torch_item(self.differentiable_loss(model, guide, *args, **kwargs))

    def loss_and_grads(self, model, guide, *args, **kwargs) -> float:
        loss = self.differentiable_loss(model, guide, *args, **kwargs)
        loss.backward()
        loss = torch_item(loss)
        warn_if_nan(loss, "loss")
        return loss


def single_latent(traces) -> None:
    """Path-derivative estimators here assume one reparameterized latent site: with z2 ~ q(z2|z1)
    the detached log q would also cut z2's dependence on z1, and DReG's hooks would compound."""
    from ..importance import reparameterized_latents

    if len(reparameterized_latents(traces)) > 1:
        raise NotImplementedError("stl and dreg support guides with one reparameterized latent "
                                  "site; use iwae or trace for hierarchical guides")


def iwae_bound(log_w: torch.Tensor) -> torch.Tensor:
    """log (1/K) sum_k w_k per data point, from ``(K, B)`` log-weights."""
    return torch.logsumexp(log_w, dim=0) - math.log(log_w.shape[0])


def with_value(value: torch.Tensor, surrogate: torch.Tensor) -> torch.Tensor:
    """A tensor equal to ``value`` whose gradient is ``surrogate``'s."""
    return value.detach() + (surrogate - surrogate.detach())
