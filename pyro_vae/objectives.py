"""Training objectives: a registry from ``--elbo`` names to factories of Pyro ELBO objects.

A factory takes the run's :class:`~pyro_vae.config.Config` and returns an object with Pyro's ELBO
interface (``loss`` and ``loss_and_grads(model, guide, *args)``), so anything ``pyro.infer.SVI``
accepts works here. Later objectives (score-function estimators, multi-sample bounds) register
themselves the same way::

    @register_objective("my-bound")
    def _my_bound(cfg):
        return MyBound(num_particles=cfg.num_particles)
"""

from __future__ import annotations

from typing import Callable

from pyro.infer import ELBO, JitTrace_ELBO, JitTraceMeanField_ELBO, Trace_ELBO, TraceMeanField_ELBO

from .errors import ConfigError

# The VAE's model has one plate ("data"); saying so spares Pyro a shape-guessing trace.
MAX_PLATE_NESTING = 1

OBJECTIVES: dict[str, Callable] = {}


def register_objective(name: str) -> Callable[[Callable], Callable]:
    def register(factory: Callable) -> Callable:
        OBJECTIVES[name] = factory
        return factory
    return register


@register_objective("trace")
def _trace(cfg) -> ELBO:
    """Monte Carlo ELBO: log p(x, z) - log q(z | x) at a reparameterized sample z ~ q."""
    cls = JitTrace_ELBO if cfg.jit else Trace_ELBO
    extra = {"ignore_jit_warnings": True} if cfg.jit else {}
    return cls(max_plate_nesting=MAX_PLATE_NESTING, **extra)


@register_objective("meanfield")
def _meanfield(cfg) -> ELBO:
    """ELBO with the KL(q(z|x) || p(z)) term analytic where ``kl_divergence`` knows the pair."""
    cls = JitTraceMeanField_ELBO if cfg.jit else TraceMeanField_ELBO
    extra = {"ignore_jit_warnings": True} if cfg.jit else {}
    return cls(max_plate_nesting=MAX_PLATE_NESTING, **extra)


def build_objective(cfg) -> ELBO:
    try:
        factory = OBJECTIVES[cfg.elbo]
    except KeyError:
        raise ConfigError(f"unknown elbo {cfg.elbo!r}; choose one of: {', '.join(OBJECTIVES)}") from None
    return factory(cfg)
