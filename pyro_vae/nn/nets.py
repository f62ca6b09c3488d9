"""Encoder and decoder networks (plain ``torch.nn`` modules, no Pyro inside).

Every network accepts inputs with arbitrary leading batch dimensions, e.g. ``(B, 784)`` or
``(K, B, 784)``: vectorized particles (``vectorize_particles=True``, importance sampling) add an
outer dimension, and the nets must not care. Images travel flattened as ``(..., 784)``; the
convolutional nets reshape internally.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from pyro_vae.config import ModelSection
from pyro_vae.core.choices import publish
from pyro_vae.core.registry import Registry

# name -> the nonlinearity of a hidden layer, for ``activation``. A ``pointwise`` one is a module
# applied after a linear map (``factory()``); one that is not is a whole layer
# (``factory(n_in, n_out)``, :class:`GatedDense`), which convolutions cannot use.
ACTIVATIONS = Registry("activation", pointwise=True)
for _name, _module in (("relu", nn.ReLU), ("tanh", nn.Tanh), ("softplus", nn.Softplus), ("elu", nn.ELU),
                       ("leaky_relu", nn.LeakyReLU)):
    ACTIVATIONS.register(_name, _module)
# name -> ``builder(image_shape, hidden, z_dim, activation, logvar_range, out_channels) -> (encoder, decoder)``,
# for ``arch`` (registered below, after the networks).
ARCHITECTURES = Registry(
    "arch",
    pointwise_only=False,  # needs a pointwise activation (a convolution cannot be gated here)
    min_hidden=0,  # the fewest hidden layer sizes it can be built with
)
publish("activation", ACTIVATIONS)
publish("arch", ARCHITECTURES)


class GatedDense(nn.Module):
    """h * sigmoid(g) with h, g two linear maps of the input: the gated (GLU-style) unit of
    Tomczak & Welling's VampPrior networks (Dauphin et al. 2017). ``--activation gated`` makes
    every hidden layer one of these, with no other nonlinearity."""

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.h = nn.Linear(n_in, n_out)
        self.g = nn.Linear(n_in, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.h(x) * torch.sigmoid(self.g(x))


GATED = "gated"
ACTIVATIONS.register(GATED, GatedDense, pointwise=False,
                     description="GatedDense hidden layers (h * sigmoid(g)); mlp layers only")


def hidden_layer(n_in: int, n_out: int, activation: str) -> list[nn.Module]:
    """One hidden layer: a linear map and ``activation``, or a :class:`GatedDense` unit."""
    entry = ACTIVATIONS.get(activation)
    if not entry.capabilities["pointwise"]:
        return [entry.factory(n_in, n_out)]
    return [nn.Linear(n_in, n_out), entry.factory()]


def mlp(sizes: Sequence[int], activation: str, activate_last: bool = False) -> nn.Sequential:
    """Hidden layers (:func:`hidden_layer`) from ``sizes[0]`` to ``sizes[-1]``; the last map is a
    plain linear one unless ``activate_last``."""
    layers: list[nn.Module] = []
    pairs = list(zip(sizes[:-1], sizes[1:]))
    for i, (n_in, n_out) in enumerate(pairs):
        if i == len(pairs) - 1 and not activate_last:
            layers.append(nn.Linear(n_in, n_out))
        else:
            layers += hidden_layer(n_in, n_out, activation)
    return nn.Sequential(*layers)


def _positive(raw: torch.Tensor) -> torch.Tensor:
    """Softplus, not exp: a scale that grows linearly cannot overflow early in training."""
    return F.softplus(raw)


class MLPEncoder(nn.Module):
    """x -> (loc, scale) of a diagonal Normal over z, through ``hidden`` layers.

    The scale is softplus of the network's output, or, with ``logvar_range = (low, high)``,
    exp(log-variance / 2) with the log-variance clamped to [low, high] by a hardtanh, as in
    Tomczak & Welling's code (-6, 2): the guide can then neither collapse nor explode.
    """

    def __init__(self, x_dim: int, hidden: Sequence[int], z_dim: int, activation: str = "relu",
                 logvar_range: Optional[Sequence[float]] = None):
        super().__init__()
        self.body = mlp([x_dim, *hidden], activation, activate_last=True) if hidden else nn.Identity()
        self.head = nn.Linear(hidden[-1] if hidden else x_dim, 2 * z_dim)
        self.logvar_range = tuple(logvar_range) if logvar_range is not None else None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        loc, raw_scale = self.head(self.body(x)).chunk(2, dim=-1)
        if self.logvar_range is None:
            return loc, _positive(raw_scale)
        return loc, torch.exp(0.5 * F.hardtanh(raw_scale, *self.logvar_range))


class MLPDecoder(nn.Module):
    """z -> Bernoulli logits over the pixels, through ``hidden`` layers (reversed)."""

    def __init__(self, z_dim: int, hidden: Sequence[int], x_dim: int, activation: str = "relu"):
        super().__init__()
        self.net = mlp([z_dim, *reversed(hidden), x_dim], activation)

    @property
    def output_layer(self) -> nn.Linear:
        return self.net[-1]

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class ConvEncoder(nn.Module):
    """Two stride-2 convolutions (28 -> 14 -> 7), then an MLP to (loc, scale).

    The shape of the networks in the common PyTorch VAE tutorials for 28x28 images.
    """

    def __init__(self, image_shape: Sequence[int], hidden: Sequence[int], z_dim: int,
                 activation: str = "relu", channels: Sequence[int] = (32, 64),
                 logvar_range: Optional[Sequence[float]] = None):
        super().__init__()
        c, h, w = image_shape
        self.image_shape = tuple(image_shape)
        act = ACTIVATIONS.get(activation).factory
        self.conv = nn.Sequential(
            nn.Conv2d(c, channels[0], 4, stride=2, padding=1), act(),
            nn.Conv2d(channels[0], channels[1], 4, stride=2, padding=1), act(),
        )
        flat = channels[1] * math.ceil(h / 4) * math.ceil(w / 4)
        self.mlp = MLPEncoder(flat, hidden, z_dim, activation, logvar_range)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch_shape = x.shape[:-1]
        h = self.conv(x.reshape(-1, *self.image_shape)).flatten(1)
        loc, scale = self.mlp(h)
        return loc.reshape(*batch_shape, -1), scale.reshape(*batch_shape, -1)


class ConvDecoder(nn.Module):
    """An MLP from z to a 7x7 feature map, then two stride-2 transposed convolutions to
    ``out_channels`` maps of the image's size (the likelihood's parameters; default: one per image
    channel), flattened channel-major."""

    def __init__(self, z_dim: int, hidden: Sequence[int], image_shape: Sequence[int],
                 activation: str = "relu", channels: Sequence[int] = (32, 64), out_channels: Optional[int] = None):
        super().__init__()
        c, h, w = image_shape
        c = c if out_channels is None else out_channels
        self.feature_shape = (channels[1], math.ceil(h / 4), math.ceil(w / 4))
        self.image_shape = tuple(image_shape)
        act = ACTIVATIONS.get(activation).factory
        self.mlp = nn.Sequential(mlp([z_dim, *reversed(hidden), math.prod(self.feature_shape)], activation), act())
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(channels[1], channels[0], 4, stride=2, padding=1), act(),
            nn.ConvTranspose2d(channels[0], c, 4, stride=2, padding=1),
        )

    @property
    def output_layer(self) -> nn.ConvTranspose2d:
        return self.deconv[-1]

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        batch_shape = z.shape[:-1]
        h = self.mlp(z).reshape(-1, *self.feature_shape)
        logits = self.deconv(h)[..., : self.image_shape[1], : self.image_shape[2]]
        return logits.reshape(*batch_shape, -1)


@ARCHITECTURES.register("mlp", description="fully connected layers over the flattened image")
def _mlp(image_shape, hidden, z_dim, activation, logvar_range, out_channels):
    x_dim = math.prod(image_shape)
    return (MLPEncoder(x_dim, hidden, z_dim, activation, logvar_range),
            MLPDecoder(z_dim, hidden, out_channels * math.prod(image_shape[1:]), activation))


@ARCHITECTURES.register("conv", pointwise_only=True, min_hidden=1,
                        description="strided convolutions, then fully connected layers")
def _conv(image_shape, hidden, z_dim, activation, logvar_range, out_channels):
    return (ConvEncoder(image_shape, hidden, z_dim, activation, logvar_range=logvar_range),
            ConvDecoder(z_dim, hidden, image_shape, activation, out_channels=out_channels))


def networks(arch: str, image_shape: Sequence[int], hidden: Sequence[int], z_dim: int,
             activation: str, logvar_range: Optional[Sequence[float]] = None,
             out_channels: Optional[int] = None) -> tuple[nn.Module, nn.Module]:
    """The (encoder, decoder) pair of the registered ``arch`` between x and a latent layer of
    ``z_dim`` units; the decoder emits ``out_channels`` values per pixel location (the
    likelihood's parameters; default one per image channel). An architecture's factory is called
    as ``factory(image_shape, hidden, z_dim, activation, logvar_range, out_channels)``."""
    out_channels = image_shape[0] if out_channels is None else out_channels
    return ARCHITECTURES.get(arch).factory(image_shape, hidden, z_dim, activation, logvar_range, out_channels)


def build_nets(model: ModelSection, image_shape: Sequence[int],
               out_channels: Optional[int] = None) -> tuple[nn.Module, nn.Module]:
    """The (encoder, decoder) pair that a config's model section
    (:class:`~pyro_vae.config.ModelSection`) describes, next to x and its first latent layer."""
    return networks(model.arch, image_shape, model.hidden, model.latent_dim[0], model.activation,
                    model.logvar_range, out_channels)


def init_output_bias(decoder: nn.Module, bias: torch.Tensor) -> None:
    """Set the decoder's output bias to ``bias`` ``(out_channels, H, W)`` (for a convolution, one
    per channel: the channel's mean): the start a likelihood chooses so that the untrained model
    predicts the mean training image instead of noise (Burda et al. 2016), which removes hundreds
    of nats from the first steps (see :meth:`~pyro_vae.models.likelihoods.Likelihood.output_bias`)."""
    layer = decoder.output_layer
    with torch.no_grad():
        if isinstance(layer, nn.Linear):
            layer.bias.copy_(bias.reshape(-1).to(layer.bias))
        else:  # a convolution has one bias per channel: use the channel's mean
            channels = layer.bias.shape[0]
            layer.bias.copy_(bias.reshape(channels, -1).mean(-1).to(layer.bias))
