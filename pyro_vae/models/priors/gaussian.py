"""Gaussian priors: N(0, I), the classic VAE prior, and a diagonal Normal with learned mean and
scale."""

from __future__ import annotations

import math

import pyro.distributions as dist
import torch
from torch import nn
from torch.nn import functional as F

from pyro_vae.models.priors.registry import register_prior


class StandardNormalPrior(nn.Module):
    """N(0, I): the classic VAE prior. Buffers, not parameters, so it follows ``.to(device)``."""

    def __init__(self, latent_dim: int):
        super().__init__()
        self.latent_dim = latent_dim
        self.register_buffer("loc", torch.zeros(latent_dim))
        self.register_buffer("scale", torch.ones(latent_dim))

    def forward(self) -> dist.TorchDistribution:
        return dist.Normal(self.loc, self.scale).to_event(1)


class LearnedNormalPrior(nn.Module):
    """A diagonal Normal with learned mean and (softplus) scale, starting at N(0, I)."""

    def __init__(self, latent_dim: int):
        super().__init__()
        self.latent_dim = latent_dim
        self.loc = nn.Parameter(torch.zeros(latent_dim))
        self.raw_scale = nn.Parameter(torch.full((latent_dim,), math.log(math.e - 1)))  # softplus = 1

    def forward(self) -> dist.TorchDistribution:
        return dist.Normal(self.loc, F.softplus(self.raw_scale)).to_event(1)


@register_prior("normal", description="N(0, I): the classic VAE prior")
def _normal(prior, latent_dim: int, x_dim: int) -> nn.Module:
    return StandardNormalPrior(latent_dim)


@register_prior("learned-normal", description="a diagonal Normal with learned mean and scale")
def _learned_normal(prior, latent_dim: int, x_dim: int) -> nn.Module:
    return LearnedNormalPrior(latent_dim)
