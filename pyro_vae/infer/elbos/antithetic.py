"""Antithetic draws of a guide's Bernoulli layers, shared noise and all, for ARM and DisARM.

ARM and DisARM evaluate the ELBO integrand f at a pair of codes made from one uniform draw u:
b = 1[u < sigmoid(a)] and its antithetic partner b~ = 1[1 - u < sigmoid(a)] (a: the layer's
logits). Here the pair is made by a Pyro messenger that *sets* the values of the guide's
Bernoulli sites (``msg["value"]``, ``msg["done"]``) from noise it draws itself, so any guide
that follows the site rules works unchanged: its networks see the drawn values as they would
see Pyro's own samples.

With L Bernoulli layers (q(z1 | x) q(z2 | z1) ...), the guide runs once under a particles plate
of (L + 1) * K particles: K independent groups of L + 1. In each group, particle 0 draws every
layer l from its noise u_l; particle l takes the antithetic value of layer l and draws the
layers after it from the *same* noise u_(l+1), ... at its own logits (common random numbers).
Layers before l are identical to particle 0's, so layer l's logits are too. Particles are laid
out group-minor: particle j of group k is index j * K + k.
"""

from __future__ import annotations

from typing import Callable

import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.poutine.messenger import Messenger

from pyro_vae.models.sites import base_distribution, isolated, latent_sites


def site_logits(fn) -> torch.Tensor:
    """The logits of a Bernoulli site's distribution (``.to_event``/expanded wrappers included),
    broadcast to its full shape (particles, data, event); keeps their graph."""
    return base_distribution(fn).logits.expand(fn.batch_shape + fn.event_shape)


def per_unit(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``(K, B)`` per-datapoint values (f, baselines), broadcastable against ``(K, B, *event)`` units."""
    return values.reshape(values.shape + (1,) * (like.dim() - values.dim()))


def bernoulli_layers(guide: Callable, args, kwargs) -> tuple[str, ...]:
    """The guide's latent sites in the order it samples them, from one run of it that changes
    no state (param store, random stream). Every one must be Bernoulli (the start-up check,
    :func:`~pyro_vae.infer.discrete_rules.check_bernoulli_sites`, refuses others in a config;
    this is the same refusal for a direct caller)."""
    anchor = next((a for a in args if isinstance(a, torch.Tensor)), torch.zeros(()))
    with isolated(anchor, validate=False), torch.no_grad(), poutine.block():
        trace = poutine.trace(guide).get_trace(*args, **kwargs)
    sites = latent_sites(trace)
    others = [s["name"] for s in sites if not isinstance(base_distribution(s["fn"]), dist.Bernoulli)]
    if others or not sites:
        raise ValueError(f"ARM and DisARM need every latent site of the guide to be Bernoulli; "
                         f"{', '.join(others) or 'none'} {'is' if len(others) == 1 else 'are'} not")
    return tuple(s["name"] for s in sites)


class AntitheticBernoulli(Messenger):
    """Sets each Bernoulli layer's values for the (L + 1) * K particles described in the module
    docstring. ``noise[name]`` keeps each layer's uniform draw u, shaped as one group of particles.

    Enter it *outside* the particles plate, so that a site's distribution reaches it already
    broadcast over the particles. Its random numbers come from torch's global generator, one
    ``rand`` per layer in the guide's order, so a traced step replays them.
    """

    def __init__(self, layers: tuple[str, ...], groups: int):
        super().__init__()
        self.layers, self.groups = layers, groups
        self.noise: dict[str, torch.Tensor] = {}

    def _pyro_sample(self, msg):
        if msg["is_observed"] or msg["name"] not in self.layers:
            return
        logits = site_logits(msg["fn"])
        blocks = logits.detach().unflatten(0, (len(self.layers) + 1, self.groups))
        u = torch.rand(blocks.shape[1:], dtype=logits.dtype, device=logits.device)
        self.noise[msg["name"]] = u
        flipped = self.layers.index(msg["name"]) + 1
        probs = torch.sigmoid(blocks)
        values = [(1 - u if j == flipped else u) < probs[j] for j in range(len(blocks))]
        msg["value"] = torch.stack(values).to(logits.dtype).flatten(0, 1)
        msg["done"] = True
