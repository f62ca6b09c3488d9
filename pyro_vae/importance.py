"""Per-datapoint importance log-weights log p(x, z_k) - log q(z_k | x), read off Pyro traces.

Pyro's ``Importance`` and ``vectorized_importance_weights`` sum log-weights over the data plate
(one joint weight per particle), but a VAE's test ELBO, its multi-sample bounds and log p(x)
need one weight per data point and particle. Here the guide is traced under an outer
``particles`` plate, the model is replayed against it, and each sample site's log-density is
summed over its event dimensions only, so the result has shape ``(K, B)``. Nothing here assumes
a Normal prior: any distribution the model samples from contributes through its own
``log_prob``.

Log-densities are taken *unscaled*: under a subsampled data plate Pyro scales each site by
N/B, and that factor belongs outside a per-datapoint logsumexp, not inside it (the bug of
Pyro's ``RenyiELBO``). :func:`data_scale` returns it for the caller to apply.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import pyro
import torch
from pyro import poutine
from pyro.poutine.util import site_is_subsample
from torch.distributions import Independent

from .model import MAX_PLATE_NESTING


@dataclass
class ParticleTraces:
    model: poutine.Trace
    guide: poutine.Trace
    num_samples: int


def trace_particles(model: Callable, guide: Callable, *args, num_samples: int = 1,
                    max_plate_nesting: int = MAX_PLATE_NESTING, **kwargs) -> ParticleTraces:
    """Guide and replayed model traces with ``num_samples`` particles drawn at once.

    The particles plate sits at ``dim=-(max_plate_nesting+1)``, so the networks see
    ``(K, B, ...)`` inputs.
    """
    particles = pyro.plate("particles", num_samples, dim=-(max_plate_nesting + 1))

    def vectorized(fn):
        def wrapped(*a, **k):
            with particles:
                return fn(*a, **k)
        return wrapped

    guide_trace = poutine.trace(vectorized(guide)).get_trace(*args, **kwargs)
    model_trace = poutine.trace(poutine.replay(vectorized(model), trace=guide_trace)
                                ).get_trace(*args, **kwargs)
    return ParticleTraces(model_trace, guide_trace, num_samples)


def detach_parameters(fn):
    """The same distribution with its parameters detached: log q(z) then depends on the
    variational parameters only through z (the "path derivative" of STL and DReG)."""
    if isinstance(fn, Independent):
        return Independent(detach_parameters(fn.base_dist), fn.reinterpreted_batch_ndims)
    params = {k: getattr(fn, k).detach() for k in fn.arg_constraints if k in fn.__dict__}
    try:
        return type(fn)(**params, validate_args=False)
    except (TypeError, ValueError) as e:
        raise NotImplementedError(
            f"cannot evaluate log q at fixed parameters for {type(fn).__name__} guide sites "
            f"({e}); the path-derivative objectives (stl, dreg) support Normal-like guides") from None


def _sample_sites(trace: poutine.Trace):
    """Sample sites proper (a plate's own subsample site is left out)."""
    return [site for site in trace.nodes.values()
            if site["type"] == "sample" and not site_is_subsample(site)]


def _log_density(trace: poutine.Trace, path_only: bool = False) -> torch.Tensor:
    total = 0.0
    for site in _sample_sites(trace):
        fn = detach_parameters(site["fn"]) if path_only else site["fn"]
        total = total + fn.log_prob(site["value"])
    return total


def log_weights(traces: ParticleTraces, path_only_guide: bool = False) -> torch.Tensor:
    """``(K, B)`` log-weights; with ``path_only_guide`` log q is taken at detached parameters."""
    return _log_density(traces.model) - _log_density(traces.guide, path_only_guide)


def data_scale(traces: ParticleTraces):
    """The (common) scale Pyro applies to the model's sites, e.g. N/B under subsampling."""
    scales = set()
    for site in _sample_sites(traces.model):
        scale = torch.as_tensor(site["scale"])
        if scale.numel() != 1:
            raise NotImplementedError("per-datapoint bounds need a scalar scale per site (e.g. the "
                                      "N/B of a subsampled plate), not a tensor of scales")
        scales.add(float(scale))
    if len(scales) != 1:
        raise ValueError(f"per-datapoint bounds need one scale for all sites, found {sorted(scales)}")
    return scales.pop()


def reparameterized_latents(traces: ParticleTraces) -> list[torch.Tensor]:
    """The values of the guide's reparameterized latent sites (for gradient hooks)."""
    return [site["value"] for site in _sample_sites(traces.guide)
            if not site["is_observed"] and site["fn"].has_rsample]


def log_importance_weights(model: Callable, guide: Callable, x: torch.Tensor, num_samples: int = 1,
                           max_plate_nesting: int = MAX_PLATE_NESTING) -> torch.Tensor:
    """``(num_samples, B)`` log-weights for the minibatch ``x``."""
    traces = trace_particles(model, guide, x, num_samples=num_samples,
                             max_plate_nesting=max_plate_nesting)
    return log_weights(traces).expand(num_samples, x.shape[0])


@torch.no_grad()
def elbo_per_datapoint(model: Callable, guide: Callable, x: torch.Tensor, batch_size: int = 1000,
                       num_samples: int = 1) -> torch.Tensor:
    """Monte Carlo ELBO of each row of ``x`` (shape ``(N,)``), averaged over ``num_samples`` draws.

    The same estimate whatever the training objective, so runs trained with different ELBOs are
    compared on one scale.
    """
    out = [log_importance_weights(model, guide, x[i:i + batch_size], num_samples).mean(0)
           for i in range(0, len(x), batch_size)]
    return torch.cat(out)
