"""The VAE: one latent layer ``z``, as a pair of Pyro programs ``model(x)`` and ``guide(x)``.

- ``"data"``: the plate over the minibatch (dim -1);
- ``"z"``: the latent code, sampled from the prior in the model and from the encoder's diagonal
  Normal in the guide;
- ``"x"``: the observed pixels, scored by the likelihood (``--likelihood``; Bernoulli on the
  decoder's logits by default).

Networks are registered with ``pyro.module`` ("encoder", "decoder", "prior"), so Pyro's param
store names them ``encoder$$$...`` like in Pyro's own examples. All parameters also stay
reachable through ``VAE.parameters()``, which is what the optimizer and checkpoints use.
"""

from __future__ import annotations

from typing import Optional

import pyro
import torch
from torch import nn

from pyro_vae.models.base import PriorModel
from pyro_vae.models.estimators import BaselineNet, baseline_infer, has_baseline_network, latent_distribution
from pyro_vae.models.likelihoods import Likelihood


class VAE(PriorModel):
    """Holds the encoder, decoder and prior modules and defines ``model`` and ``guide``.

    ``estimator`` chooses how the guide's ``z`` is differentiated ("reparam" or "score", see
    :mod:`pyro_vae.models.estimators`); ``baseline`` ("none", "avg", "nn", "nn-only") adds a variance-reducing
    baseline to a score-function ``z``. The network of "nn" and "nn-only" is a submodule (``baseline_net``),
    registered in the guide as ``pyro.module("baseline", ...)`` and trained jointly.
    """

    def __init__(self, encoder: nn.Module, decoder: nn.Module, prior: nn.Module,
                 estimator: str = "reparam", baseline: str = "none", baseline_beta: float = 0.9,
                 x_dim: int = 784, likelihood: Optional[Likelihood] = None):
        super().__init__(likelihood, x_dim)
        self.encoder = encoder
        self.decoder = decoder
        self.prior = prior
        self.estimator, self.baseline, self.baseline_beta = estimator, baseline, baseline_beta
        self.baseline_net: Optional[nn.Module] = BaselineNet(x_dim) if has_baseline_network(baseline) else None

    @property
    def output_decoder(self) -> nn.Module:
        return self.decoder

    def encode_top(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(loc, scale) of q(z | x): what VampPrior evaluates at its pseudo-inputs."""
        return self.encoder(x)

    def model(self, x: torch.Tensor) -> torch.Tensor:
        """p(z) p(x | z) over a minibatch ``x`` of shape ``(B, x_dim)``."""
        pyro.module("decoder", self.decoder)
        pyro.module("prior", self.prior)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", self.prior_distribution())
            self.observe(self.decoder(z), x)
        return z

    def guide(self, x: torch.Tensor) -> torch.Tensor:
        """q(z | x): a diagonal Normal whose loc and scale come from the encoder."""
        pyro.module("encoder", self.encoder)
        if self.baseline_net is not None:
            pyro.module("baseline", self.baseline_net)
        with pyro.plate("data", x.shape[0]):
            loc, scale = self.encoder(x)
            return pyro.sample("z", latent_distribution(loc, scale, self.estimator),
                               infer=baseline_infer(self.baseline, x, self.baseline_beta,
                                                    self.baseline_net))
