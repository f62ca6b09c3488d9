"""User models with discrete latent sites, as a new user writes them (test support for the
discrete families' tests, tests/models/test_discrete_models.py).

- :class:`UnbroadcastM2`: Pyro's semi-supervised M2 model with the label ``y`` sampled in both
  programs and networks that take ``torch.cat([x, y], -1)``: fine on ``(B, ...)`` inputs, broken
  on the ``(K, B, ...)`` inputs of vectorized particles (the end-of-epoch test ELBO), which the
  start-up check must refuse before an epoch.
- :class:`IndexCategoricalVAE`: a categorical index site, one-hot coded in the networks.
- :class:`TorchOneHotVAE`: one categorical latent sampled from Pyro's own ``OneHotCategorical``
  (``F.one_hot`` inside torch's ``sample``): correct, but untraceable, so the compiled step must
  run it eagerly and say why.
"""

import pyro
import pyro.distributions as dist
import torch
from torch import nn


class UnbroadcastM2(nn.Module):
    def __init__(self, x_dim, latent_dim, classes=10, width=32):
        super().__init__()
        self.z_dim, self.classes = latent_dim[-1], classes
        self.encoder_y = nn.Sequential(nn.Linear(x_dim, width), nn.ReLU(), nn.Linear(width, classes))
        self.encoder_z = nn.Sequential(nn.Linear(x_dim + classes, width), nn.ReLU(),
                                       nn.Linear(width, 2 * self.z_dim))
        self.decoder = nn.Sequential(nn.Linear(self.z_dim + classes, width), nn.ReLU(), nn.Linear(width, x_dim))

    def model(self, x):
        pyro.module("decoder", self.decoder)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(x.new_zeros(self.z_dim), 1.0).to_event(1))
            y = pyro.sample("y", dist.OneHotCategorical(logits=x.new_zeros(self.classes)))
            pyro.sample("x", dist.Bernoulli(logits=self.decoder(torch.cat([z, y], -1))).to_event(1), obs=x)

    def guide(self, x):
        pyro.module("encoder_y", self.encoder_y)
        pyro.module("encoder_z", self.encoder_z)
        with pyro.plate("data", x.shape[0]):
            y = pyro.sample("y", dist.OneHotCategorical(logits=self.encoder_y(x)))
            loc, raw = self.encoder_z(torch.cat([x, y], -1)).chunk(2, -1)  # x is (B, D) only
            pyro.sample("z", dist.Normal(loc, nn.functional.softplus(raw) + 1e-3).to_event(1))


class TorchOneHotVAE(nn.Module):
    def __init__(self, x_dim, latent_dim, classes=4, width=16):
        super().__init__()
        self.latents, self.classes = latent_dim[-1], classes
        codes = self.latents * classes
        self.encoder = nn.Sequential(nn.Linear(x_dim, width), nn.ReLU(), nn.Linear(width, codes))
        self.decoder = nn.Sequential(nn.Linear(codes, width), nn.ReLU(), nn.Linear(width, x_dim))

    def model(self, x):
        pyro.module("decoder", self.decoder)
        with pyro.plate("data", x.shape[0]):
            prior = dist.OneHotCategorical(logits=x.new_zeros(self.latents, self.classes)).to_event(1)
            z = pyro.sample("z", prior)
            pyro.sample("x", dist.Bernoulli(logits=self.decoder(z.flatten(-2))).to_event(1), obs=x)

    def guide(self, x):
        pyro.module("encoder", self.encoder)
        with pyro.plate("data", x.shape[0]):
            logits = self.encoder(x).unflatten(-1, (self.latents, self.classes))
            pyro.sample("z", dist.OneHotCategorical(logits=logits).to_event(1))


class IndexCategoricalVAE(nn.Module):
    """One categorical latent as an index site (``dist.Categorical``), one-hot coded inside the
    networks: its mean is NaN to torch, and ``F.one_hot`` of a float mean crashes, which the
    figures and active units must not feed it."""

    def __init__(self, x_dim, classes=5, width=16):
        super().__init__()
        self.classes = classes
        self.encoder = nn.Sequential(nn.Linear(x_dim, width), nn.ReLU(), nn.Linear(width, classes))
        self.decoder = nn.Sequential(nn.Linear(classes, width), nn.ReLU(), nn.Linear(width, x_dim))

    def model(self, x):
        pyro.module("decoder", self.decoder)
        with pyro.plate("data", x.shape[0]):
            y = pyro.sample("y", dist.Categorical(logits=x.new_zeros(self.classes)))
            code = nn.functional.one_hot(y, self.classes).to(x.dtype)
            pyro.sample("x", dist.Bernoulli(logits=self.decoder(code)).to_event(1), obs=x)

    def guide(self, x):
        pyro.module("encoder", self.encoder)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("y", dist.Categorical(logits=self.encoder(x)))
