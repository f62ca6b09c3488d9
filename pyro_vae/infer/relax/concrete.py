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

Under ``meanfield`` (:class:`~pyro_vae.infer.relax.handler.Relaxation` with ``discrete_kl``)
the sites are marked ``discrete_kl`` and :func:`kl_divergence` of a marked pair is the KL of the
two *discrete* distributions they relax, in closed form: ``TraceMeanField_ELBO`` then computes
Jang, Gu & Poole's Gumbel-softmax objective E_q log p(x | z_T) - KL(q || p), relaxed samples in
the likelihood only, which tends to the discrete ELBO as T -> 0 (Maddison et al.'s does not: its
latent term is T-invariant and above the discrete KL). Unmarked pairs have no KL (the Concrete
KL has no closed form), so ``meanfield`` falls back to log p - log q there, as for any pair.

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


def _uniform(shape: torch.Size, like: torch.Tensor) -> torch.Tensor:
    """U(0, 1) draws clamped to [eps, 1 - eps] (as torch's own relaxed distributions do), so their
    logits and Gumbel transforms are finite."""
    eps = torch.finfo(like.dtype).eps
    return torch.rand(shape, dtype=like.dtype, device=like.device).clamp(min=eps, max=1 - eps)


class LogitConcrete(TorchDistribution):
    """A Concrete distribution of temperature ``temperature`` (a 0-dim tensor) and ``logits`` a,
    over the logit y of the relaxed value (see the module docstring)."""

    arg_constraints = {"temperature": constraints.positive, "logits": constraints.real}
    has_rsample = True
    event_dims = 0  # 1 for the categorical: the classes are the event

    def __init__(self, temperature: torch.Tensor, logits: torch.Tensor, discrete_kl: bool = False,
                 validate_args=None):
        self.temperature, self.logits, self.discrete_kl = temperature, logits, discrete_kl
        cut = logits.dim() - self.event_dims
        super().__init__(logits.shape[:cut], logits.shape[cut:], validate_args=validate_args)

    def expand(self, batch_shape, _instance=None) -> "LogitConcrete":
        shape = torch.Size(batch_shape) + self.event_shape
        return type(self)(self.temperature, self.logits.expand(shape), self.discrete_kl, validate_args=False)

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
        return (self.logits.expand(shape) + (u.log() - (-u).log1p())) / self.temperature

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        # T y - a is standard logistic, of density sigmoid(l) sigmoid(-l); y's density carries T.
        if self._validate_args:
            self._validate_sample(value)
        standard = self.temperature * value - self.logits
        return self.temperature.log() - F.softplus(standard) - F.softplus(-standard)

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
        scores = (self.logits.expand(shape) + gumbel) / self.temperature
        return scores - scores.logsumexp(-1, keepdim=True)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        # Maddison et al.'s ExpConcrete density: (K-1)! T^(K-1) prod_k exp(a_k - T y_k) / (sum_i
        # exp(a_i - T y_i))^K, in logsumexp form (the same for logits shifted by a constant).
        if self._validate_args:
            self._validate_sample(value)
        classes = self.event_shape[-1]
        score = self.logits - self.temperature * value
        return ((score - score.logsumexp(-1, keepdim=True)).sum(-1)
                + math.lgamma(classes) + (classes - 1) * self.temperature.log())

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
    if not (q.discrete_kl and p.discrete_kl) or type(q) is not type(p):
        raise NotImplementedError
    return q.discrete_kl_of_logits(q.logits, p.logits)
