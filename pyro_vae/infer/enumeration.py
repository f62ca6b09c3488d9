"""Exact enumeration of a discrete guide site's *joint* support, the pyro-vae way: the guide is
marked by pyro-vae, not by the user.

Pyro's :class:`~pyro.poutine.enum_messenger.EnumMessenger` enumerates a site marked
``infer={"enumerate": "parallel"}`` through its distribution's ``enumerate_support``. A VAE's
discrete site is one draw per data point of many units, ``Bernoulli(logits).to_event(1)`` (2^D
values) or a one-hot categorical of event ``(N, C)`` (C^N values), and torch's ``Independent``
cannot enumerate ("cartesian product is not implemented"). :class:`JointSupport` is the same
distribution with that product enumerated, and :class:`EnumerateDiscrete` marks the guide's
discrete sites and swaps it in, so that an enumerating objective (``TraceEnum_ELBO``,
:mod:`pyro_vae.infer.elbos.enumerated`) or the exact part of log p(x)
(:mod:`pyro_vae.infer.exact_marginal`) sums over q exactly.

Each joint value costs a pass of the networks downstream of the site (the decoder, per value;
per value and image where a network also reads x), so a site whose joint support exceeds
:data:`ENUMERATION_LIMIT` is refused with its size (:func:`describe_support`).
"""

from __future__ import annotations

import math
import warnings
from typing import Iterable, Optional

import pyro.distributions as dist
import torch
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import site_is_subsample

from pyro_vae.models.sites import LatentSite, base_distribution, support_size

# Joint values summed per data point, over all enumerated sites together (their dims multiply
# wherever the model couples them, e.g. through x). 2^12: a 12-unit Bernoulli layer, or three
# categorical latents of 10 classes; the likelihood of a batch of 100 MNIST images then holds
# 4096 x 100 x 784 floats (1.3 GB), about what one step may use.
ENUMERATION_LIMIT = 2**12


def hide_pyro_enumeration_note() -> None:
    """Pyro's Trace_ELBO and TraceGraph_ELBO sample a site that a user's guide marks for
    enumeration (``config_enumerate``) and say so in a garbled warning ("y\nIf you want to
    enumerate sites, you need to use TraceEnum_ELBO instead."). Sampling it is right there (an
    unbiased Monte Carlo ELBO, as docs/objectives.md says) and ``traceenum`` honours the mark:
    nothing to act on. Called on import, like :mod:`pyro_vae.evaluation.psis`' filter."""
    warnings.filterwarnings("ignore", message=r"(?s).*you need to use TraceEnum_ELBO instead")


hide_pyro_enumeration_note()


class JointSupport(dist.Independent):
    """``Independent(base, n)`` whose ``enumerate_support`` lists every joint value of one
    event, in ``itertools.product`` order of the elements' own supports (the first element
    varies slowest). Sampling and densities are ``Independent``'s."""

    @property
    def has_enumerate_support(self) -> bool:
        return True

    def element_support(self) -> torch.Tensor:
        """``(S,) + element event shape``: the values one element can take."""
        element = base_distribution(self)
        values = element.enumerate_support(expand=False)
        return values.reshape((values.shape[0],) + tuple(element.event_shape))

    def enumerate_support(self, expand: bool = True) -> torch.Tensor:
        support = self.element_support()
        element_event = support.shape[1:]
        product_shape = self.event_shape[:len(self.event_shape) - len(element_event)]
        count = math.prod(product_shape)
        choices = torch.arange(support.shape[0], device=support.device)
        index = torch.cartesian_prod(*[choices] * count).reshape(-1, count) if count > 1 \
            else choices.reshape(-1, 1)
        values = support[index].reshape((-1,) + tuple(product_shape) + tuple(element_event))
        values = values.reshape(values.shape[:1] + (1,) * len(self.batch_shape) + self.event_shape)
        return values.expand((-1,) + self.batch_shape + self.event_shape) if expand else values


def enumerable(fn) -> Optional[dist.TorchDistribution]:
    """``fn`` in a form whose ``enumerate_support`` lists one data point's joint values, or None
    where its support is not finite (continuous, Poisson, ...)."""
    if support_size(fn) is None:
        return None
    if fn.has_enumerate_support:
        return fn
    if isinstance(fn, torch.distributions.Independent):  # pyro's, or torch's (rebuilt as pyro's)
        return JointSupport(fn.base_dist, fn.reinterpreted_batch_ndims)
    return None


def describe_support(site: LatentSite) -> str:
    """"10^20 joint values (20 categorical latents of 10 classes)", "2^200 joint values (200
    Bernoulli units)": a site's joint support, as the refusals say it."""
    count = max(1, math.prod(site.event_shape[:-1]) if site.family == "OneHotCategorical"
                else math.prod(site.event_shape))
    base = round(math.exp(math.log(site.support_size) / count)) if site.support_size > 1 else 1
    if site.family == "Bernoulli":
        what = f"{count} Bernoulli unit{'s' * (count != 1)}"
    elif site.family in ("OneHotCategorical", "Categorical"):
        what = f"{count} categorical latent{'s' * (count != 1)} of {base} classes"
    else:
        what = f"{count} {site.family} element{'s' * (count != 1)}"
    return f"{base}^{count} joint values ({what})" if count > 1 else f"{base} values ({what})"


def largest_count(site: LatentSite, limit: int = ENUMERATION_LIMIT) -> int:
    """How many of the site's latents (units, or categorical latents) fit under ``limit``."""
    count = math.prod(site.event_shape[:-1]) if site.family == "OneHotCategorical" \
        else math.prod(site.event_shape)
    base = round(math.exp(math.log(site.support_size) / max(1, count)))
    return int(math.floor(math.log(limit) / math.log(base) + 1e-9)) if base > 1 else count


def enumerable_sites(latents: Iterable[LatentSite], limit: int = ENUMERATION_LIMIT) -> list[str]:
    """The discrete sites to sum exactly, in order, while their joint values multiply to at most
    ``limit`` (a site too large is skipped: it is sampled, the next ones may still fit)."""
    chosen, total = [], 1
    for site in latents:
        if site.support_size is not None and total * site.support_size <= limit:
            chosen.append(site.name)
            total *= site.support_size
    return chosen


class EnumerateDiscrete(Messenger):
    """Marks discrete latent sites ``infer["enumerate"] = "parallel"`` (a mark the user set,
    e.g. "sequential", is kept) and gives them a distribution that enumerates their joint
    support (:func:`enumerable`). ``sites``: the names to mark (default: every discrete latent
    site). Enter it *inside* the enumerating handler (``TraceEnum_ELBO`` wraps the guide it is
    given), so it sees each site first; it runs after the guide's own plates have broadcast
    the site's distribution.

    ``limit``: more joint values than this at one site raise ValueError (the start-up check
    refuses such a model with its size first; this guards direct use)."""

    def __init__(self, sites: Optional[Iterable[str]] = None, limit: int = ENUMERATION_LIMIT):
        super().__init__()
        self.sites = None if sites is None else frozenset(sites)
        self.limit = limit

    def _pyro_sample(self, msg) -> None:
        if msg["is_observed"] or site_is_subsample(msg) or (self.sites is not None and msg["name"] not in self.sites):
            return
        fn = msg["fn"]
        if not fn.support.is_discrete:
            return
        size = support_size(fn)
        swapped = enumerable(fn)
        if swapped is None:
            if self.sites is None:
                return
            raise ValueError(f"site {msg['name']!r} ({type(base_distribution(fn)).__name__}) has no "
                             "finite support to enumerate")
        if size > self.limit:
            raise ValueError(f"site {msg['name']!r}: {size} joint values exceed the enumeration "
                             f"limit of {self.limit}")
        msg["fn"] = swapped
        msg["infer"] = {**msg["infer"], "enumerate": msg["infer"].get("enumerate") or "parallel"}
