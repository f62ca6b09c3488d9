"""Discrete latent sites: a one-hot categorical whose samples trace, the priors of the shipped
discrete models, and the two summaries of a site that figures and evaluation need (its expected
value and a most probable value).

Torch's ``OneHotCategorical.sample`` makes its one-hot vector with ``F.one_hot``, which reads the
largest index to check it, so a step containing it cannot be recorded as a graph (``make_fx``
stops at the read, :mod:`pyro_vae.infer.lowering`) and the compiled step falls back to eager.
:class:`OneHotCategorical` compares the index with ``arange(C)`` instead: the same values, fixed
shapes, no read. It is an ``isinstance`` of Pyro's, so everything that knows Pyro's (the site
probe, ``TraceEnum_ELBO``, ``kl_divergence``) knows it.
"""

from __future__ import annotations

import pyro.distributions as dist
import torch
from torch import nn

from pyro_vae.models.sites import base_distribution


def one_hot(index: torch.Tensor, classes: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``F.one_hot(index, classes).to(dtype)`` with shapes fixed by ``classes`` alone: a graph
    traced from it replays for any index values."""
    return (index.unsqueeze(-1) == torch.arange(classes, device=index.device)).to(dtype)


class OneHotCategorical(dist.OneHotCategorical):
    """Pyro's ``OneHotCategorical`` with a traceable ``sample`` and ``mode`` (see the module
    docstring). It defines no ``__init__``, so torch's ``expand`` (a plate's broadcast) keeps
    the subclass."""

    def sample(self, sample_shape=torch.Size()) -> torch.Tensor:
        index = self._categorical.sample(torch.Size(sample_shape))
        return one_hot(index, self._categorical._num_events, self.probs.dtype)

    @property
    def mode(self) -> torch.Tensor:
        probs = self.probs
        return one_hot(probs.argmax(-1), probs.shape[-1], probs.dtype)


class BernoulliPrior(nn.Module):
    """p(z) = prod_j Bernoulli(z_j; sigmoid(a_j)) over a layer of ``size`` units: learned logits
    ``a`` starting at 0 (REBAR's ``p_prior``), or fixed at 0 (uniform) as a buffer."""

    def __init__(self, size: int, learned: bool = True):
        super().__init__()
        logits = torch.zeros(size)
        if learned:
            self.logits = nn.Parameter(logits)
        else:
            self.register_buffer("logits", logits)

    def forward(self) -> dist.TorchDistribution:
        return dist.Bernoulli(logits=self.logits).to_event(1)


class CategoricalPrior(nn.Module):
    """p(z) = prod_n Categorical(z_n; softmax(a_n)) over ``latents`` one-hot codes of ``classes``
    classes, event shape ``(latents, classes)``: learned logits starting at 0, or fixed at 0
    (uniform, Jang et al.'s) as a buffer."""

    def __init__(self, latents: int, classes: int, learned: bool = False):
        super().__init__()
        logits = torch.zeros(latents, classes)
        if learned:
            self.logits = nn.Parameter(logits)
        else:
            self.register_buffer("logits", logits)

    def forward(self) -> dist.TorchDistribution:
        return OneHotCategorical(logits=self.logits).to_event(1)


def classes_of(fn) -> int:
    """How many classes each latent unit of a site's distribution has: C for a one-hot or index
    categorical, 1 for anything else (a Bernoulli or real-valued unit)."""
    base = base_distribution(fn)
    if isinstance(base, (dist.OneHotCategorical, dist.Categorical)):
        return int(base.logits.shape[-1])
    return 1


def expected_value(fn) -> torch.Tensor:
    """E[value] of a site's distribution, shaped ``batch_shape + event_shape``: the probabilities
    of a Bernoulli or one-hot site; for a categorical *index* site (whose ``mean`` torch gives as
    NaN) the expectation of its one-hot code, its probabilities, shaped ``batch_shape + (C,)``.
    Raises NotImplementedError where the distribution has no mean (a flow)."""
    base = base_distribution(fn)
    if isinstance(base, dist.Categorical) and not isinstance(base, dist.OneHotCategorical):
        probs = base.probs
        return probs.expand(*fn.batch_shape, *fn.event_shape, probs.shape[-1])
    return fn.mean.expand(*fn.batch_shape, *fn.event_shape)


def most_probable(fn) -> torch.Tensor:
    """A most probable value of a discrete site's distribution, elementwise per unit: 1 where a
    Bernoulli's probability exceeds 1/2 (0 at a tie, where torch's ``mode`` gives NaN), the
    one-hot of the likeliest class, the likeliest index. A value the model was trained on, unlike
    the mean, so decoding it is what the model does with a code."""
    base = base_distribution(fn)
    shape = (*fn.batch_shape, *fn.event_shape)
    if isinstance(base, dist.Bernoulli):
        logits = base.logits
        return (logits > 0).to(logits.dtype).expand(shape)
    if isinstance(base, dist.OneHotCategorical):
        probs = base.probs
        return one_hot(probs.argmax(-1), probs.shape[-1], probs.dtype).expand(shape)
    if isinstance(base, dist.Categorical):
        return base.probs.argmax(-1).expand(shape)
    raise NotImplementedError(f"no most probable value of {type(base).__name__}")

