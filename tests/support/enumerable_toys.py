"""Tiny discrete-latent models whose ELBO and log p(x) are exact sums over every joint value.

- :class:`BernoulliToy`: z of D = 3 Bernoulli units (8 joint values), x of 6 Bernoulli pixels.
- :class:`CategoricalToy`: z of N = 2 one-hot categorical latents of C = 3 classes (9 values).
- :class:`MixedToy`: a discrete y (one-hot, C = 3) and a Normal z, with x linear-Gaussian given
  (y, z), whose p(x) is a mixture of Gaussians in closed form.

Each follows the site rules (one plate "data" at dim -1, sites ``z``/``y`` and ``x``), and its
networks broadcast over extra leading dims (enumerated values, vectorized particles).
``joint_values`` and the ``exact_*`` methods sum by hand, with ``itertools.product``: what an
enumerating objective must equal, and an autograd-differentiable expression of the parameters.
"""

import itertools
import math

import pyro
import pyro.distributions as dist
import torch
from torch import nn


class DiscreteToy(nn.Module):
    """The shared part: a guide site ``z`` and a model ``p(z) p(x | z)`` with linear maps."""

    site = "z"

    def __init__(self, x_dim: int, code_dim: int, seed: int = 0, mark: bool = False):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.x_dim, self.mark = x_dim, mark  # mark: the user's own infer={"enumerate": ...}
        self.encoder = nn.Linear(x_dim, code_dim)
        self.decoder = nn.Linear(code_dim, x_dim)
        self.prior_logits = nn.Parameter(0.5 * torch.randn(code_dim, generator=g))
        with torch.no_grad():
            for p in (*self.encoder.parameters(), *self.decoder.parameters()):
                p.copy_(torch.randn(p.shape, generator=g))

    def sample_data(self, n: int, seed: int = 1) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        return torch.bernoulli(torch.full((n, self.x_dim), 0.4), generator=g)

    def model(self, x):
        pyro.module("toy", self)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample(self.site, self.prior())
            logits = self.decoder(z.flatten(-self.event_dims()))
            pyro.sample("x", dist.Bernoulli(logits=logits).to_event(1), obs=x)

    def guide(self, x):
        pyro.module("toy", self)
        with pyro.plate("data", x.shape[0]):
            infer = {"enumerate": "parallel"} if self.mark else {}
            pyro.sample(self.site, self.posterior(x), infer=infer)

    def joint_values(self) -> list[torch.Tensor]:
        raise NotImplementedError

    def exact_terms(self, x):
        """``(V, B)`` log q(z_v | x), log p(z_v) and log p(x | z_v) over every joint value z_v."""
        log_q, log_prior, log_lik = [], [], []
        for z in self.joint_values():
            z = z.expand((len(x),) + z.shape)
            log_q.append(self.posterior(x).log_prob(z))
            log_prior.append(self.prior().expand((len(x),)).log_prob(z))
            logits = self.decoder(z.flatten(-self.event_dims()))
            log_lik.append(dist.Bernoulli(logits=logits).to_event(1).log_prob(x))
        return torch.stack(log_q), torch.stack(log_prior), torch.stack(log_lik)

    def exact_elbo(self, x, beta: float = 1.0):
        """Sum over the rows of x of sum_z q(z|x) [log p(x|z) + beta (log p(z) - log q(z|x))]."""
        log_q, log_prior, log_lik = self.exact_terms(x)
        return (log_q.exp() * (log_lik + beta * (log_prior - log_q))).sum()

    def exact_log_likelihood(self, x):
        """log p(x) of each row: logsumexp over every joint value of log p(x, z)."""
        _, log_prior, log_lik = self.exact_terms(x)
        return torch.logsumexp(log_prior + log_lik, dim=0)


class BernoulliToy(DiscreteToy):
    """z: D Bernoulli units, ``Bernoulli(logits).to_event(1)`` in the guide and the prior."""

    def __init__(self, units: int = 3, x_dim: int = 6, **kwargs):
        super().__init__(x_dim, units, **kwargs)
        self.units = units

    def event_dims(self):
        return 1

    def prior(self):
        return dist.Bernoulli(logits=self.prior_logits).to_event(1)

    def posterior(self, x):
        return dist.Bernoulli(logits=self.encoder(x)).to_event(1)

    def joint_values(self):
        return [torch.tensor(v) for v in itertools.product([0.0, 1.0], repeat=self.units)]


class CategoricalToy(DiscreteToy):
    """z: N one-hot categorical latents of C classes, event shape (N, C)."""

    def __init__(self, latents: int = 2, classes: int = 3, x_dim: int = 6, **kwargs):
        super().__init__(x_dim, latents * classes, **kwargs)
        self.latents, self.classes = latents, classes

    def event_dims(self):
        return 2

    def prior(self):
        return dist.OneHotCategorical(logits=self.prior_logits.reshape(self.latents, self.classes)).to_event(1)

    def posterior(self, x):
        logits = self.encoder(x).reshape(x.shape[:-1] + (self.latents, self.classes))
        return dist.OneHotCategorical(logits=logits).to_event(1)

    def joint_values(self):
        eye = torch.eye(self.classes)
        return [eye[list(v)] for v in itertools.product(range(self.classes), repeat=self.latents)]


class MixedToy(nn.Module):
    """y ~ Categorical(pi) (one-hot, C classes), z ~ N(0, I_d), x | y, z ~ N(W z + b_y, s^2 I_D):
    p(x) = sum_y pi_y N(x; b_y, W W^T + s^2 I). Guide: q(y | x) one-hot categorical on a linear
    map of x; q(z | x, y) = N(M (x - b_y) + shift, L L^T), reparameterized. ``guide="exact"``
    starts it at the posterior p(z | x, y) (M = S W^T / s^2, shift 0, L = chol S with
    S = (I + W^T W / s^2)^-1), so each w_k is p(x) itself; ``"wide"`` shifts it by 0.3 and widens
    it by 1.3, which keeps the weights bounded (q wider than the posterior)."""

    def __init__(self, classes: int = 3, d: int = 2, D: int = 3, sigma: float = 0.6, seed: int = 0,
                 guide: str = "wide"):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.C, self.d, self.D, self.sigma = classes, d, D, sigma
        self.W = nn.Parameter(torch.randn(D, d, generator=g))
        self.b = nn.Parameter(2 * torch.randn(classes, D, generator=g))
        self.pi_logits = nn.Parameter(0.5 * torch.randn(classes, generator=g))
        self.q_y = nn.Parameter(0.3 * torch.randn(classes, D, generator=g))
        with torch.no_grad():
            S = torch.linalg.inv(torch.eye(d) + self.W.T @ self.W / sigma ** 2)
            M, L = S @ self.W.T / sigma ** 2, torch.linalg.cholesky(S)
        shift, widen = (0.0, 1.0) if guide == "exact" else (0.3, 1.3)
        self.q_M = nn.Parameter(M)
        self.q_shift = nn.Parameter(torch.full((d,), shift))
        self.q_L = nn.Parameter(widen * L)

    def sample_data(self, n: int, seed: int = 1) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            y = torch.multinomial(self.pi_logits.softmax(-1), n, replacement=True, generator=g)
            z = torch.randn(n, self.d, generator=g)
            return z @ self.W.T + self.b[y] + self.sigma * torch.randn(n, self.D, generator=g)

    def model(self, x):
        pyro.module("toy", self)
        with pyro.plate("data", x.shape[0]):
            y = pyro.sample("y", dist.OneHotCategorical(logits=self.pi_logits))
            z = pyro.sample("z", dist.Normal(torch.zeros(self.d), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z @ self.W.T + y @ self.b, self.sigma).to_event(1), obs=x)

    def guide(self, x):
        pyro.module("toy", self)
        with pyro.plate("data", x.shape[0]):
            y = pyro.sample("y", dist.OneHotCategorical(logits=x @ self.q_y.T))
            loc = (x - y @ self.b) @ self.q_M.T + self.q_shift
            pyro.sample("z", dist.MultivariateNormal(loc, scale_tril=self.q_L))

    def log_joint(self, x):
        """``(B, C)`` log p(x, y) for every class y."""
        cov = self.W @ self.W.T + self.sigma ** 2 * torch.eye(self.D)
        components = dist.MultivariateNormal(self.b, covariance_matrix=cov)
        return self.pi_logits.log_softmax(-1) + components.log_prob(x[:, None])

    def exact_log_likelihood(self, x):
        return torch.logsumexp(self.log_joint(x), -1)

    def exact_elbo(self, x):
        """With q(z | x, y) = p(z | x, y) (``guide="exact"``), the ELBO summed over the rows of
        x: sum_y q(y | x) [log p(x, y) - log q(y | x)]."""
        log_q = (x @ self.q_y.T).log_softmax(-1)
        return (log_q.exp() * (self.log_joint(x) - log_q)).sum()


def log_mean_exp(values: torch.Tensor, dim: int = 0) -> torch.Tensor:
    return torch.logsumexp(values, dim) - math.log(values.shape[dim])
