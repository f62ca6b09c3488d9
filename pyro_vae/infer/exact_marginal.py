"""Importance weights with the small discrete guide sites summed exactly (log p(x) of discrete
models).

The enumerated sites' values become leading dims of the traces (Pyro's
:class:`~pyro.poutine.enum_messenger.EnumMessenger` on the guide, the sites marked by
:class:`~pyro_vae.infer.enumeration.EnumerateDiscrete`); every other site is drawn K times per
value, as the plain estimate draws it. Particle k's weight is

    w_k = sum_y p(x, y, z_{k,y}) / q(z_{k,y} | x, y),     z_{k,y} ~ q(z | x, y),

for each y an importance estimate of sum_z p(x, y, z), hence E[w_k] = p(x): unbiased like the
plain weight p(x, y_k, z_k) / q(y_k, z_k | x), without the noise of sampling y. Where every
latent site is enumerated there is no z and w_k = p(x) exactly: one particle suffices
(:func:`exact_log_weights` computes one and repeats it).

The ELBO of the same traces sums over y with q's weights: sum_y q(y | x) [log p(x, y, z_{k,y}) -
log q(y | x) - log q(z_{k,y} | x, y)], an estimate of the guide's ELBO without y's sampling noise.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
from pyro import poutine
from pyro.poutine.enum_messenger import EnumMessenger

from pyro_vae.infer.enumeration import ENUMERATION_LIMIT, EnumerateDiscrete
from pyro_vae.infer.importance import particles_plate, replay_model
from pyro_vae.models.discrete import expected_value
from pyro_vae.models.sites import MAX_PLATE_NESTING, isolated, latent_sites, sample_sites, support_size


def exact_sites(guide: Callable, x: torch.Tensor, limit: int = ENUMERATION_LIMIT) -> tuple[list[str], int, bool]:
    """Which of the guide's discrete sites to sum exactly: in the guide's order, while their
    joint values multiply to at most ``limit`` (a larger one is sampled). Returns the names,
    the number of joint values they take together, and whether they are all of its latent
    sites (then log p(x) is exact). Runs the guide once on one data point, :func:`isolated`."""
    with isolated(x[:1]), torch.no_grad():
        trace = poutine.trace(guide).get_trace(x[:1])
    names, total, latents = [], 1, latent_sites(trace)
    for site in latents:
        size = support_size(site["fn"])
        if size is not None and total * size <= limit:
            names.append(site["name"])
            total *= size
    return names, total, len(names) == len(latents) > 0


def enumerated_traces(model: Callable, guide: Callable, x: torch.Tensor, sites: Sequence[str],
                      num_samples: int, max_plate_nesting: int = MAX_PLATE_NESTING):
    """(model trace, guide trace) with ``sites`` enumerated in parallel at dims left of the
    particles plate, the other sites drawn ``num_samples`` times per value."""
    particles = particles_plate(num_samples, max_plate_nesting)
    enumerate_ = EnumMessenger(first_available_dim=-2 - max_plate_nesting)
    # the same nesting as TraceEnum_ELBO's: the enumerating handler outside the particles plate,
    # the marks inside it (each site is marked, then broadcast over particles, then enumerated)
    guide_trace = poutine.trace(enumerate_(particles(EnumerateDiscrete(sites)(guide)))).get_trace(x)
    model_trace = replay_model(model, guide_trace, x, num_samples=num_samples,
                               max_plate_nesting=max_plate_nesting)
    return model_trace, guide_trace


def _total(terms: list[torch.Tensor], shape: torch.Size, device: torch.device) -> torch.Tensor:
    """The sum of ``terms``, broadcast to ``shape``."""
    total = torch.zeros(shape, device=device)
    for term in terms:
        total = total + term
    return total


def _site_mean(site: dict) -> torch.Tensor:
    """E_q of a site given its parents, as :func:`~pyro_vae.evaluation.iwae.site_mean_sums` takes
    it (a distribution without a mean contributes its value)."""
    try:
        return expected_value(site["fn"])  # a categorical index site: its one-hot code's mean
    except NotImplementedError:
        return site["value"]


def exact_log_weights(model: Callable, guide: Callable, x: torch.Tensor, sites: Sequence[str],
                      num_samples: int, all_sites: bool = False,
                      max_plate_nesting: int = MAX_PLATE_NESTING
                      ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """``(K, B)`` log-weights log w_k and ELBO terms (see the module docstring), and each latent
    site's mean under q summed over the K particles, ``{name: (B, D)}``, as
    :func:`~pyro_vae.evaluation.iwae.site_mean_sums` gives them. ``all_sites``: ``sites`` are
    all the latent sites, so one particle is computed and repeated K times."""
    k = 1 if all_sites else num_samples
    model_trace, guide_trace = enumerated_traces(model, guide, x, sites, k, max_plate_nesting)
    model_terms = [s["fn"].log_prob(s["value"]) for s in sample_sites(model_trace)]
    guide_sites = latent_sites(guide_trace)
    enumerated = [s["fn"].log_prob(s["value"]) for s in guide_sites if s["name"] in sites]
    sampled = [s["fn"].log_prob(s["value"]) for s in guide_sites if s["name"] not in sites]
    shape = torch.broadcast_shapes(*(t.shape for t in model_terms + enumerated + sampled), (k, len(x)))
    log_a = _total(model_terms, shape, x.device) - _total(sampled, shape, x.device)
    log_q = _total(enumerated, shape, x.device)  # log q(y | ...) of the enumerated values
    log_a, log_q = log_a.reshape(-1, k, len(x)), log_q.reshape(-1, k, len(x))
    log_w = torch.logsumexp(log_a, dim=0)
    q = log_q.exp()
    elbo = torch.where(q > 0, q * (log_a - log_q), torch.zeros_like(q)).sum(0)
    means = {}
    for site in guide_sites:  # E_q[z | x]: the means given each value, weighted by q(y | x)
        mean = _site_mean(site)
        event = tuple(mean.shape[len(site["fn"].batch_shape):])  # an index site's: (C,)
        mean = mean.expand(shape + event).reshape((-1, k, len(x), math.prod(event)))
        means[site["name"]] = (q[..., None] * mean).sum(0).sum(0)
    if all_sites:
        return (log_w.expand(num_samples, len(x)), elbo.expand(num_samples, len(x)),
                {name: num_samples * m for name, m in means.items()})
    return log_w, elbo, means
