"""VIMCO: the K-sample bound with per-sample leave-one-out control variates (Mnih & Rezende 2016).

The IWAE bound L = log (1/K) sum_k w_k, with w_k = p(x, z_k) / q(z_k | x), has the gradient

    grad L = sum_k w~_k grad log w_k  +  sum_k L * grad log q(z_k)

for the guide's non-reparameterized sites (w~: the normalized weights). The second term, a
score function whose "reward" L is shared by all K samples, is hopelessly noisy. VIMCO gives
each sample k its own baseline L_{-k}: the bound with log w_k replaced by the mean of the other
K - 1 log-weights (their geometric mean). L_{-k} does not depend on z_k, so subtracting it
leaves the gradient unbiased, and L - L_{-k} measures what sample k contributed.

The loss value is minus the IWAE bound per data point (times the data scale, as in
:mod:`.renyi`); the surrogate is L + sum_k stop(L - L_{-k}) log q(z_k), over the guide's
non-reparameterized sites. Autodiff through L gives the first term, for the model's parameters
and for any reparameterized site. For a fully reparameterized guide VIMCO is IWAE.
"""

from __future__ import annotations

import math

import torch

from pyro_vae.infer.elbos.base import PerDatapointELBO, iwae_bound, with_value
from pyro_vae.infer.importance import data_scale, log_weights
from pyro_vae.models.sites import latent_sites


def leave_one_out_bounds(log_w: torch.Tensor) -> torch.Tensor:
    """``(K, B)``: L_{-k}, the bound with log w_k replaced by the mean of the other log-weights."""
    k = log_w.shape[0]
    others_mean = (log_w.sum(0, keepdim=True) - log_w) / (k - 1)
    diagonal = torch.eye(k, dtype=torch.bool, device=log_w.device).unsqueeze(-1)  # (K, K, 1)
    replaced = torch.where(diagonal, others_mean.unsqueeze(1), log_w.unsqueeze(0))  # [k, j, b]
    return torch.logsumexp(replaced, dim=1) - math.log(k)


def score_function_log_density(guide_trace, like: torch.Tensor) -> torch.Tensor:
    """log q of the guide's non-reparameterized latent sites, shaped as the ``(K, B)`` tensor
    ``like``; zeros if there are none."""
    terms = [s["fn"].log_prob(s["value"]).reshape(like.shape) for s in latent_sites(guide_trace)
             if not s["fn"].has_rsample]
    return sum(terms) if terms else like.new_zeros(like.shape)


class VIMCO_ELBO(PerDatapointELBO):
    def __init__(self, num_particles: int = 2, **kwargs):
        if num_particles < 2:
            raise ValueError("VIMCO's leave-one-out baselines need num_particles >= 2")
        super().__init__(num_particles=num_particles, **kwargs)

    def control_variates(self, log_w: torch.Tensor) -> torch.Tensor:
        """``(K, B)`` baselines of each sample's score term (VIMCO's leave-one-out bounds)."""
        return leave_one_out_bounds(log_w)

    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        traces, k = self._traces(model, guide, args, kwargs), self.num_particles
        log_w = log_weights(traces).reshape(k, -1)  # (K, B); Pyro's plate gives (K, 1, B)
        bound = iwae_bound(log_w)  # (B,)
        learning_signal = (bound.detach() - self.control_variates(log_w.detach())).detach()
        log_q = score_function_log_density(traces.guide, log_w)
        surrogate = bound + (learning_signal * log_q).sum(0)
        scale = data_scale(traces)
        return with_value(-scale * bound.sum(), -scale * surrogate.sum())
