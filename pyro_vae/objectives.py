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


class _JitTraceMeanField_ELBO(JitTraceMeanField_ELBO):
    """``JitTraceMeanField_ELBO`` that compiles once.

    In pyro-ppl 1.9.2 its ``differentiable_loss`` checks ``_loss_and_surrogate_loss`` to decide
    whether to compile but stores the compiled function as ``_differentiable_loss``, so it
    recompiles on every call. Setting the attribute it checks makes it reuse the compiled one.
    """

    def differentiable_loss(self, model, guide, *args, **kwargs):
        loss = super().differentiable_loss(model, guide, *args, **kwargs)
        self._loss_and_surrogate_loss = self._differentiable_loss
        return loss


# name: (eager class, JIT class)
_PYRO_ELBOS = {
    "trace": (Trace_ELBO, JitTrace_ELBO),  # log p(x,z) - log q(z|x) at z ~ q, reparameterized
    "meanfield": (TraceMeanField_ELBO, _JitTraceMeanField_ELBO),  # KL analytic where registered
}
JIT_OBJECTIVES = (JitTrace_ELBO, JitTraceMeanField_ELBO)


def _pyro_elbo_factory(eager, jit):
    def factory(cfg) -> ELBO:
        if cfg.jit:
            return jit(max_plate_nesting=MAX_PLATE_NESTING, ignore_jit_warnings=True)
        return eager(max_plate_nesting=MAX_PLATE_NESTING)
    return factory


for _name, (_eager, _jit) in _PYRO_ELBOS.items():
    register_objective(_name)(_pyro_elbo_factory(_eager, _jit))


def build_objective(cfg) -> ELBO:
    try:
        factory = OBJECTIVES[cfg.elbo]
    except KeyError:
        raise ConfigError(f"unknown elbo {cfg.elbo!r}; choose one of: {', '.join(OBJECTIVES)}") from None
    return factory(cfg)
