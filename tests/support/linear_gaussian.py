"""A linear-Gaussian VAE whose ELBO, ELBO gradient and log p(x) are known in closed form.

p(z) = N(0, I_d),  p(x | z) = N(W z + b, sigma^2 I_D),  q(z | x) = N(A x + c, diag(exp(2 log_s))).

The exact ELBO is a differentiable torch expression of the parameters, so its exact gradient is
one ``backward()`` away, and every estimator's Monte Carlo gradient can be compared with it.
"""

import math

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from pyro_vae.models.estimators import BaselineNet, baseline_infer, has_baseline_network, latent_distribution


class LinearGaussianVAE(nn.Module):
    def __init__(self, d=2, D=3, sigma=0.7, estimator="reparam", baseline="none", beta=0.9, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.d, self.D, self.sigma = d, D, sigma
        self.decoder = nn.ParameterDict({"W": nn.Parameter(torch.randn(D, d, generator=g)),
                                         "b": nn.Parameter(0.5 * torch.randn(D, generator=g))})
        # a guide deliberately away from the optimum, so that every gradient is far from zero
        self.encoder = nn.ParameterDict({"A": nn.Parameter(0.3 * torch.randn(d, D, generator=g)),
                                         "c": nn.Parameter(0.3 * torch.randn(d, generator=g)),
                                         "log_s": nn.Parameter(torch.full((d,), -0.4))})
        self.estimator, self.baseline, self.beta = estimator, baseline, beta
        self.baseline_net = BaselineNet(D, hidden=8) if has_baseline_network(baseline) else None

    def sample_data(self, n, seed=1):
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            z = torch.randn(n, self.d, generator=g)
            return z @ self.decoder["W"].T + self.decoder["b"] + self.sigma * torch.randn(n, self.D, generator=g)

    def model(self, x):
        pyro.module("decoder", self.decoder)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(torch.zeros(self.d), 1.0).to_event(1))
            mean = z @ self.decoder["W"].T + self.decoder["b"]
            pyro.sample("x", dist.Normal(mean, self.sigma).to_event(1), obs=x)

    def guide(self, x):
        pyro.module("encoder", self.encoder)
        if self.baseline_net is not None:
            pyro.module("baseline", self.baseline_net)
        with pyro.plate("data", x.shape[0]):
            loc = x @ self.encoder["A"].T + self.encoder["c"]
            scale = self.encoder["log_s"].exp().expand_as(loc)
            pyro.sample("z", latent_distribution(loc, scale, self.estimator),
                        infer=baseline_infer(self.baseline, x, self.beta, self.baseline_net))

    def exact_elbo(self, x):
        """Sum over the rows of x of E_q[log p(x|z)] - KL(q || p), in closed form."""
        W, b = self.decoder["W"], self.decoder["b"]
        m = x @ self.encoder["A"].T + self.encoder["c"]
        s2 = (2 * self.encoder["log_s"]).exp()
        resid = x - m @ W.T - b
        expected_sq = (resid ** 2).sum(-1) + (W ** 2 * s2).sum()  # E||x - Wz - b||^2
        log_lik = -0.5 * self.D * math.log(2 * math.pi * self.sigma ** 2) - expected_sq / (2 * self.sigma ** 2)
        kl = 0.5 * (s2.sum() + (m ** 2).sum(-1) - self.d - (2 * self.encoder["log_s"]).sum())
        return (log_lik - kl).sum()

    def exact_log_likelihood(self, x):
        """log p(x) of each row: x ~ N(b, W W^T + sigma^2 I)."""
        W, b = self.decoder["W"], self.decoder["b"]
        cov = W @ W.T + self.sigma ** 2 * torch.eye(self.D)
        return dist.MultivariateNormal(b, covariance_matrix=cov).log_prob(x)

    def gradient_params(self):
        """Encoder and decoder parameters (not the baseline's), in a fixed order."""
        return list(self.encoder.values()) + list(self.decoder.values())
