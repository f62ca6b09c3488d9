"""A normalizing-flow prior: spline or affine coupling layers over N(0, I)."""

from __future__ import annotations

import math

import pyro.distributions as dist
import pyro.distributions.transforms as T
import torch
from pyro.nn import DenseNN
from torch import nn

from pyro_vae.core.choices import publish
from pyro_vae.core.errors import ConfigError
from pyro_vae.models.priors.registry import register_prior


class FlowPrior(nn.Module):
    """A normalizing flow over N(0, I), from Pyro's invertible coupling transforms.

    Coupling layers invert in one pass, so ``log_prob`` of the guide's samples is as cheap as
    sampling; a fixed permutation between layers lets every dimension be transformed.
    """

    KINDS = {"spline": T.spline_coupling, "affine": T.affine_coupling}

    def __init__(self, latent_dim: int, flow: str = "spline", depth: int = 4, hidden: int = 64):
        super().__init__()
        if flow not in self.KINDS:
            raise ConfigError(f"unknown flow {flow!r}; choose one of: {', '.join(self.KINDS)}")
        if latent_dim < 2:
            raise ConfigError("a coupling flow prior needs latent_dim >= 2")
        self.latent_dim = latent_dim
        self.register_buffer("loc", torch.zeros(latent_dim))
        self.register_buffer("scale", torch.ones(latent_dim))
        self.layers = nn.ModuleList(self.KINDS[flow](latent_dim, hidden_dims=[hidden, hidden])
                                    for _ in range(depth))
        self._start_at_identity()
        for i in range(depth - 1):  # buffers, so that .to(device) moves them
            self.register_buffer(f"permutation{i}", torch.randperm(latent_dim))

    @torch.no_grad()
    def _start_at_identity(self) -> None:
        """Start at exactly N(0, I), as Glow starts its couplings at the identity: Pyro's random
        initialisation makes spline priors jagged densities with sharp spikes. Zero output layers
        give uniform bins and zero shifts; a spline's knot slopes are 1e-3 + softplus(u), so
        u = log(expm1(1 - 1e-3)) makes every slope 1 (the boundary slopes are 1 already)."""
        unit_slope = math.log(math.expm1(1 - 1e-3))
        for module in self.layers.modules():
            if isinstance(module, DenseNN):
                nn.init.zeros_(module.layers[-1].weight)
                nn.init.zeros_(module.layers[-1].bias)
            elif isinstance(module, T.Spline):
                for parameter in module.parameters(recurse=False):
                    nn.init.zeros_(parameter)
                module.unnormalized_derivatives.fill_(unit_slope)
        for module in self.layers.modules():
            if isinstance(module, T.ConditionalSpline):  # outputs: widths, heights, slopes, lambdas
                module.nn.layers[-1].bias[module.nn.param_slices[2]] = unit_slope

    def forward(self) -> dist.TorchDistribution:
        transforms = []
        for i, layer in enumerate(self.layers):
            transforms.append(layer)
            if i < len(self.layers) - 1:
                transforms.append(T.Permute(getattr(self, f"permutation{i}")))
        base = dist.Normal(self.loc, self.scale).to_event(1)
        return dist.TransformedDistribution(base, transforms)


publish("flow", tuple(FlowPrior.KINDS))


@register_prior("flow", reads=("flow", "flow_depth", "flow_hidden"), min_latent=2,
                description="a spline or affine coupling flow over N(0, I)")
def _flow(prior, latent_dim: int, x_dim: int) -> nn.Module:
    return FlowPrior(latent_dim, prior.flow, prior.flow_depth, prior.flow_hidden)
