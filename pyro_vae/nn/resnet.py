"""``--arch resnet``: a small residual convolutional encoder and decoder, for 32 x 32 colour images
(any C x H x W works).

Encoder: a 3 x 3 convolution to ``width`` channels, then two stages of [a residual block, a
stride-2 convolution doubling the channels] (32 -> 16 -> 8), then fully connected layers of
``--hidden`` sizes to the loc and scale of q(z | x). Decoder: the mirror, fully connected layers to
a feature map of 2 ``width`` x H/4 x W/4, two stages of [a residual block, a stride-2 transposed
convolution], and a 3 x 3 convolution to the likelihood's ``out_channels``. A residual block is
x + conv(act(conv(act(x)))) with 3 x 3 convolutions (He et al. 2016's pre-activation form, no
normalization: batch statistics would make a VAE's log p(x) depend on the batch).
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
from torch import nn

from pyro_vae.nn.nets import ACTIVATIONS, ARCHITECTURES, MLPEncoder, mlp

WIDTH = 32  # channels after the stem; each stage doubles them


class ResidualBlock(nn.Module):
    def __init__(self, channels: int, activation: str):
        super().__init__()
        act = ACTIVATIONS.get(activation).factory
        self.body = nn.Sequential(act(), nn.Conv2d(channels, channels, 3, padding=1),
                                  act(), nn.Conv2d(channels, channels, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResNetEncoder(nn.Module):
    """x ``(..., C H W)`` -> (loc, scale) of q(z | x) (see the module docstring)."""

    def __init__(self, image_shape: Sequence[int], hidden: Sequence[int], z_dim: int, activation: str = "relu",
                 width: int = WIDTH, logvar_range: Optional[Sequence[float]] = None):
        super().__init__()
        c, h, w = image_shape
        self.image_shape = tuple(image_shape)
        act = ACTIVATIONS.get(activation).factory
        self.conv = nn.Sequential(
            nn.Conv2d(c, width, 3, padding=1),
            ResidualBlock(width, activation), nn.Conv2d(width, 2 * width, 4, stride=2, padding=1),
            ResidualBlock(2 * width, activation), nn.Conv2d(2 * width, 2 * width, 4, stride=2, padding=1), act())
        flat = 2 * width * math.ceil(h / 4) * math.ceil(w / 4)
        self.mlp = MLPEncoder(flat, hidden, z_dim, activation, logvar_range)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch_shape = x.shape[:-1]
        features = self.conv(x.reshape(-1, *self.image_shape)).flatten(1)
        loc, scale = self.mlp(features)
        return loc.reshape(*batch_shape, -1), scale.reshape(*batch_shape, -1)


class ResNetDecoder(nn.Module):
    """z -> ``out_channels`` maps of the image's size, flattened channel-major (see the module
    docstring)."""

    def __init__(self, z_dim: int, hidden: Sequence[int], image_shape: Sequence[int], activation: str = "relu",
                 width: int = WIDTH, out_channels: Optional[int] = None):
        super().__init__()
        c, h, w = image_shape
        self.image_shape = tuple(image_shape)
        self.feature_shape = (2 * width, math.ceil(h / 4), math.ceil(w / 4))
        act = ACTIVATIONS.get(activation).factory
        self.mlp = nn.Sequential(mlp([z_dim, *reversed(hidden), math.prod(self.feature_shape)], activation), act())
        self.deconv = nn.Sequential(
            ResidualBlock(2 * width, activation), nn.ConvTranspose2d(2 * width, 2 * width, 4, stride=2, padding=1),
            ResidualBlock(2 * width, activation), nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1),
            act(), nn.Conv2d(width, c if out_channels is None else out_channels, 3, padding=1))

    @property
    def output_layer(self) -> nn.Conv2d:
        return self.deconv[-1]

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        batch_shape = z.shape[:-1]
        maps = self.deconv(self.mlp(z).reshape(-1, *self.feature_shape))
        return maps[..., : self.image_shape[1], : self.image_shape[2]].reshape(*batch_shape, -1)


@ARCHITECTURES.register("resnet", pointwise_only=True, min_hidden=1,
                        description="residual convolutions (two stride-2 stages), then fully connected layers; "
                                    "for 32 x 32 colour images")
def _resnet(image_shape, hidden, z_dim, activation, logvar_range, out_channels):
    return (ResNetEncoder(image_shape, hidden, z_dim, activation, logvar_range=logvar_range),
            ResNetDecoder(z_dim, hidden, image_shape, activation, out_channels=out_channels))
