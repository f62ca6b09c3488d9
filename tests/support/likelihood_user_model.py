"""A user model that takes the configured likelihood (``likelihood`` constructor argument) and sizes
its decoder from it, for tests/models/test_likelihood_runs.py."""

import pyro
from torch import nn


class LikelihoodVAE(nn.Module):
    """A user model that takes the configured likelihood and sizes its decoder from it."""

    def __init__(self, x_dim, likelihood):
        super().__init__()
        self.likelihood = likelihood
        self.encoder = nn.Linear(x_dim, 4)
        self.decoder = nn.Linear(2, likelihood.out_features)

    def model(self, x):
        pyro.module("decoder", self.decoder)
        pyro.module("likelihood", self.likelihood)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", pyro.distributions.Normal(x.new_zeros(2), 1).to_event(1))
            pyro.sample("x", self.likelihood(self.decoder(z)), obs=x)

    def guide(self, x):
        pyro.module("encoder", self.encoder)
        with pyro.plate("data", x.shape[0]):
            loc, raw = self.encoder(x).chunk(2, -1)
            pyro.sample("z", pyro.distributions.Normal(loc, nn.functional.softplus(raw)).to_event(1))
