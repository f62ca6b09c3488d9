"""Concrete (Gumbel-softmax) distributions in logit space: what a relaxed site samples and scores.

The Concrete relaxation (Maddison, Mnih & Teh 2017; the Gumbel-softmax of Jang, Gu & Poole
2017) of a categorical with logits a at temperature T is z = softmax((a + g) / T), g Gumbel noise;
of a Bernoulli, z = sigmoid((a + logit u) / T), u uniform. At a low temperature z saturates: in
float32, sigmoid(y) is exactly 1 for y > 17 and softmax underflows to exact zeros, and a density
computed from z (torch's ``RelaxedBernoulli`` inverts the sigmoid, ``RelaxedOneHotCategorical``
takes log z) is then inf or NaN. Maddison et al. (Appendix C) therefore work in logit space, and
so do these classes: the variable is the logit y of z (y = (a + logit u) / T for a binary
Concrete; y = log_softmax((a + g) / T), the "ExpConcrete", for a categorical one), which is
finite for every draw, and so is its log-density, computed with ``softplus`` and ``logsumexp``
only. The program that samples the site is handed z = sigmoid(y) or exp(y)
(:class:`~pyro_vae.infer.relax.handler.Relaxation`).

A relaxed site's model and guide distributions are densities of the same variable y, so
log p(y) - log q(y) equals log p(z) - log q(z): the Jacobian of y -> z cancels, and Maddison et
al.'s objective log p_T(x, z) - log q_T(z | x) is what an ELBO over these sites computes.

How a site is scored (``scoring``) chooses the objective an ELBO over these sites computes:

- ``density`` (the default): the Concrete log-density of y, as above (Maddison et al.).
- ``discrete_kl`` (what ``meanfield`` trains): :func:`kl_divergence` of a pair so marked is the
  KL of the two *discrete* distributions they relax, in closed form: ``TraceMeanField_ELBO``
  then computes Jang, Gu & Poole's Gumbel-softmax objective E_q log p(x | z_T) - KL(q || p),
  relaxed samples in the likelihood only, which tends to the discrete ELBO as T -> 0 (Maddison
  et al.'s does not: its latent term is T-invariant and above the discrete KL). Unmarked pairs
  have no KL (the Concrete KL has no closed form), so ``meanfield`` falls back to log p - log q
  there, as for any pair.
- ``mass``: the *discrete* distribution's log-mass, linear in the relaxed value z:
  z log sigmoid(a) + (1 - z) log sigmoid(-a) for a Bernoulli, sum_k z_k log softmax(a)_k for a
  categorical: the Concrete objective of Tucker et al.'s REBAR code (``SBNGumbel`` in
  tensorflow/models research/rebar), which, like Jang et al.'s, tends to the discrete ELBO as
  T -> 0, but scores each latent by its sample, not in closed form.

``shift`` draws the relaxed sample of Tucker et al.'s code (its ``muprop_relaxation``, on by
default there): y = (a + noise) / T + T / (T + 1) a, which is the Concrete of the logits scaled
by 1 + T^2 / (T + 1) (sharper towards the more likely value, the more so the higher T); the
``density`` scoring is then that Concrete's, ``mass`` and ``discrete_kl`` stay those of the
discrete distribution with logits a.

The ``rsample`` here draws its noise with one ``torch.rand`` per site from the global generator
(the compiled step replays it), and keeps the logits unclamped: torch's ``LogitRelaxedBernoulli``
goes through clamped probabilities, which caps |a| near 16 in float32 and zeroes the gradient of
larger logits.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pyro.distributions import TorchDistribution, constraints
from torch.distributions.kl import register_kl

SCORINGS = ("density", "discrete_kl", "mass")


def _uniform(shape: torch.Size, like: torch.Tensor) -> torch.Tensor:
    """U(0, 1) draws clamped to [eps, 1 - eps] (as torch's own relaxed distributions do), so their
    logits and Gumbel transforms are finite."""
    eps = torch.finfo(like.dtype).eps
    return torch.rand(shape, dtype=like.dtype, device=like.device).clamp(min=eps, max=1 - eps)


class LogitConcrete(TorchDistribution):
    """A Concrete distribution of temperature ``temperature`` (a 0-dim tensor) and ``logits`` a,
    over the logit y of the relaxed value; ``scoring`` (one of :data:`SCORINGS`) and ``shift``: see
    the module docstring."""

    arg_constraints = {"temperature": constraints.positive, "logits": constraints.real}
    has_rsample = True
    event_dims = 0  # 1 for the categorical: the classes are the event

    def __init__(self, temperature: torch.Tensor, logits: torch.Tensor, scoring: str = "density",
                 shift: bool = False, validate_args=None):
        if scoring not in SCORINGS:
            raise ValueError(f"unknown scoring {scoring!r}; choose one of {', '.join(SCORINGS)}")
        self.temperature, self.logits, self.scoring, self.shift = temperature, logits, scoring, shift
        cut = logits.dim() - self.event_dims
        super().__init__(logits.shape[:cut], logits.shape[cut:], validate_args=validate_args)

    def expand(self, batch_shape, _instance=None) -> "LogitConcrete":
        shape = torch.Size(batch_shape) + self.event_shape
        return type(self)(self.temperature, self.logits.expand(shape), self.scoring, self.shift,
                          validate_args=False)

    @property
    def sample_logits(self) -> torch.Tensor:
        """The logits of the Concrete that y is drawn from: a, or with ``shift`` a (1 + T^2 / (T + 1))
        (see the module docstring)."""
        if not self.shift:
            return self.logits
        t = self.temperature
        return self.logits * (1 + t * t / (t + 1))

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        if self.scoring == "mass":
            return self.discrete_log_mass(value, self.logits)
        return self.log_density(value, self.sample_logits)

    def log_density(self, y: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """The Concrete log-density of y at this temperature and ``logits``."""
        raise NotImplementedError

    @staticmethod
    def discrete_log_mass(y: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """The discrete distribution's log-mass, linear in the relaxed value z of y: its value at a
        vertex (z one of the discrete values) is the discrete log-probability of that value."""
        raise NotImplementedError

    @staticmethod
    def relaxed_value(y: torch.Tensor) -> torch.Tensor:
        """The relaxed value z of logit y."""
        raise NotImplementedError

    @staticmethod
    def discrete_kl_of_logits(q: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        """KL(discrete(q) || discrete(p)) of the relaxed families of logits q and p, per batch
        element, from logits only (finite for any logits, no masks: the compiled step traces it)."""
        raise NotImplementedError

    @staticmethod
    def discrete_value(y: torch.Tensor) -> torch.Tensor:
        """The discrete value that z rounds to (straight-through's forward value)."""
        raise NotImplementedError


class LogitRelaxedBernoulli(LogitConcrete):
    """A binary Concrete (relaxed Bernoulli) over y = (a + log u - log(1 - u)) / T; its value is
    sigmoid(y)."""

    support = constraints.real

    def rsample(self, sample_shape=torch.Size()) -> torch.Tensor:
        shape = self._extended_shape(sample_shape)
        u = _uniform(shape, self.logits)
        return (self.sample_logits.expand(shape) + (u.log() - (-u).log1p())) / self.temperature

    def log_density(self, y: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        # T y - a is standard logistic, of density sigmoid(l) sigmoid(-l); y's density carries T.
        standard = self.temperature * y - logits
        return self.temperature.log() - F.softplus(standard) - F.softplus(-standard)

    @staticmethod
    def discrete_log_mass(y: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        # z log sigmoid(a) + (1 - z) log sigmoid(-a), z = sigmoid(y), log sigmoid(a) = -softplus(-a)
        return -(torch.sigmoid(y) * F.softplus(-logits) + torch.sigmoid(-y) * F.softplus(logits))

    @staticmethod
    def relaxed_value(y: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(y)

    @staticmethod
    def discrete_kl_of_logits(q: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        # sum over {1, 0} of q(b) (log q(b) - log p(b)), log sigmoid(a) = -softplus(-a)
        return (torch.sigmoid(q) * (F.softplus(-p) - F.softplus(-q))
                + torch.sigmoid(-q) * (F.softplus(p) - F.softplus(q)))

    @staticmethod
    def discrete_value(y: torch.Tensor) -> torch.Tensor:
        return (y > 0).to(y.dtype)


class ExpRelaxedOneHot(LogitConcrete):
    """A categorical Concrete (Gumbel-softmax) over y = log_softmax((a + g) / T), the log of a
    point of the simplex (the "ExpConcrete" of Maddison et al.); its value is exp(y), one-hot in
    the limit T -> 0. The classes are the event (the last dimension of ``logits``)."""

    support = constraints.real_vector
    event_dims = 1

    def rsample(self, sample_shape=torch.Size()) -> torch.Tensor:
        shape = self._extended_shape(sample_shape)
        gumbel = -(-_uniform(shape, self.logits).log()).log()
        scores = (self.sample_logits.expand(shape) + gumbel) / self.temperature
        return scores - scores.logsumexp(-1, keepdim=True)

    def log_density(self, y: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        # Maddison et al.'s ExpConcrete density: (K-1)! T^(K-1) prod_k exp(a_k - T y_k) / (sum_i
        # exp(a_i - T y_i))^K, in logsumexp form (the same for logits shifted by a constant).
        classes = self.event_shape[-1]
        score = logits - self.temperature * y
        return ((score - score.logsumexp(-1, keepdim=True)).sum(-1)
                + math.lgamma(classes) + (classes - 1) * self.temperature.log())

    @staticmethod
    def discrete_log_mass(y: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        return (y.exp() * logits.log_softmax(-1)).sum(-1)

    @staticmethod
    def relaxed_value(y: torch.Tensor) -> torch.Tensor:
        return y.exp()

    @staticmethod
    def discrete_kl_of_logits(q: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        log_q = q.log_softmax(-1)
        return (log_q.exp() * (log_q - p.log_softmax(-1))).sum(-1)

    @staticmethod
    def discrete_value(y: torch.Tensor) -> torch.Tensor:
        # scatter at the argmax, not F.one_hot: a fixed-shape formulation the compiled step traces
        return torch.zeros_like(y).scatter_(-1, y.argmax(-1, keepdim=True), 1.0)


@register_kl(LogitConcrete, LogitConcrete)
def _kl_of_the_discrete_distributions(q: LogitConcrete, p: LogitConcrete) -> torch.Tensor:
    """KL(q || p) of the discrete distributions that two ``discrete_kl`` Concretes of one family
    relax (Jang et al.'s KL term; see the module docstring); no closed form otherwise."""
    if not (q.scoring == p.scoring == "discrete_kl") or type(q) is not type(p):
        raise NotImplementedError
    return q.discrete_kl_of_logits(q.logits, p.logits)
