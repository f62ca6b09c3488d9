"""Priors over the latent code: modules whose ``forward()`` returns a Pyro distribution.

A prior is an ``nn.Module`` so that learned priors keep their parameters in the module tree:
the model registers it with ``pyro.module("prior", ...)``, the optimizer and checkpoints see its
parameters like any other. ``forward()`` returns a distribution with ``event_shape == (z_dim,)``
and ``batch_shape == ()``; the model's data plate broadcasts it over the minibatch (and over
vectorized particles).
"""

from __future__ import annotations

import pyro.distributions as dist
import torch
from torch import nn

from .errors import ConfigError


class StandardNormalPrior(nn.Module):
    """N(0, I): the classic VAE prior. Buffers, not parameters, so it follows ``.to(device)``."""

    def __init__(self, latent_dim: int):
        super().__init__()
        self.latent_dim = latent_dim
        self.register_buffer("loc", torch.zeros(latent_dim))
        self.register_buffer("scale", torch.ones(latent_dim))

    def forward(self) -> dist.TorchDistribution:
        return dist.Normal(self.loc, self.scale).to_event(1)


PRIORS = {"normal": StandardNormalPrior}


def build_prior(name: str, latent_dim: int) -> nn.Module:
    try:
        factory = PRIORS[name]
    except KeyError:
        raise ConfigError(f"unknown prior {name!r}; choose one of {', '.join(PRIORS)}") from None
    return factory(latent_dim)
