"""Sohn et al.'s (2015) conditional VAE on Pyro's quadrant task (``examples/cvae/``): predict the
rest of a digit from ``quadrants`` of its four quadrants (1: the bottom-left; 2: the left half;
3: all but the bottom-right, as the example's masks).

    p(z | g) = N(prior_net(g))     p(t | z) = Bernoulli(generation_net(z)) on the target pixels t
    q(z | g, t) = N(recognition_net(g, t))

with ``g`` the given pixels. The site rules hold as for any model: ``"x"`` observes the whole
image, and its distribution scores the target pixels only (the given ones condition the prior),
so the ELBO is that of log p(t | g), and log p(x) as pyro-vae estimates it (importance sampling
from the guide, K samples, PSIS) is the conditional log-likelihood log p(t | g): the measure of
Sohn et al. and of Pyro's example (which reports a Monte Carlo ELBO of it instead). The
networks are the example's: two hidden layers of 500 ReLU units, z of 200 dimensions; the
prior and recognition networks read an image in which the pixels they are not given are -1,
as the example's encoders do. One difference: the example also trains a deterministic
baseline network first and feeds its prediction to the prior network as a first guess; here the
prior network reads the given pixels alone, so the model is one ELBO trained in one run.
"""

from __future__ import annotations

from typing import Sequence

import pyro
import torch
from torch import nn

from pyro_vae.config import flag, shown
from pyro_vae.core.choices import add_unread
from pyro_vae.core.options import option
from pyro_vae.models.likelihoods import BernoulliPixels
from pyro_vae.nn.nets import MLPDecoder, MLPEncoder

CVAE = "cvae"


def given_mask(image_shape: Sequence[int], quadrants: int) -> torch.Tensor:
    """``(C*H*W,)`` 0/1 floats: the pixels given to the model (Pyro's ``MaskImages``)."""
    channels, height, width = image_shape
    given = torch.zeros(channels, height, width)
    given[:, height // 2:, :width // 2] = 1  # the bottom-left quadrant
    if quadrants >= 2:
        given[:, :, :width // 2] = 1  # the left half
    if quadrants == 3:
        given[:, :height // 2, :] = 1  # and the top half
    return given.flatten()


class ConditionalVAE(nn.Module):
    """The CVAE (see the module docstring). Networks: "prior" (p(z | g)), "decoder" (p(t | z)),
    "encoder" (q(z | g, t)). ``given``: the mask of :func:`given_mask`, a buffer (saved with
    the weights); :attr:`target_mask` is its complement, what the figures draw as predicted."""

    def __init__(self, x_dim: int, latent_dim: int, given: torch.Tensor, hidden: Sequence[int] = (500, 500),
                 activation: str = "relu"):
        super().__init__()
        self.register_buffer("given", given.float())
        self.prior_net = MLPEncoder(x_dim, hidden, latent_dim, activation)
        self.encoder = MLPEncoder(x_dim, hidden, latent_dim, activation)
        self.decoder = MLPDecoder(latent_dim, hidden, x_dim, activation)

    @property
    def output_decoder(self) -> nn.Module:
        return self.decoder

    @property
    def target_mask(self) -> torch.Tensor:
        return 1 - self.given

    def givens(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` with the pixels not given set to -1 (what the prior network reads)."""
        return x * self.given - self.target_mask

    def model(self, x: torch.Tensor) -> torch.Tensor:
        pyro.module("prior", self.prior_net)
        pyro.module("decoder", self.decoder)
        with pyro.plate("data", x.shape[0]):
            loc, scale = self.prior_net(self.givens(x))
            z = pyro.sample("z", pyro.distributions.Normal(loc, scale).to_event(1))
            pyro.sample("x", BernoulliPixels(self.decoder(z), self.target_mask), obs=x)
        return z

    def guide(self, x: torch.Tensor) -> torch.Tensor:
        pyro.module("encoder", self.encoder)
        with pyro.plate("data", x.shape[0]):
            loc, scale = self.encoder(x)
            return pyro.sample("z", pyro.distributions.Normal(loc, scale).to_event(1))


def unread_quadrants(cfg, defaults) -> dict[str, str]:
    """``quadrants`` set for a model other than cvae."""
    if cfg.model.name != CVAE and cfg.model.quadrants != defaults.model.quadrants:
        return {"quadrants": f"{flag('quadrants')} is read by {option('model', CVAE)} only, and the "
                             f"model is {shown(cfg.model.name)}; drop it"}
    return {}


add_unread(CVAE, unread_quadrants)
