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

from pyro_vae.infer.elbos.path import path_log_density, with_values
from pyro_vae.infer.importance import ParticleTraces, log_density, replay_model, trace_guide, trace_particles
from pyro_vae.models.sites import MAX_PLATE_NESTING


class PerDatapointELBO(ELBO):
    def __init__(self, num_particles: int = 1, max_plate_nesting: int = MAX_PLATE_NESTING):
        super().__init__(num_particles=num_particles, max_plate_nesting=max_plate_nesting,
                         vectorize_particles=True)

    def _traces(self, model, guide, args, kwargs) -> ParticleTraces:
        return trace_particles(model, guide, *args, num_samples=self.num_particles,
                               max_plate_nesting=self.max_plate_nesting, **kwargs)

    def _path_traces(self, model, guide, args, kwargs, primed: bool = False):
        """``(K, B)`` log-weights with log q at stopped guide parameters (the path derivative,
        :mod:`pyro_vae.infer.elbos.path`), and the reparameterized latent values they depend on.

        With ``primed``, each reparameterized value enters the log-weight through an identity
        node of its own (``z.view_as(z)``, returned): a hook there scales only the gradient that
        flows from the log-weight into that site, not again the part that reached it through a
        site sampled from it (q(z2 | z1) in a hierarchical guide).
        """
        options = {"num_samples": self.num_particles, "max_plate_nesting": self.max_plate_nesting}
        guide_trace = trace_guide(guide, *args, **options, **kwargs)
        values = {s["name"]: s["value"] for s in guide_trace.nodes.values()
                  if s["type"] == "sample" and not s["is_observed"] and s["fn"].has_rsample}
        if primed:
            values = {name: value.view_as(value) for name, value in values.items()}
            guide_trace = with_values(guide_trace, values)
        model_trace = replay_model(model, guide_trace, *args, **options, **kwargs)
        log_q = path_log_density(guide, guide_trace, args, kwargs, **options)
        return log_density(model_trace) - log_q, ParticleTraces(model_trace, guide_trace, self.num_particles), values

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


def iwae_bound(log_w: torch.Tensor) -> torch.Tensor:
    """log (1/K) sum_k w_k per data point, from ``(K, B)`` log-weights."""
    return torch.logsumexp(log_w, dim=0) - math.log(log_w.shape[0])


def with_value(value: torch.Tensor, surrogate: torch.Tensor) -> torch.Tensor:
    """A tensor equal to ``value`` whose gradient is ``surrogate``'s."""
    return value.detach() + (surrogate - surrogate.detach())
