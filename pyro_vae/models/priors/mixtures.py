"""Mixture priors: a learned mixture of Gaussians, and the VampPrior (Tomczak & Welling 2018), a
mixture of the guide's own posteriors at learned pseudo-inputs."""

from __future__ import annotations

import pyro.distributions as dist
import torch
from torch import nn
from torch.nn import functional as F

from pyro_vae.core.choices import publish
from pyro_vae.core.errors import ConfigError
from pyro_vae.models.priors.registry import register_prior
from pyro_vae.nn.mixture import DiagonalNormalMixture


class MixtureOfGaussiansPrior(nn.Module):
    """K diagonal Gaussians with learned weights, means and scales."""

    def __init__(self, latent_dim: int, components: int = 10):
        super().__init__()
        self.latent_dim = latent_dim
        self.logits = nn.Parameter(torch.zeros(components))
        self.locs = nn.Parameter(torch.randn(components, latent_dim))
        self.raw_scales = nn.Parameter(torch.zeros(components, latent_dim))

    def forward(self) -> dist.TorchDistribution:
        return DiagonalNormalMixture(self.logits, self.locs, F.softplus(self.raw_scales))


class VampPrior(nn.Module):
    """VampPrior (Tomczak & Welling 2018): p(z) = (1/K) sum_k q(z | u_k), the guide's posteriors
    at K learned pseudo-inputs u_k.

    Pseudo-inputs stay in the input range [0, 1] as the sigmoid of unconstrained parameters; they
    start at random training images (``init="data"``) or uniform noise (``"random"``). The
    encoder is the VAE's own, held by reference (not registered twice).
    """

    INITS = ("data", "random")  # the choices of vamp_init

    def __init__(self, latent_dim: int, components: int = 500, init: str = "data", x_dim: int = 784):
        super().__init__()
        if init not in self.INITS:
            raise ConfigError(f"unknown vamp_init {init!r}; choose one of: {', '.join(self.INITS)}")
        self.latent_dim, self.init = latent_dim, init
        self.raw_pseudo_inputs = nn.Parameter(torch.logit(torch.rand(components, x_dim) * 0.9 + 0.05))
        self._encoder: list = []

    def bind(self, vae: nn.Module, train_data: torch.Tensor | None) -> None:
        self._encoder[:] = [vae.encode_top]
        if self.init == "data" and train_data is not None:
            index = torch.randperm(len(train_data))[: len(self.raw_pseudo_inputs)]
            images = train_data[index].to(self.raw_pseudo_inputs)
            noise = 0.05 * torch.randn_like(images)
            with torch.no_grad():
                self.raw_pseudo_inputs[: len(index)] = torch.logit((images + noise).clamp(0.02, 0.98))

    @property
    def pseudo_inputs(self) -> torch.Tensor:
        return torch.sigmoid(self.raw_pseudo_inputs)

    def forward(self) -> dist.TorchDistribution:
        if not self._encoder:
            raise RuntimeError("VampPrior.bind(vae, data) must be called before use")
        loc, scale = self._encoder[0](self.pseudo_inputs)
        return DiagonalNormalMixture(torch.zeros(len(loc), device=loc.device, dtype=loc.dtype), loc, scale)


publish("vamp_init", VampPrior.INITS)


@register_prior("mog", reads=("prior_components",),
                description="a learned mixture of prior_components (10) diagonal Gaussians")
def _mog(prior, latent_dim: int, x_dim: int) -> nn.Module:
    return MixtureOfGaussiansPrior(latent_dim, prior.components or 10)


@register_prior("vamp", reads=("prior_components", "vamp_init"),
                description="VampPrior: the guide's posteriors at prior_components (500) learned "
                            "pseudo-inputs")
def _vamp(prior, latent_dim: int, x_dim: int) -> nn.Module:
    return VampPrior(latent_dim, prior.components or 500, prior.vamp_init, x_dim)
