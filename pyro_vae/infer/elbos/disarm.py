"""ARM (Yin & Zhou 2019) and DisARM (Dong, Mnih & Tucker 2020): unbiased antithetic gradients of
the ELBO for guides whose latent sites are all Bernoulli, with no extra networks.

For a Bernoulli layer with logits a, one uniform draw u gives b = 1[u < sigmoid(a)] and
b~ = 1[1 - u < sigmoid(a)], both marginally draws from q. With f = log p(x, z) - log q(z | x),
the ELBO's integrand, per data point:

- ARM:    grad_a = (f(b~) - f(b)) * (u - 1/2);
- DisARM: grad_a_i = 1/2 (f(b) - f(b~)) (-1)^(b~_i) 1[b_i != b~_i] sigmoid(|a_i|),

DisARM being ARM with u integrated out given the pair (b, b~): never noisier, and zero for the
units where the pair agrees. Both estimate d/da E_q[f] with f held fixed; f's own dependence on
the guide's parameters, -grad log q(z) at fixed z, has mean zero and is dropped. The model's
parameters get the mean over the evaluated particles of grad log p(x, z) (each particle is
marginally a draw from q).

Several layers (z2 ~ q(z2 | z1)): L + 1 particles (:mod:`.antithetic`); layer l's estimator
compares f at particle 0 with f at particle l, which differs from it at layer l (antithetic)
and below (redrawn from the same noise). Given layer l's noise, both are unbiased estimates of
the expected f below that layer, and the estimators are linear in them: the gradient stays
unbiased (tested against the exact gradient of a two-layer model).

Each layer's gradient g enters through a surrogate sum(stop(g) * a) on the logits a of the
traced guide site, so one backward pass delivers it to the guide's parameters and the whole
step traces into a graph (:mod:`pyro_vae.infer.lowering`). ``num_particles`` K: K independent
groups of L + 1 particles, their gradients averaged (K * (L + 1) evaluations of the model).
"""

from __future__ import annotations

from typing import Callable

import torch

from pyro_vae.infer.elbos.antithetic import AntitheticBernoulli, bernoulli_layers, per_unit, site_logits
from pyro_vae.infer.elbos.base import PerDatapointELBO, with_value
from pyro_vae.infer.importance import ParticleTraces, data_scale, log_density, replay_model, trace_guide


class AntitheticELBO(PerDatapointELBO):
    """The shared machinery; subclasses define :meth:`logit_gradient`."""

    def __init__(self, num_particles: int = 1, **kwargs):
        super().__init__(num_particles=num_particles, **kwargs)
        self._layers: dict[Callable, tuple[str, ...]] = {}

    def logit_gradient(self, f: torch.Tensor, f_flipped: torch.Tensor, b: torch.Tensor,
                       b_flipped: torch.Tensor, u: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """d E_q[f] / d logits, ``(K, B, *event)``, from f at the pair ``(K, B)`` and the pair's
        codes, noise and logits ``(K, B, *event)``."""
        raise NotImplementedError

    def layers(self, guide: Callable, args, kwargs) -> tuple[str, ...]:
        """The guide's Bernoulli layers, found once per guide (a run of it that changes no state)."""
        if guide not in self._layers:
            self._layers[guide] = bernoulli_layers(guide, args, kwargs)
        return self._layers[guide]

    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        layers, groups = self.layers(guide, args, kwargs), self.num_particles
        particles = (len(layers) + 1) * groups
        options = {"num_samples": particles, "max_plate_nesting": self.max_plate_nesting}
        antithetic = AntitheticBernoulli(layers, groups)
        with antithetic:
            guide_trace = trace_guide(guide, *args, **options, **kwargs)
        model_trace = replay_model(model, guide_trace, *args, **options, **kwargs)
        blocks = (len(layers) + 1, groups)  # particle j of group k is index j * K + k
        # (particles, B); with K > 1 Pyro's ELBO puts the particles plate a dim further left
        log_p = log_density(model_trace).reshape(particles, -1)
        log_w = log_p - log_density(guide_trace).reshape(particles, -1)
        f = log_w.detach().unflatten(0, blocks)  # (L + 1, K, B)
        surrogate = log_p.mean(0)  # the model's gradient; no path to the guide (b is a constant)
        for flipped, name in enumerate(layers, start=1):
            site = guide_trace.nodes[name]
            unit_shape = (*blocks, f.shape[-1], *site["fn"].event_shape)  # (L + 1, K, B, *event)
            logits = site_logits(site["fn"]).reshape(unit_shape)[0]
            codes = site["value"].reshape(unit_shape)
            g = self.logit_gradient(f[0], f[flipped], codes[0], codes[flipped],
                                    antithetic.noise[name].reshape(unit_shape[1:]), logits.detach())
            surrogate = surrogate + (g.detach() * logits).flatten(2).sum(-1).mean(0)
        scale = data_scale(ParticleTraces(model_trace, guide_trace, particles))
        return with_value(-scale * log_w.mean(0).sum(), -scale * surrogate.sum())


class ARM_ELBO(AntitheticELBO):
    """The augment-REINFORCE-merge estimator (Yin & Zhou 2019)."""

    def logit_gradient(self, f, f_flipped, b, b_flipped, u, logits):
        return per_unit(f_flipped - f, u) * (u - 0.5)


class DisARM_ELBO(AntitheticELBO):
    """ARM with the noise integrated out given the antithetic pair (Dong, Mnih & Tucker 2020)."""

    def logit_gradient(self, f, f_flipped, b, b_flipped, u, logits):
        sign = 1 - 2 * b_flipped  # (-1)^(b~)
        return 0.5 * per_unit(f - f_flipped, u) * sign * (b != b_flipped) * torch.sigmoid(logits.abs())
