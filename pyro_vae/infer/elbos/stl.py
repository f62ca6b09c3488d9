"""Sticking the landing, STL (Roeder, Wu & Duvenaud 2017).

The reparameterized ELBO gradient for the guide's parameters has two parts: the path through
z and a score-function term E_q[grad_phi log q(z | x)], which is zero in expectation but not
per sample. STL drops it by evaluating log q at fixed parameters (only the path through z, see
:mod:`pyro_vae.infer.elbos.path`), an unbiased estimator whose variance vanishes as q approaches the
true posterior. Hierarchical guides included: q(z2 | z1) keeps its dependence on the sampled z1.
"""

from __future__ import annotations

import torch

from pyro_vae.infer.elbos.base import PerDatapointELBO
from pyro_vae.infer.importance import data_scale


class STL_ELBO(PerDatapointELBO):
    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        log_w, traces, _ = self._path_traces(model, guide, args, kwargs)
        return -data_scale(traces) * log_w.mean(0).sum()
