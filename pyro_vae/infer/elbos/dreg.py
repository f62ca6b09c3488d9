"""The doubly-reparameterized IWAE gradient, DReG (Tucker, Lawson, Gu & Maddison 2018).

The IWAE gradient for the guide's parameters phi contains a score-function term whose variance
grows with K, and its signal-to-noise ratio falls as K grows (Rainforth et al. 2018). Applying
the reparameterization trick a second time removes it:

    grad_phi = sum_k  w~_k^2  * d log w_k / d z_k * d z_k / d phi,

with w~_k the normalized weights and log q evaluated at *fixed* phi (only the path through
z_k). The model's parameters keep the usual IWAE gradient sum_k w~_k grad_theta log w_k.

Both come out of one backward pass: the surrogate sum_k stop(w~_k) log w_k gives the model's
gradient, and a hook on each reparameterized z_k multiplies what flows into it from log w_k by
a further w~_k, which makes the guide's weight w~_k^2. With several sites (z2 ~ q(z2 | z1)) the
hooks sit on identity nodes through which each value enters log w (see
``PerDatapointELBO._path_traces``), so the gradient that reaches z1 through z2 is scaled once,
not twice. The loss value is the IWAE bound itself.
"""

from __future__ import annotations

import torch

from pyro_vae.infer.elbos.base import PerDatapointELBO, iwae_bound, with_value
from pyro_vae.infer.importance import data_scale


class DReG_ELBO(PerDatapointELBO):
    def __init__(self, num_particles: int = 2, **kwargs):
        super().__init__(num_particles=num_particles, **kwargs)

    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        log_w, traces, values = self._path_traces(model, guide, args, kwargs, primed=True)
        normalized = torch.softmax(log_w.detach(), dim=0)  # w~, shape (K, B)
        for z in values.values():
            if z.requires_grad:
                extra_dims = (1,) * (z.dim() - normalized.dim())
                z.register_hook(lambda grad, w=normalized.reshape(normalized.shape + extra_dims): grad * w)
        scale = data_scale(traces)
        surrogate = -scale * (normalized * log_w).sum()
        return with_value(-scale * iwae_bound(log_w).sum(), surrogate)
