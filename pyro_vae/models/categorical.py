"""The categorical VAE of Jang et al. (2017), section 4.3: N categorical latents of C classes each
(20 x 10 on MNIST), as ONE latent site ``"z"`` of one-hot codes with event shape ``(N, C)``.

    z ~ prod_n Categorical(z_n; softmax(a_n))      q(z | x) = prod_n Categorical(z_n; softmax(f(x)_n))
    x | z ~ Bernoulli(sigmoid(g(flatten(z))))  (or the likelihood's, --likelihood)

with f an MLP 784-512-256-(N x C) and g its mirror (N x C)-256-512-784, ReLU (their notebook's
``slim.stack(net, slim.fully_connected, [512, 256])``: ReLU is slim's default), and the prior
uniform (``a = 0``, as theirs) or learned from 0 (``discrete_prior``). The one-hot samples come
from :class:`~pyro_vae.models.discrete.OneHotCategorical`, so the compiled step can trace them.
One difference from their setup: the decoder's output bias starts at the logit of the mean pixel,
as in pyro-vae's other models (theirs at 0).
"""

from __future__ import annotations

from typing import Optional, Sequence

import pyro
import torch
from torch import nn

from pyro_vae.models.base import PriorModel
from pyro_vae.models.discrete import CategoricalPrior, OneHotCategorical
from pyro_vae.models.estimators import BaselineNet, baseline_infer, has_baseline_network
from pyro_vae.models.likelihoods import Likelihood
from pyro_vae.nn.nets import MLPDecoder, mlp


class CategoricalVAE(PriorModel):
    """``latents`` categorical latents of ``classes`` classes; encoder ``x_dim``-``hidden``-
    (latents x classes) logits, decoder mirrored, ``activation`` between layers. ``baseline`` as
    for :class:`~pyro_vae.models.vae.VAE`. Networks: "encoder", "decoder", "prior" (and
    "baseline")."""

    def __init__(self, x_dim: int, latents: int, classes: int, hidden: Sequence[int] = (512, 256),
                 activation: str = "relu", learned_prior: bool = False, baseline: str = "none",
                 baseline_beta: float = 0.9, likelihood: Optional[Likelihood] = None):
        super().__init__(likelihood, x_dim)
        self.latents, self.classes = latents, classes
        self.encoder = mlp([x_dim, *hidden, latents * classes], activation)
        self.decoder = MLPDecoder(latents * classes, hidden, self.likelihood.out_features, activation)
        self.prior = CategoricalPrior(latents, classes, learned_prior)
        self.baseline, self.baseline_beta = baseline, baseline_beta
        self.baseline_net: Optional[nn.Module] = BaselineNet(x_dim) if has_baseline_network(baseline) else None

    @property
    def output_decoder(self) -> nn.Module:
        return self.decoder

    def model(self, x: torch.Tensor) -> torch.Tensor:
        pyro.module("decoder", self.decoder)
        pyro.module("prior", self.prior)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", self.prior_distribution())
            self.observe(self.decoder(z.flatten(-2)), x)
        return z

    def guide(self, x: torch.Tensor) -> torch.Tensor:
        pyro.module("encoder", self.encoder)
        if self.baseline_net is not None:
            pyro.module("baseline", self.baseline_net)
        with pyro.plate("data", x.shape[0]):
            logits = self.encoder(x).unflatten(-1, (self.latents, self.classes))
            return pyro.sample("z", OneHotCategorical(logits=logits).to_event(1),
                               infer=baseline_infer(self.baseline, x, self.baseline_beta,
                                                    self.baseline_net))
