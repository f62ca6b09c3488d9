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

from pyro_vae.core.errors import ConfigError
from pyro_vae.models.sites import MAX_PLATE_NESTING, isolated, sample_sites


@dataclass
class ParticleTraces:
    model: poutine.Trace
    guide: poutine.Trace
    num_samples: int


def particles_plate(num_samples: int, max_plate_nesting: int = MAX_PLATE_NESTING) -> pyro.plate:
    """The outer plate of vectorized particles, at ``dim=-(max_plate_nesting+1)``: the networks
    see ``(K, B, ...)`` inputs."""
    return pyro.plate("particles", num_samples, dim=-(max_plate_nesting + 1))


def trace_guide(guide: Callable, *args, num_samples: int = 1,
                max_plate_nesting: int = MAX_PLATE_NESTING, **kwargs) -> poutine.Trace:
    """The guide's trace with ``num_samples`` particles drawn at once."""
    with particles_plate(num_samples, max_plate_nesting):
        return poutine.trace(guide).get_trace(*args, **kwargs)


def replay_model(model: Callable, guide_trace: poutine.Trace, *args, num_samples: int = 1,
                 max_plate_nesting: int = MAX_PLATE_NESTING, **kwargs) -> poutine.Trace:
    """The model's trace at the latent values of ``guide_trace``."""
    with particles_plate(num_samples, max_plate_nesting):
        return poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args, **kwargs)


def trace_particles(model: Callable, guide: Callable, *args, num_samples: int = 1,
                    max_plate_nesting: int = MAX_PLATE_NESTING, **kwargs) -> ParticleTraces:
    """Guide and replayed model traces with ``num_samples`` particles drawn at once."""
    options = {"num_samples": num_samples, "max_plate_nesting": max_plate_nesting}
    guide_trace = trace_guide(guide, *args, **options, **kwargs)
    model_trace = replay_model(model, guide_trace, *args, **options, **kwargs)
    return ParticleTraces(model_trace, guide_trace, num_samples)


def log_density(trace: poutine.Trace) -> torch.Tensor:
    """Sum over a trace's sample sites of log-densities, per particle and data point."""
    return sum(site["fn"].log_prob(site["value"]) for site in sample_sites(trace))


def log_weights(traces: ParticleTraces) -> torch.Tensor:
    """``(K, B)`` log-weights log p(x, z) - log q(z | x)."""
    return log_density(traces.model) - log_density(traces.guide)


def data_scale(traces: ParticleTraces):
    """The (common) scale Pyro applies to the model's sites, e.g. N/B under subsampling."""
    scales = set()
    for site in sample_sites(traces.model):
        scale = torch.as_tensor(site["scale"])
        if scale.numel() != 1:
            raise NotImplementedError("per-datapoint bounds need a scalar scale per site (e.g. the "
                                      "N/B of a subsampled plate), not a tensor of scales")
        scales.add(float(scale))
    if len(scales) != 1:
        raise ValueError(f"per-datapoint bounds need one scale for all sites, found {sorted(scales)}")
    return scales.pop()


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


def check_particles(model: Callable, guide: Callable, x: torch.Tensor, name: str,
                    num_samples: int = 2) -> None:
    """Refuse, in one line, a model that fails with ``num_samples`` particles drawn at once.

    The test ELBO after every epoch, log p(x) and the multi-sample objectives trace the guide
    under an outer ``particles`` plate, so the networks see ``(K, B, ...)`` inputs; a model whose
    networks accept ``(B, ...)`` only (``torch.cat`` of x with a sampled y, a ``.view(B, -1)``)
    passes a one-particle probe and training, and would crash at the end of the first epoch.
    Run on the first two rows of ``x``, :func:`~pyro_vae.models.sites.isolated`: no state
    changes. ``name`` names the model in the message."""
    x = x[:2]
    with isolated(x):
        guide_tracer = poutine.trace(guide)
        try:
            with particles_plate(num_samples):
                guide_trace = guide_tracer.get_trace(x)
        except Exception as e:  # the user's code: any failure is a modelling error to report
            raise _particle_error(name, "guide", guide_tracer.msngr.trace, e, num_samples) from None
        model_tracer = poutine.trace(poutine.replay(model, trace=guide_trace))
        try:
            with particles_plate(num_samples):
                model_trace = model_tracer.get_trace(x)
            weights = log_weights(ParticleTraces(model_trace, guide_trace, num_samples))
            torch.broadcast_to(weights, (num_samples, len(x)))
        except Exception as e:
            raise _particle_error(name, "model", model_tracer.msngr.trace, e, num_samples) from None


def _particle_error(name: str, program: str, partial: poutine.Trace, error: Exception,
                    num_samples: int) -> ConfigError:
    done = [site["name"] for site in sample_sites(partial)]
    where = f"after its site {done[-1]!r}" if done else "before its first sample site"
    message = (str(error).strip().splitlines() or [""])[0][:200]
    return ConfigError(
        f"model {name!r}: the {program} fails with {num_samples} particles drawn at once, {where} "
        f"({type(error).__name__}: {message}). The test ELBO, log p(x) and the multi-sample "
        "objectives draw particles in an outer plate, so its networks must accept inputs with "
        "extra leading dimensions, (K, B, ...) as well as (B, ...): broadcast tensors before "
        "torch.cat (x.expand(*y.shape[:-1], -1)) and reshape with z.shape[:-1], not x.shape[0]")
