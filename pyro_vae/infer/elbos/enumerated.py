"""``--elbo traceenum``: Pyro's ``TraceEnum_ELBO`` with the guide's discrete sites enumerated in
parallel, marked by pyro-vae (:class:`~pyro_vae.infer.enumeration.EnumerateDiscrete`), not by
the user.

Each discrete guide site's joint support is summed exactly: the ELBO becomes
sum_y q(y | x) [log p(x, y, z) - log q(y | x) - log q(z | x, y)], with the continuous
(reparameterized) sites z sampled as ``TraceEnum_ELBO`` samples them, once per value of y. No
score-function noise is left for y: the price is a pass of the decoder per joint value, which
:data:`~pyro_vae.infer.enumeration.ENUMERATION_LIMIT` bounds (:func:`check_enumeration` refuses
a larger site at start-up, with its size).

One change to Pyro's code path, for the compiled step: ``Dice.compute_expectation`` drops the
terms of zero probability by asking ``mask.all()`` in Python (a value a traced graph does not
have) and ``masked_select`` (a data-dependent shape). :class:`TraceableDice` zeroes those terms
with ``torch.where`` instead: the same sum (the same numbers where no probability is zero),
traceable, used eagerly and compiled alike so that both run the same arithmetic.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from unittest import mock

import pyro.infer.traceenum_elbo as traceenum_elbo
import torch
from opt_einsum import shared_intermediates
from pyro.infer import TraceEnum_ELBO
from pyro.infer.util import Dice, _fulldot
from pyro.ops import packed
from pyro.ops.einsum.adjoint import require_backward
from pyro.ops.rings import MarginalRing

from pyro_vae.core.errors import ConfigError
from pyro_vae.core.options import option
from pyro_vae.infer.enumeration import ENUMERATION_LIMIT, EnumerateDiscrete, describe_support, largest_count
from pyro_vae.models.sites import MAX_PLATE_NESTING, Structure, isolated


class TraceableDice(Dice):
    """Pyro's ``Dice`` (pyro 1.9.2, ``pyro.infer.util``) with terms of zero probability zeroed by
    ``torch.where`` rather than dropped by ``masked_select`` (see the module docstring)."""

    def compute_expectation(self, costs):
        with shared_intermediates() as cache:
            ring = MarginalRing(cache=cache)
            expected_cost = 0.0
            for ordinal, cost_terms in costs.items():
                log_factors = self._get_log_factors(ordinal)
                scale = math.exp(sum(x for x in log_factors if not isinstance(x, torch.Tensor)))
                log_factors = [x for x in log_factors if isinstance(x, torch.Tensor)]
                queries = {frozenset(cost._pyro_dims): None for cost in cost_terms}
                for log_factor in log_factors:
                    key = frozenset(log_factor._pyro_dims)
                    if queries.get(key, False) is None:
                        queries[key] = log_factor
                for cost in cost_terms:
                    key = frozenset(cost._pyro_dims)
                    if queries[key] is None:
                        query = torch.zeros_like(cost)
                        query._pyro_dims = cost._pyro_dims
                        log_factors.append(query)
                        queries[key] = query
                sum_dims = set().union(*(x._pyro_dims for x in log_factors)) - ordinal
                for query in queries.values():
                    require_backward(query)
                root = ring.sumproduct(log_factors, sum_dims)
                root._pyro_backward()
                probs = {key: query._pyro_backward_result.exp() for key, query in queries.items()}
                for cost in cost_terms:
                    key = frozenset(cost._pyro_dims)
                    prob = probs[key]
                    prob._pyro_dims = queries[key]._pyro_dims
                    cost, prob = packed.broadcast_all(cost, prob)
                    cost = torch.where(prob > 0, cost, torch.zeros_like(cost))  # 0 * -inf is 0 here
                    expected_cost = expected_cost + scale * _fulldot(prob, cost)
        return expected_cost


@contextmanager
def traceable_dice():
    """``TraceEnum_ELBO`` computing its expectations with :class:`TraceableDice`."""
    with mock.patch.object(traceenum_elbo, "Dice", TraceableDice):
        yield


class EnumeratedELBO(TraceEnum_ELBO):
    """``TraceEnum_ELBO`` over the guide with its discrete sites marked for parallel enumeration
    (joint support, :class:`~pyro_vae.infer.enumeration.EnumerateDiscrete`). ``num_particles``
    K > 1 draws the continuous sites K times, vectorized."""

    def __init__(self, num_particles: int = 1, limit: int = ENUMERATION_LIMIT):
        super().__init__(num_particles=num_particles, vectorize_particles=num_particles > 1,
                         max_plate_nesting=MAX_PLATE_NESTING, strict_enumeration_warning=False)
        self.limit = limit

    def _get_traces(self, model, guide, args, kwargs):
        return super()._get_traces(model, EnumerateDiscrete(limit=self.limit)(guide), args, kwargs)

    def loss(self, model, guide, *args, **kwargs):
        with traceable_dice():
            return super().loss(model, guide, *args, **kwargs)

    def differentiable_loss(self, model, guide, *args, **kwargs):
        with traceable_dice():
            return super().differentiable_loss(model, guide, *args, **kwargs)

    def loss_and_grads(self, model, guide, *args, **kwargs):
        with traceable_dice():
            return super().loss_and_grads(model, guide, *args, **kwargs)


def _alternatives(cfg) -> str:
    """The objectives for discrete sites that do not enumerate, as the reader types them."""
    from pyro_vae.infer.objectives import OBJECTIVES  # the registry that registers this module

    names = [option("elbo", name) for name in ("tracegraph", "vimco") if name in OBJECTIVES]
    if hasattr(cfg.objective, "relax"):
        names.append(option("relax", "concrete"))
    return " or ".join(names)


def check_enumeration(cfg, structure: Structure, model, x: torch.Tensor,
                      limit: int = ENUMERATION_LIMIT) -> None:
    """Refuse, before any training, a model that ``traceenum`` cannot train: no discrete site,
    a continuous score-function site (``TraceEnum_ELBO`` would give it a REINFORCE gradient
    without baselines), a discrete site without finite support, joint supports over ``limit``,
    or networks that fail on enumerated values (run once on two images, :func:`isolated`)."""
    name, this = cfg.model.name, option("elbo", "traceenum")
    discrete = [s for s in structure.latents if s.discrete]
    if not discrete:
        raise ConfigError(f"{this} sums over the discrete latent sites of the guide, but model "
                          f"{name!r} has none; use {option('elbo', 'trace')}")
    for site in structure.latents:
        if not site.discrete and not site.reparameterized:
            raise ConfigError(f"{this}: site {site.name!r} of model {name!r} is continuous and not "
                              "reparameterized, and TraceEnum_ELBO would give it a score-function "
                              f"gradient without baselines; reparameterize it ({option('estimator', 'reparam')}"
                              f" for the shipped models), or use {_alternatives(cfg)}")
        if site.discrete and site.support_size is None:
            raise ConfigError(f"{this}: site {site.name!r} of model {name!r} ({site.family}) has no "
                              f"finite support to enumerate; use {_alternatives(cfg)}")
    for site in discrete:
        if site.support_size > limit:
            fewer = f"{option('latent_dim', largest_count(site, limit))} or fewer, or " \
                if len(structure.latents) == 1 else ""
            raise ConfigError(f"site {site.name!r}: {describe_support(site)} cannot be enumerated"
                              f"{'' if fewer else f' (at most {limit} per data point)'}; use {fewer}"
                              f"{_alternatives(cfg)}")
    total = math.prod(s.support_size for s in discrete)
    if total > limit:
        raise ConfigError(f"sites {', '.join(s.name for s in discrete)}: "
                          f"{' x '.join(str(s.support_size) for s in discrete)} = {total} joint values "
                          f"together cannot be enumerated (at most {limit}); use {_alternatives(cfg)}")
    try:
        with isolated(x[:2]):
            EnumeratedELBO(limit=limit).loss(model.model, model.guide, x[:2])
    except Exception as e:  # the user's code: any failure is a modelling error to report
        message = (str(e).strip().splitlines() or [""])[0]
        raise ConfigError(f"model {name!r} fails when its discrete sites are enumerated "
                          f"({type(e).__name__}: {message}); under {this} each site's values come "
                          "with an extra leading dim (V, 1, ...) for V joint values, which its "
                          "networks must broadcast over") from None
