"""The sigmoid belief net VAE of the REBAR and RELAX benchmarks (Tucker et al. 2017; Grathwohl et
al. 2018): layers of Bernoulli latents, each conditional's logits a map of the layer next to it.

Generative model, top layer first, and the guide, bottom layer first::

    z_L ~ Bernoulli(sigmoid(a))                    q(z_1 | x)       = Bernoulli(sigmoid(f_1(x - m)))
    z_l | z_{l+1} ~ Bernoulli(sigmoid(g_l(s_{l+1})))   q(z_l | z_{l-1}) = Bernoulli(sigmoid(f_l(s_{l-1})))
    x | z_1 ~ Bernoulli(sigmoid(g_0(s_1)))

where ``s = 2 z - 1`` (the {-1, +1} coding of a binary layer, as their code feeds it), ``m`` the
mean training image (the encoder's input is centred) and ``a`` the prior's logits (learned from
0, REBAR's ``p_prior``; ``discrete_prior: uniform`` fixes them at 0). Each map f, g is affine
(``sbn_mapping: linear``) or two tanh layers then affine (``nonlinear``; their widths are
``hidden``, 200 200 in the papers). Weights start as TensorFlow's ``variance_scaling_initializer``
(slim's default there): a normal of variance 2.6 / fan-in truncated at two standard deviations,
biases at 0. The output bias starts at the logit of the mean pixel (their ``train_bias``, a fixed
offset added to a zero-started bias: the same function and the same gradients).

Sites are ``"z1"`` (next to x) ... ``"zL"`` with one layer too (``"z1"``), so that adding a layer
never renames the bottom one. The networks are registered as "encoders", "decoders", "prior"
(and "baselines" with ``--baseline nn`` or ``nn-only``, NVIL's input-dependent baseline per layer;
"control_variates" with ``--estimator rebar`` or ``relax``).
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from pyro_vae.models.base import PriorModel
from pyro_vae.models.control_variates import CONTROLLED, RelaxControlVariate, control_variate_infer
from pyro_vae.models.discrete import BernoulliPrior
from pyro_vae.models.estimators import BaselineNet, baseline_infer, has_baseline_network
from pyro_vae.models.likelihoods import BernoulliPixels
from pyro_vae.nn.nets import mlp

MAPPINGS = ("linear", "nonlinear")


def variance_scaling_(layer: nn.Linear, factor: float = 2.0) -> None:
    """TF's ``variance_scaling_initializer(factor=2.0, mode='FAN_IN', uniform=False)``, which
    REBAR's and RELAX's layers use: N(0, 1.3 * factor / fan_in) truncated at two standard
    deviations (the 1.3 makes up for the truncation), and a zero bias."""
    std = math.sqrt(1.3 * factor / layer.in_features)
    nn.init.trunc_normal_(layer.weight, std=std, a=-2 * std, b=2 * std)
    nn.init.zeros_(layer.bias)


class LogitMap(nn.Module):
    """The logits of one Bernoulli conditional from the layer it depends on: affine, or through
    tanh layers of sizes ``hidden`` first. Accepts any leading dimensions."""

    def __init__(self, n_in: int, n_out: int, hidden: Sequence[int] = ()):
        super().__init__()
        self.net = mlp([n_in, *hidden, n_out], "tanh")
        for layer in self.net:
            if isinstance(layer, nn.Linear):
                variance_scaling_(layer)

    @property
    def output_layer(self) -> nn.Linear:
        return self.net[-1]

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(h)


def spins(z: torch.Tensor) -> torch.Tensor:
    """A binary layer as the next map reads it: 2 z - 1, in {-1, +1}."""
    return 2 * z - 1


class SigmoidBeliefNet(PriorModel):
    """``latent_dims`` layers of Bernoulli units, bottom first (``[200]`` or ``[200, 200]`` in the
    papers); ``mapping`` "linear" or "nonlinear" (tanh layers of sizes ``hidden``);
    ``learned_prior``: the top layer's logits trained (else fixed at 0). ``baseline`` as for
    :class:`~pyro_vae.models.vae.VAE` (every site is a score-function site); ``estimator`` rebar or
    relax adds their control variate per layer."""

    def __init__(self, x_dim: int, latent_dims: Sequence[int], mapping: str = "linear",
                 hidden: Sequence[int] = (200, 200), learned_prior: bool = True,
                 baseline: str = "none", baseline_beta: float = 0.9, estimator: str = "score"):
        super().__init__(None, x_dim)
        if mapping not in MAPPINGS:
            raise ValueError(f"unknown sbn mapping {mapping!r}; choose one of {', '.join(MAPPINGS)}")
        widths = list(hidden) if mapping == "nonlinear" else []
        sizes = [x_dim, *latent_dims]
        # encoders[l]: layer l (x for l = 0) -> q(z_{l+1}); decoders[l]: z_{l+1} -> p(layer l)
        self.encoders = nn.ModuleList(LogitMap(lower, upper, widths)
                                      for lower, upper in zip(sizes[:-1], sizes[1:]))
        self.decoders = nn.ModuleList(LogitMap(upper, lower, widths)
                                      for lower, upper in zip(sizes[:-1], sizes[1:]))
        self.prior = BernoulliPrior(latent_dims[-1], learned_prior)
        # The mean training image, subtracted from the encoder's input (set by init_from_data and
        # saved with the weights, so a resumed or reopened run centres as it trained).
        self.register_buffer("x_mean", torch.zeros(x_dim))
        self.latent_dims, self.mapping = list(latent_dims), mapping
        self.baseline, self.baseline_beta = baseline, baseline_beta
        self.baselines: Optional[nn.ModuleList] = (
            nn.ModuleList(BaselineNet(x_dim) for _ in latent_dims) if has_baseline_network(baseline) else None)
        # REBAR's and RELAX's control variate, one per layer (the objective takes one layer)
        self.control_variates: Optional[nn.ModuleList] = nn.ModuleList(
            RelaxControlVariate(x_dim, size, network=estimator == "relax") for size in latent_dims
        ) if estimator in CONTROLLED else None

    @property
    def output_decoder(self) -> nn.Module:
        return self.decoders[0]

    def init_from_data(self, mean_pixel: torch.Tensor) -> None:
        """Centre the encoder's input at the mean training image and start the output bias at its
        logit (REBAR's ``mean_xs`` and ``train_bias``)."""
        with torch.no_grad():
            self.x_mean.copy_(mean_pixel.detach().reshape(-1).to(self.x_mean))
        super().init_from_data(mean_pixel)

    def model(self, x: torch.Tensor) -> torch.Tensor:
        pyro.module("decoders", self.decoders)
        pyro.module("prior", self.prior)
        layers = len(self.latent_dims)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample(f"z{layers}", self.prior_distribution())
            for layer in range(layers - 1, 0, -1):
                z = pyro.sample(f"z{layer}", dist.Bernoulli(logits=self.decoders[layer](spins(z))).to_event(1))
            pyro.sample("x", BernoulliPixels(self.decoders[0](spins(z))), obs=x)
        return z

    def guide(self, x: torch.Tensor) -> torch.Tensor:
        pyro.module("encoders", self.encoders)
        if self.baselines is not None:
            pyro.module("baselines", self.baselines)
        if self.control_variates is not None:
            pyro.module("control_variates", self.control_variates)
        h = x - self.x_mean
        with pyro.plate("data", x.shape[0]):
            for layer, encoder in enumerate(self.encoders):
                net = self.baselines[layer] if self.baselines is not None else None
                infer = baseline_infer(self.baseline, x, self.baseline_beta, net)
                if self.control_variates is not None:
                    infer.update(control_variate_infer(self.control_variates[layer], x))
                z = pyro.sample(f"z{layer + 1}", dist.Bernoulli(logits=encoder(h)).to_event(1), infer=infer)
                h = spins(z)
        return z
