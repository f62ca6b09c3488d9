"""What the shipped models share: a prior module over the top latent layer, built once while
evaluating, and the decoder output bias started at the data's mean image.

User models need none of this (see :mod:`pyro_vae.models`): the two hooks here,
``fixed_prior()`` and ``init_from_data(mean_pixel)``, are optional and looked up by name.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Optional

import pyro.distributions as dist
import torch
from torch import nn

from pyro_vae.nn.nets import init_output_bias


class PriorModel(nn.Module):
    """A model whose top latent layer is drawn from ``self.prior()`` and whose pixels come from
    ``self.output_decoder``."""

    prior: nn.Module
    output_decoder: nn.Module

    def __init__(self):
        super().__init__()
        self._fixed_prior: Optional[dist.TorchDistribution] = None

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
        """Start the decoder at the mean training image (see :func:`~pyro_vae.nn.nets.init_output_bias`)."""
        init_output_bias(self.output_decoder, mean_pixel)
