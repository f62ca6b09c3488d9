"""Per-datapoint importance log-weights log p(x, z_k) - log q(z_k | x), read off Pyro traces.

Pyro's ``Importance`` and ``vectorized_importance_weights`` sum log-weights over the data plate
(one joint weight per particle), but a VAE's test ELBO and log p(x) need one weight per data point
and particle. Here the guide is traced under an outer ``particles`` plate, the model is replayed
against it, and each sample site's log-density is summed over its event dimensions only, so the
result has shape ``(K, B)``. Nothing here assumes a Normal prior: any distribution the model
samples from contributes through its own ``log_prob``.
"""

from __future__ import annotations

from typing import Callable

import pyro
import torch
from pyro import poutine

from .objectives import MAX_PLATE_NESTING


def _log_density(trace, batch_shape: torch.Size) -> torch.Tensor:
    total = torch.zeros(())
    for site in trace.nodes.values():
        if site["type"] == "sample":
            total = total + site["fn"].log_prob(site["value"])
    return total.expand(batch_shape)


def log_importance_weights(model: Callable, guide: Callable, x: torch.Tensor, num_samples: int = 1,
                           max_plate_nesting: int = MAX_PLATE_NESTING) -> torch.Tensor:
    """``(num_samples, B)`` log-weights for the minibatch ``x`` (no gradient bookkeeping here).

    ``num_samples`` particles are drawn at once under a plate at ``dim=-(max_plate_nesting+1)``,
    so the networks see ``(K, B, ...)`` inputs.
    """
    particles = pyro.plate("particles", num_samples, dim=-(max_plate_nesting + 1))

    def wrap(fn):
        def vectorized(*args):
            with particles:
                return fn(*args)
        return vectorized

    guide_trace = poutine.trace(wrap(guide)).get_trace(x)
    model_trace = poutine.trace(poutine.replay(wrap(model), trace=guide_trace)).get_trace(x)
    shape = torch.Size((num_samples, x.shape[0]))
    return _log_density(model_trace, shape) - _log_density(guide_trace, shape)


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
