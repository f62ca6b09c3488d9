"""The VAE as a pair of Pyro programs: ``model(x)`` (generative) and ``guide(x)`` (amortized q).

Site names, used everywhere else in the package (objectives, evaluation, tests):

- ``"data"``: the plate over the minibatch (dim -1);
- ``"z"``: the latent code, sampled from the prior in the model and from the encoder's diagonal
  Normal in the guide;
- ``"x"``: the observed pixels, Bernoulli on the decoder's logits.

Networks are registered with ``pyro.module`` ("encoder", "decoder", "prior"), so Pyro's param
store names them ``encoder$$$...`` like in Pyro's own examples. All parameters also stay
reachable through ``VAE.parameters()``, which is what the optimizer and checkpoints use.
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from torch import nn


class VAE(nn.Module):
    """Holds the encoder, decoder and prior modules and defines ``model`` and ``guide``."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module, prior: nn.Module):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.prior = prior

    def model(self, x: torch.Tensor) -> torch.Tensor:
        """p(z) p(x | z) over a minibatch ``x`` of shape ``(B, x_dim)`` with values in {0, 1}."""
        pyro.module("decoder", self.decoder)
        pyro.module("prior", self.prior)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", self.prior())
            logits = self.decoder(z)
            # Bernoulli on logits: log-probabilities by a stable softplus, no clamping needed.
            pyro.sample("x", dist.Bernoulli(logits=logits).to_event(1), obs=x)
        return z

    def guide(self, x: torch.Tensor) -> torch.Tensor:
        """q(z | x): a diagonal Normal whose loc and scale come from the encoder."""
        pyro.module("encoder", self.encoder)
        with pyro.plate("data", x.shape[0]):
            loc, scale = self.encoder(x)
            return pyro.sample("z", dist.Normal(loc, scale).to_event(1))
