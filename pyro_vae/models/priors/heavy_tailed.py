"""Heavy-tailed priors with independent coordinates: Student-t and Laplace."""

from __future__ import annotations

import pyro.distributions as dist
import torch
from torch import nn

from pyro_vae.models.priors.registry import register_prior


class StudentTPrior(nn.Module):
    """Independent Student-t(df, 0, 1) coordinates: heavier tails than the Normal."""

    def __init__(self, latent_dim: int, df: float = 3.0):
        super().__init__()
        self.latent_dim = latent_dim
        self.register_buffer("df", torch.full((latent_dim,), float(df)))
        self.register_buffer("loc", torch.zeros(latent_dim))

    def forward(self) -> dist.TorchDistribution:
        return dist.StudentT(self.df, self.loc, torch.ones_like(self.loc)).to_event(1)


class LaplacePrior(nn.Module):
    """Independent Laplace(0, 1) coordinates: a sparsity-inducing, heavy-tailed prior."""

    def __init__(self, latent_dim: int):
        super().__init__()
        self.latent_dim = latent_dim
        self.register_buffer("loc", torch.zeros(latent_dim))

    def forward(self) -> dist.TorchDistribution:
        return dist.Laplace(self.loc, torch.ones_like(self.loc)).to_event(1)


@register_prior("student-t", reads=("prior_df",), description="independent Student-t(prior_df) coordinates")
def _student_t(prior, latent_dim: int, x_dim: int) -> nn.Module:
    return StudentTPrior(latent_dim, prior.df)


@register_prior("laplace", description="independent Laplace(0, 1) coordinates")
def _laplace(prior, latent_dim: int, x_dim: int) -> nn.Module:
    return LaplacePrior(latent_dim)
