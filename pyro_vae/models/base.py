"""What the shipped models share: a prior module over the top latent layer, built once while
evaluating, the likelihood p(x | decoder output) (``--likelihood``), and the decoder output bias
started at the data's mean image.

User models need none of this (see :mod:`pyro_vae.models`): the two hooks here,
``fixed_prior()`` and ``init_from_data(mean_pixel)``, are optional and looked up by name.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Optional

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from pyro_vae.models.likelihoods import Bernoulli, Likelihood
from pyro_vae.nn.nets import init_output_bias


class PriorModel(nn.Module):
    """A model whose top latent layer is drawn from ``self.prior()`` and whose pixels are scored
    by ``self.likelihood`` on the output of ``self.output_decoder`` (default: Bernoulli pixels,
    ``x_dim`` of them)."""

    prior: nn.Module
    output_decoder: nn.Module

    def __init__(self, likelihood: Optional[Likelihood] = None, x_dim: int = 784):
        super().__init__()
        self._fixed_prior: Optional[dist.TorchDistribution] = None
        self.likelihood = likelihood if likelihood is not None else Bernoulli((1, 1, x_dim))

    def observe(self, output: torch.Tensor, x: torch.Tensor) -> None:
        """The observed site ``"x"``: ``x`` scored by the likelihood of the decoder's ``output``
        (its parameters, if any, registered with Pyro as "likelihood")."""
        pyro.module("likelihood", self.likelihood)
        pyro.sample("x", self.likelihood(output), obs=x)

    @contextmanager
    def fixed_prior(self):
        """Build p(z_top) once for many model calls that need no gradient (evaluation): it does
        not depend on x, and some priors are costly to build (VampPrior encodes all its
        pseudo-inputs)."""
        with torch.no_grad():
            self._fixed_prior = self.prior()
        try:
            yield
        finally:
            self._fixed_prior = None

    def prior_distribution(self) -> dist.TorchDistribution:
        return self._fixed_prior if self._fixed_prior is not None else self.prior()

    def init_from_data(self, mean_pixel: torch.Tensor) -> None:
        """Start the decoder at the mean training image, as the likelihood parameterizes it (see
        :func:`~pyro_vae.nn.nets.init_output_bias`)."""
        init_output_bias(self.output_decoder, self.likelihood.output_bias(mean_pixel.detach().cpu()))
