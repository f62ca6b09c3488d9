"""A user-defined model for pyro-vae: a VAE with two latent sites, content and style.

    z     ~ p(z)            the prior named by --prior (any shipped or user prior)
    style ~ N(0, I_2)       a small second code
    x     ~ Bernoulli(decoder([z, style]))

and a mean-field guide q(z | x) q(style | x) from one encoder. Train it with

    python scripts/svi_train.py --model examples.custom_model:StyleContentVAE \\
        --model-options '{"style_dim": 2}'
"""

import pyro
import pyro.distributions as dist
import torch
from torch import nn
from torch.nn import functional as F


class StyleContentVAE(nn.Module):
    # pyro-vae passes the constructor arguments it declares by name (x_dim, latent_dim, prior
    # here); the rest come from model_options.
    def __init__(self, x_dim, latent_dim, prior, width=256, style_dim=2):
        super().__init__()
        self.z_dim, self.style_dim = latent_dim[-1], style_dim
        codes = self.z_dim + style_dim
        self.prior = prior  # a submodule: its parameters are trained and checkpointed too
        self.encoder = nn.Sequential(nn.Linear(x_dim, width), nn.ReLU(), nn.Linear(width, 2 * codes))
        self.decoder = nn.Sequential(nn.Linear(codes, width), nn.ReLU(), nn.Linear(width, x_dim))

    def model(self, x):
        pyro.module("decoder", self.decoder)
        pyro.module("prior", self.prior)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", self.prior())
            style = pyro.sample("style", dist.Normal(x.new_zeros(self.style_dim), 1.0).to_event(1))
            logits = self.decoder(torch.cat([z, style], dim=-1))  # (..., B, codes): any leading dims
            pyro.sample("x", dist.Bernoulli(logits=logits).to_event(1), obs=x)

    def guide(self, x):
        pyro.module("encoder", self.encoder)
        with pyro.plate("data", x.shape[0]):
            loc, raw_scale = self.encoder(x).chunk(2, dim=-1)
            scale = F.softplus(raw_scale) + 1e-4
            pyro.sample("z", dist.Normal(loc[..., :self.z_dim], scale[..., :self.z_dim]).to_event(1))
            pyro.sample("style", dist.Normal(loc[..., self.z_dim:], scale[..., self.z_dim:]).to_event(1))
