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

from contextlib import contextmanager
from typing import Optional

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from .estimators import BaselineNet, baseline_infer, latent_distribution
from .likelihood import BernoulliPixels

# The model has one plate ("data", dim -1); objectives that vectorize over particles put theirs
# at dim -2, and saying so spares Pyro a shape-guessing trace.
MAX_PLATE_NESTING = 1


class VAE(nn.Module):
    """Holds the encoder, decoder and prior modules and defines ``model`` and ``guide``.

    ``estimator`` chooses how the guide's ``z`` is differentiated ("reparam" or "score", see
    :mod:`pyro_vae.estimators`); ``baseline`` ("none", "avg", "nn") adds a variance-reducing
    baseline to a score-function ``z``. A "nn" baseline is a submodule (``baseline_net``),
    registered in the guide as ``pyro.module("baseline", ...)`` and trained jointly.
    """

    def __init__(self, encoder: nn.Module, decoder: nn.Module, prior: nn.Module,
                 estimator: str = "reparam", baseline: str = "none", baseline_beta: float = 0.9,
                 x_dim: int = 784):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.prior = prior
        self.estimator, self.baseline, self.baseline_beta = estimator, baseline, baseline_beta
        self.baseline_net: Optional[nn.Module] = BaselineNet(x_dim) if baseline == "nn" else None
        self._fixed_prior: Optional[dist.TorchDistribution] = None

    @contextmanager
    def fixed_prior(self):
        """Build p(z) once for many model calls that need no gradient (evaluation): it does not
        depend on x, and some priors are costly to build (VampPrior encodes all its
        pseudo-inputs)."""
        with torch.no_grad():
            self._fixed_prior = self.prior()
        try:
            yield
        finally:
            self._fixed_prior = None

    def model(self, x: torch.Tensor) -> torch.Tensor:
        """p(z) p(x | z) over a minibatch ``x`` of shape ``(B, x_dim)`` with values in {0, 1}."""
        pyro.module("decoder", self.decoder)
        pyro.module("prior", self.prior)
        with pyro.plate("data", x.shape[0]):
            prior = self._fixed_prior if self._fixed_prior is not None else self.prior()
            z = pyro.sample("z", prior)
            logits = self.decoder(z)
            # Bernoulli on logits: log-probabilities by a stable softplus, no clamping needed.
            pyro.sample("x", BernoulliPixels(logits), obs=x)
        return z

    @torch.no_grad()
    def sample_images(self, n: int) -> torch.Tensor:
        """``n`` images from the model: z ~ p(z), then the decoder's pixel probabilities."""
        z = self.prior().sample((n,))
        return torch.sigmoid(self.decoder(z))

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
