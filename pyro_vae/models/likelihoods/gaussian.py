"""``--likelihood gaussian``: a Normal per value with a *learned* variance, on dequantized data.

A unit-variance Gaussian (the "MSE" VAE) fixes the trade-off between reconstruction and KL at an
arbitrary point and is not a model of the data's noise; here the scale is learned, as Rybkin et
al.'s sigma-VAE argue it must be. ``--likelihood-options '{"variance": ...}'``:

- ``pixel`` (default): the decoder emits a location and a log-scale for every value (2 outputs
  per value);
- ``image``: one scale per image, the mean of the decoder's log-scale outputs over the image (a
  single number per image: the noise level of that image, learned like sigma-VAE's);
- ``shared``: one log-scale per value position, a parameter shared by all images (not amortized).

The data are values in [0, 1] (8-bit levels dequantized: see
:mod:`~pyro_vae.data.dequantize`); the density is over the real line, so the mass
it puts outside [0, 1] is lost to the bound, which stays a valid lower bound on the 8-bit data's
log-likelihood.
"""

from __future__ import annotations

import pyro.distributions as dist
import torch
from torch import nn

from pyro_vae.core.errors import ConfigError
from pyro_vae.models.likelihoods.base import Likelihood

VARIANCES = ("pixel", "image", "shared")
MIN_LOG_SCALE = -9.0  # e^-9 is about 1/8000: well under the dequantization noise's 1/256


class Gaussian(Likelihood):
    """Normal(loc, scale) per value; ``variance``: pixel | image | shared (see the module docstring)."""

    data = "continuous"

    def __init__(self, image_shape, variance: str = "pixel"):
        super().__init__(image_shape)
        if variance not in VARIANCES:
            raise ConfigError(f"likelihood gaussian: unknown variance {variance!r}; choose one of "
                              f"{', '.join(VARIANCES)}")
        self.variance = variance
        self.log_scale = nn.Parameter(torch.full((self.values,), -2.0)) if variance == "shared" else None

    def channels_per_location(self, channels: int) -> int:
        return channels if self.variance == "shared" else 2 * channels

    def distribution(self, output: torch.Tensor) -> dist.TorchDistribution:
        if self.variance == "shared":
            loc, log_scale = output, self.log_scale
        else:
            params = self.parameters_of(output)
            channels = self.image_shape[0]
            loc, log_scale = params[..., :channels, :, :].flatten(-3), params[..., channels:, :, :].flatten(-3)
            if self.variance == "image":
                log_scale = log_scale.mean(-1, keepdim=True)
        scale = log_scale.clamp(min=MIN_LOG_SCALE).exp()
        loc, scale = torch.broadcast_tensors(loc, scale)
        return dist.Normal(loc, scale).to_event(1)

    def output_bias(self, mean_image: torch.Tensor) -> torch.Tensor:
        bias = super().output_bias(mean_image)
        channels = self.image_shape[0]
        bias[:channels] = mean_image.reshape(self.image_shape)
        if self.variance != "shared":
            bias[channels:] = -2.0  # scale e^-2: the spread of a pixel across images, roughly
        return bias
