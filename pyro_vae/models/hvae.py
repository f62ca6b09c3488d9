"""A VAE with several stochastic layers (Burda et al. 2016, section 5: two layers on MNIST).

Generative model, top layer first::

    z_L ~ p(z_L) (the prior module: any shipped or user prior),
    z_l | z_{l+1} ~ N(mu_l(z_{l+1}), sigma_l(z_{l+1})),  l = L-1, ..., 1,
    x | z_1 ~ Bernoulli(logits(z_1)),

and the guide, bottom layer first: q(z_1 | x) q(z_2 | z_1) ... q(z_L | z_{L-1}), each a diagonal
Normal from an MLP. Every q after the first depends on the *sampled* layer below it, so the
guide is not mean-field. Sites are ``"z1"`` ... ``"zL"``; networks are registered as
"encoders", "decoders", "prior" (and "baselines" with ``--baseline nn``).

Burda et al.'s MNIST architecture is the default: x -> 200-200 -> z1 (100) -> 100-100 -> z2 (50),
tanh, with the generative path mirrored (``hidden`` sizes between x and z1, ``upper_hidden``
between consecutive latent layers).
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from pyro_vae.models.base import PriorModel
from pyro_vae.models.estimators import BaselineNet, baseline_infer, has_baseline_network, latent_distribution
from pyro_vae.models.likelihoods import Likelihood
from pyro_vae.nn.nets import MLPEncoder, networks


class HierarchicalVAE(PriorModel):
    def __init__(self, image_shape: Sequence[int], latent_dims: Sequence[int], hidden: Sequence[int],
                 upper_hidden: Sequence[int], activation: str, prior: nn.Module, arch: str = "mlp",
                 estimator: str = "reparam", baseline: str = "none", baseline_beta: float = 0.9,
                 logvar_range: Optional[Sequence[float]] = None, likelihood: Optional[Likelihood] = None):
        super().__init__(likelihood, math.prod(image_shape))
        if len(latent_dims) < 2:
            raise ValueError(f"hvae needs at least two latent layers, got latent sizes {list(latent_dims)}")
        x_dim = math.prod(image_shape)
        encoder, decoder = networks(arch, image_shape, hidden, latent_dims[0], activation,
                                    logvar_range, self.likelihood.out_channels)
        # encoders[l]: layer l (x for l = 0) -> q(z_{l+1}); decoders[l]: z_{l+1} -> p(layer l)
        self.encoders = nn.ModuleList([encoder] + [
            MLPEncoder(lower, upper_hidden, upper, activation, logvar_range)
            for lower, upper in zip(latent_dims[:-1], latent_dims[1:])])
        self.decoders = nn.ModuleList([decoder] + [
            MLPEncoder(upper, list(reversed(upper_hidden)), lower, activation)
            for lower, upper in zip(latent_dims[:-1], latent_dims[1:])])
        self.prior = prior
        self.latent_dims = list(latent_dims)
        self.estimator, self.baseline, self.baseline_beta = estimator, baseline, baseline_beta
        self.baselines: Optional[nn.ModuleList] = (
            nn.ModuleList(BaselineNet(x_dim) for _ in latent_dims) if has_baseline_network(baseline) else None)

    @property
    def output_decoder(self) -> nn.Module:
        return self.decoders[0]

    def encode_top(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(loc, scale) of q(z_L | x) along the guide's mean path (each lower layer at its mean):
        what VampPrior evaluates at its pseudo-inputs."""
        h = x
        for encoder in self.encoders[:-1]:
            h = encoder(h)[0]
        return self.encoders[-1](h)

    def model(self, x: torch.Tensor) -> torch.Tensor:
        pyro.module("decoders", self.decoders)
        pyro.module("prior", self.prior)
        layers = len(self.latent_dims)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample(f"z{layers}", self.prior_distribution())
            for layer in range(layers - 1, 0, -1):
                loc, scale = self.decoders[layer](z)
                z = pyro.sample(f"z{layer}", dist.Normal(loc, scale).to_event(1))
            self.observe(self.decoders[0](z), x)
        return z

    def guide(self, x: torch.Tensor) -> torch.Tensor:
        pyro.module("encoders", self.encoders)
        if self.baselines is not None:
            pyro.module("baselines", self.baselines)
        h = x
        with pyro.plate("data", x.shape[0]):
            for layer, encoder in enumerate(self.encoders):
                loc, scale = encoder(h)
                net = self.baselines[layer] if self.baselines is not None else None
                h = pyro.sample(f"z{layer + 1}", latent_distribution(loc, scale, self.estimator),
                                infer=baseline_infer(self.baseline, x, self.baseline_beta, net))
        return h
