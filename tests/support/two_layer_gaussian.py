"""A two-stochastic-layer linear-Gaussian VAE whose ELBO, ELBO gradient and log p(x) are known in
closed form: the hierarchical counterpart of ``linear_gaussian.py``.

    p(z2) = N(0, I),  p(z1 | z2) = N(B z2 + c, tau^2 I),  p(x | z1) = N(W z1 + b, sigma^2 I),
    q(z1 | x) = N(A x + a, diag(exp(2 log_s1))),  q(z2 | z1) = N(C z1 + e, diag(exp(2 log_s2))).

The guide is hierarchical (Burda et al.'s two-layer VAE): z2 is drawn given the *sampled* z1, so
a reparameterized z2 depends on the guide's parameters both directly and through z1. That is the
case where the path-derivative estimators (STL, DReG) must keep q(z2 | z1)'s dependence on z1
while stopping the parameters, and where TraceGraph_ELBO's downstream costs span two sites.

Under q, z1 ~ N(m1, S1) and z2 = C z1 + e + s2 * eps, so (z1, z2) is jointly Gaussian and the
expectation of every quadratic log-density is closed form; :meth:`exact_elbo` is a differentiable
torch expression of the parameters, and its gradient is one ``backward()`` away.
"""

import math

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from pyro_vae.models.estimators import BaselineNet, baseline_infer, latent_distribution

LOG_2PI = math.log(2 * math.pi)


class TwoLayerGaussianVAE(nn.Module):
    def __init__(self, d2=2, d1=2, D=3, tau=0.6, sigma=0.7, estimator="reparam", baseline="none",
                 beta=0.9, seed=0, noise=0.1, widen=0.25):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.d2, self.d1, self.D, self.tau, self.sigma = d2, d1, D, tau, sigma
        self.decoder = nn.ParameterDict({"B": nn.Parameter(torch.randn(d1, d2, generator=g)),
                                         "c": nn.Parameter(0.5 * torch.randn(d1, generator=g)),
                                         "W": nn.Parameter(torch.randn(D, d1, generator=g)),
                                         "b": nn.Parameter(0.5 * torch.randn(D, generator=g))})
        # a guide deliberately away from the optimum, so that every gradient is far from zero: the
        # posterior's conditional means plus noise, and scales wider than its conditional ones.
        # Not a random guide: that one would ignore the posterior's strong z1-z2 correlation and be
        # below half the posterior's variance across it, and then the importance weights p/q have
        # infinite variance (E_q[(p/q)^2] diverges unless 2 Sigma_p^-1 - Sigma_q^-1 > 0).
        near = self._posterior_guide()
        self.encoder = nn.ParameterDict({
            k: nn.Parameter(v + widen if k.startswith("log_s") else v + noise * torch.randn(v.shape, generator=g))
            for k, v in near.items()})
        self.estimator, self.baseline, self.beta = estimator, baseline, beta
        # one network per score-function site: each is fitted to its own site's downstream cost
        self.baseline_nets = nn.ModuleDict({"z1": BaselineNet(D, hidden=8), "z2": BaselineNet(D, hidden=8)}) \
            if baseline == "nn" else None

    def sample_data(self, n, seed=1):
        g = torch.Generator().manual_seed(seed)
        B, c, W, b = self.decoder["B"], self.decoder["c"], self.decoder["W"], self.decoder["b"]
        with torch.no_grad():
            z2 = torch.randn(n, self.d2, generator=g)
            z1 = z2 @ B.T + c + self.tau * torch.randn(n, self.d1, generator=g)
            return z1 @ W.T + b + self.sigma * torch.randn(n, self.D, generator=g)

    def model(self, x):
        pyro.module("decoder", self.decoder)
        with pyro.plate("data", x.shape[0]):
            z2 = pyro.sample("z2", dist.Normal(torch.zeros(self.d2), 1.0).to_event(1))
            z1 = pyro.sample("z1", dist.Normal(z2 @ self.decoder["B"].T + self.decoder["c"], self.tau).to_event(1))
            mean = z1 @ self.decoder["W"].T + self.decoder["b"]
            pyro.sample("x", dist.Normal(mean, self.sigma).to_event(1), obs=x)

    def _infer(self, site, x):
        net = self.baseline_nets[site] if self.baseline_nets is not None else None
        return baseline_infer(self.baseline, x, self.beta, net)

    def guide(self, x):
        pyro.module("encoder", self.encoder)
        if self.baseline_nets is not None:
            pyro.module("baseline", self.baseline_nets)
        with pyro.plate("data", x.shape[0]):
            loc1 = x @ self.encoder["A"].T + self.encoder["a"]
            z1 = pyro.sample("z1", latent_distribution(loc1, self.encoder["log_s1"].exp().expand_as(loc1),
                                                       self.estimator), infer=self._infer("z1", x))
            loc2 = z1 @ self.encoder["C"].T + self.encoder["e"]  # the sampled z1: a hierarchical guide
            pyro.sample("z2", latent_distribution(loc2, self.encoder["log_s2"].exp().expand_as(loc2),
                                                  self.estimator), infer=self._infer("z2", x))

    def exact_elbo(self, x):
        """Sum over the rows of x of E_q[log p(x, z1, z2) - log q(z1, z2 | x)], in closed form.

        With z1 = m1 + s1 * eps1 and z2 = C z1 + e + s2 * eps2, each term is E||u||^2 =
        ||E u||^2 + tr Cov u of an affine u; e.g. z1 - B z2 = (I - BC) z1 - B e - B s2 eps2 has
        tr Cov = ||(I - BC) diag(s1)||_F^2 + ||B diag(s2)||_F^2.
        """
        B, c, W, b = self.decoder["B"], self.decoder["c"], self.decoder["W"], self.decoder["b"]
        A, a, C, e = self.encoder["A"], self.encoder["a"], self.encoder["C"], self.encoder["e"]
        log_s1, log_s2 = self.encoder["log_s1"], self.encoder["log_s2"]
        v1, v2 = (2 * log_s1).exp(), (2 * log_s2).exp()  # the guide's variances
        m1 = x @ A.T + a  # E_q[z1]
        m2 = m1 @ C.T + e  # E_q[z2]
        # log p(z2): E||z2||^2, Cov z2 = C S1 C^T + S2
        sq_z2 = (m2 ** 2).sum(-1) + (C ** 2 * v1).sum() + v2.sum()
        log_p_z2 = -0.5 * self.d2 * LOG_2PI - 0.5 * sq_z2
        # log p(z1 | z2): E||z1 - B z2 - c||^2
        I_BC = torch.eye(self.d1) - B @ C
        sq_z1 = ((m1 - m2 @ B.T - c) ** 2).sum(-1) + (I_BC ** 2 * v1).sum() + (B ** 2 * v2).sum()
        log_p_z1 = -0.5 * self.d1 * math.log(2 * math.pi * self.tau ** 2) - sq_z1 / (2 * self.tau ** 2)
        # log p(x | z1): E||x - W z1 - b||^2
        sq_x = ((x - m1 @ W.T - b) ** 2).sum(-1) + (W ** 2 * v1).sum()
        log_p_x = -0.5 * self.D * math.log(2 * math.pi * self.sigma ** 2) - sq_x / (2 * self.sigma ** 2)
        # -log q: the entropies of N(m1, S1) and of z2 given z1
        entropy = 0.5 * (self.d1 + self.d2) * (LOG_2PI + 1) + log_s1.sum() + log_s2.sum()
        return (log_p_z2 + log_p_z1 + log_p_x + entropy).sum()

    def exact_log_likelihood(self, x):
        """log p(x) of each row: x ~ N(W c + b, W (B B^T + tau^2 I) W^T + sigma^2 I)."""
        B, c, W, b = self.decoder["B"], self.decoder["c"], self.decoder["W"], self.decoder["b"]
        cov_z1 = B @ B.T + self.tau ** 2 * torch.eye(self.d1)
        cov = W @ cov_z1 @ W.T + self.sigma ** 2 * torch.eye(self.D)
        return dist.MultivariateNormal(W @ c + b, covariance_matrix=cov).log_prob(x)

    def log_joint(self, x, z1, z2):
        """log p(x, z1, z2) per particle and row (broadcasting over leading dims)."""
        B, c, W, b = self.decoder["B"], self.decoder["c"], self.decoder["W"], self.decoder["b"]
        return (dist.Normal(torch.zeros(self.d2), 1.0).log_prob(z2).sum(-1)
                + dist.Normal(z2 @ B.T + c, self.tau).log_prob(z1).sum(-1)
                + dist.Normal(z1 @ W.T + b, self.sigma).log_prob(x).sum(-1))

    def log_guide(self, x, z1, z2, encoder=None):
        """log q(z1, z2 | x), with the encoder parameters ``encoder`` (default: the module's own);
        detached copies give log q at stopped parameters, still a function of the sampled z1."""
        p = dict(self.encoder) if encoder is None else encoder
        loc1 = x @ p["A"].T + p["a"]
        loc2 = z1 @ p["C"].T + p["e"]
        return (dist.Normal(loc1, p["log_s1"].exp()).log_prob(z1).sum(-1)
                + dist.Normal(loc2, p["log_s2"].exp()).log_prob(z2).sum(-1))

    def guide_joint(self, x):
        """Mean (rows, d1 + d2) and covariance of q(z1, z2 | x), a joint Gaussian."""
        C, e = self.encoder["C"], self.encoder["e"]
        S1 = torch.diag((2 * self.encoder["log_s1"]).exp())
        S2 = torch.diag((2 * self.encoder["log_s2"]).exp())
        m1 = x @ self.encoder["A"].T + self.encoder["a"]
        mean = torch.cat([m1, m1 @ C.T + e], -1)
        cov = torch.cat([torch.cat([S1, S1 @ C.T], 1), torch.cat([C @ S1, C @ S1 @ C.T + S2], 1)], 0)
        return mean, cov

    def posterior(self, x):
        """Mean (rows, d1 + d2) and covariance of p(z1, z2 | x), from the joint Gaussian prior of
        u = (z1, z2) and x = [W 0] u + b + noise (a derivation independent of the guide's family)."""
        B, c, W, b = self.decoder["B"], self.decoder["c"], self.decoder["W"], self.decoder["b"]
        prior_mean = torch.cat([c, torch.zeros(self.d2)])
        prior_cov = torch.cat([torch.cat([B @ B.T + self.tau ** 2 * torch.eye(self.d1), B], 1),
                               torch.cat([B.T, torch.eye(self.d2)], 1)], 0)
        H = torch.cat([W, torch.zeros(self.D, self.d2)], 1)
        prior_precision = torch.linalg.inv(prior_cov)
        cov = torch.linalg.inv(prior_precision + H.T @ H / self.sigma ** 2)
        mean = (prior_mean @ prior_precision + (x - b) @ H / self.sigma ** 2) @ cov
        return mean, cov

    def _posterior_guide(self):
        """Encoder values matching p(z1 | x) p(z2 | z1): the conditional means exactly (both affine),
        the variances by the diagonals of the conditional covariances P^-1 and Q^-1

            p(z1 | x):  precision P = Sigma1^-1 + W^T W / sigma^2,  Sigma1 = B B^T + tau^2 I,
                        mean P^-1 (Sigma1^-1 c + W^T (x - b) / sigma^2);
            p(z2 | z1): precision Q = I + B^T B / tau^2,  mean Q^-1 B^T (z1 - c) / tau^2

        (x is independent of z2 given z1). Exact when P and Q are diagonal."""
        with torch.no_grad():
            B, c, W, b = self.decoder["B"], self.decoder["c"], self.decoder["W"], self.decoder["b"]
            s2, t2 = self.sigma ** 2, self.tau ** 2
            prior1 = torch.linalg.inv(B @ B.T + t2 * torch.eye(self.d1))
            P = prior1 + W.T @ W / s2
            A = torch.linalg.solve(P, W.T / s2)
            Q = torch.eye(self.d2) + B.T @ B / t2
            C = torch.linalg.solve(Q, B.T / t2)
            return {"A": A, "a": torch.linalg.solve(P, prior1 @ c) - A @ b,
                    "log_s1": 0.5 * torch.diagonal(torch.linalg.inv(P)).log(),
                    "C": C, "e": -C @ c, "log_s2": 0.5 * torch.diagonal(torch.linalg.inv(Q)).log()}

    def set_exact_posterior(self):
        """Make q(z1 | x) q(z2 | z1) = p(z1 | x) p(z2 | z1) = p(z1, z2 | x) exactly.

        This OVERWRITES the decoder: B becomes diagonal (its off-diagonal entries zeroed) and W gets
        orthogonal columns (W's column norms kept), so that Sigma1 = B B^T + tau^2 I, W^T W, and so
        both conditional precisions of :meth:`_posterior_guide`, are diagonal: p(z1 | x) and
        p(z2 | z1) are then diagonal Normals with affine means, inside the guide's family.
        """
        assert self.d1 == self.d2, "a diagonal B needs d1 == d2"
        with torch.no_grad():
            B, W = self.decoder["B"], self.decoder["W"]
            B.copy_(torch.diag(torch.diagonal(B)))
            W.copy_(torch.linalg.qr(W)[0] * W.norm(dim=0))
            for name, value in self._posterior_guide().items():
                self.encoder[name].copy_(value)

    def gradient_params(self):
        """Encoder and decoder parameters (not the baselines'), in a fixed order."""
        return list(self.encoder.values()) + list(self.decoder.values())
