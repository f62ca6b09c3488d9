"""What a likelihood is: the observation model p(x | z) as a module between the decoder and the
observed site ``"x"``.

A :class:`Likelihood` knows the image shape (C, H, W) and says how many output channels it needs
from the decoder per image channel (a Bernoulli one, a Gaussian two, a logistic mixture 3 M or
10 M per pixel location): decoders are built with :attr:`Likelihood.out_channels` outputs per
location, never with a number chosen by the network. Its ``forward`` turns the decoder's output
``(..., out_channels H W)`` (channel-major, like a conv decoder's flattened output) into a
distribution whose event is the flattened image ``(C H W,)``, the value of ``"x"``.

``data`` says which values the likelihood scores, so that a mismatched pair is refused before
training: ``binary`` ({0, 1} pixels), ``levels`` (the 256 levels k / 255 of 8-bit data, scored as
masses) or ``continuous`` (values in [0, 1], scored as densities: 8-bit data are dequantized for
them, (k + u) / 256, and their log-likelihood in nats and bits/dim is of the 8-bit data, the
change of variables accounted for; see :mod:`pyro_vae.data.dequantize`).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from pyro.distributions import TorchDistribution
from torch import nn

DATA_KINDS = ("binary", "levels", "continuous")
LEVELS = 256


class Likelihood(nn.Module):
    """p(x | decoder output) over images of ``image_shape`` (see the module docstring).
    Subclasses set :attr:`data`, :meth:`channels_per_location` and :meth:`distribution`."""

    data: str = "binary"

    def __init__(self, image_shape: Sequence[int]):
        super().__init__()
        self.image_shape = tuple(int(n) for n in image_shape)
        self.log_cell = 0.0  # -log 256 once the values are dequantized 8-bit levels (see on_levels)

    @property
    def of_8bit_data(self) -> bool:
        """Whether its log-likelihoods are of 8-bit data (256 levels, or dequantized levels), the
        data that bits/dim is the measure of."""
        return self.data == "levels" or bool(self.log_cell)

    def on_levels(self, dequantized: bool) -> "Likelihood":
        """Score dequantized 8-bit data: a density of x = (k + u) / 256 becomes one of k + u, by
        -log 256 per value, so every log-likelihood, ELBO and bound the run reports is of the
        8-bit data in nats (a lower bound on log P(k): :mod:`pyro_vae.data.dequantize`)."""
        self.log_cell = -math.log(LEVELS) if dequantized and self.data == "continuous" else 0.0
        return self

    @property
    def values(self) -> int:
        """D = C H W, the values of one image."""
        return math.prod(self.image_shape)

    def channels_per_location(self, channels: int) -> int:
        """Decoder outputs per pixel location for images of ``channels`` channels."""
        return channels

    @property
    def out_channels(self) -> int:
        """The decoder's output channels (its outputs per pixel location)."""
        return self.channels_per_location(self.image_shape[0])

    @property
    def out_features(self) -> int:
        """The decoder's flattened output size: out_channels H W."""
        return self.out_channels * self.image_shape[1] * self.image_shape[2]

    def parameters_of(self, output: torch.Tensor) -> torch.Tensor:
        """The decoder's flattened output as ``(..., out_channels, H, W)``."""
        _, height, width = self.image_shape
        return output.reshape(*output.shape[:-1], self.out_channels, height, width)

    def distribution(self, output: torch.Tensor) -> TorchDistribution:
        raise NotImplementedError

    def forward(self, output: torch.Tensor) -> TorchDistribution:
        fn = self.distribution(output)
        return OnCells(fn, self.values * self.log_cell) if self.log_cell else fn

    def output_bias(self, mean_image: torch.Tensor) -> torch.Tensor:
        """``(out_channels, H, W)``: the decoder's output bias that makes the untrained model
        predict the mean training image (Burda et al. 2016's start), or zeros where a likelihood
        has no such start."""
        _, height, width = self.image_shape
        return torch.zeros(self.out_channels, height, width, dtype=mean_image.dtype)

    def extra_repr(self) -> str:
        return f"image_shape={self.image_shape}"


class OnCells(TorchDistribution):
    """``base``'s density shifted by a constant, ``offset`` (D log of a cell's width): the density
    of k + u where ``base`` is that of (k + u) / 256. Everything else is ``base``'s."""

    arg_constraints: dict = {}

    def __init__(self, base: TorchDistribution, offset: float):
        self.base, self.offset = base, offset
        super().__init__(base.batch_shape, base.event_shape, validate_args=False)

    @property
    def support(self):
        return self.base.support

    def expand(self, batch_shape, _instance=None):
        return OnCells(self.base.expand(batch_shape), self.offset)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        return self.base.log_prob(value) + self.offset

    def sample(self, sample_shape=torch.Size()) -> torch.Tensor:
        return self.base.sample(sample_shape)

    @property
    def mean(self) -> torch.Tensor:
        return self.base.mean
