"""A mixture of diagonal Gaussians whose density is two matrix products and a logsumexp.

``MixtureSameFamily.log_prob`` broadcasts the value against every component: a
``(particles, batch, K, D)`` tensor of squared differences, 40 times the memory of the result for
a VampPrior's D = 40, and the bulk of the time of a K = 5000 evaluation. Expanding the square,

    sum_d (z_d - mu_kd)^2 / s_kd^2 = z^2 . (1/s_k^2) - 2 z . (mu_k/s_k^2) + sum_d mu_kd^2/s_kd^2,

gives all K components' quadratic forms as one matrix product of ``(z^2, z)`` with the stacked
``(1/s^2, -2 mu/s^2)``: memory ``(particles, batch, K)``, and the work goes to a GEMM.

The three terms are each of order ``D (|z| / s)^2`` and cancel to a small number for the
components near z, the ones that dominate the logsumexp; in float32 that loses about
``1e-7 D (|z| / s)^2`` nats, 0.02 nats at s = 0.05. So the product is accumulated in float64
(cheap next to the networks: the inner dimension is 2D) and only the result is cast back.
"""

from __future__ import annotations

import math

import pyro.distributions as dist
import torch


def mixture_log_prob(value: torch.Tensor, logits: torch.Tensor, locs: torch.Tensor,
                     scales: torch.Tensor) -> torch.Tensor:
    """log sum_k softmax(logits)_k N(value; locs_k, diag(scales_k^2)), over value's last dim.

    ``value``: ``(..., D)``; ``logits``: ``(K,)``; ``locs``, ``scales``: ``(K, D)``. Returns
    ``(...)`` in value's dtype.
    """
    wide = torch.float64 if value.dtype in (torch.float32, torch.float16, torch.bfloat16) else value.dtype
    z, mu, s = value.to(wide), locs.to(wide), scales.to(wide)
    precision = s.pow(-2)
    weights = torch.cat([precision, -2 * mu * precision], dim=-1)  # (K, 2D)
    features = torch.cat([z.pow(2), z], dim=-1)  # (..., 2D)
    offset = (mu.pow(2) * precision).sum(-1)  # (K,)
    quadratic = features @ weights.transpose(0, 1) + offset  # (..., K)
    log_norm = -s.log().sum(-1) - 0.5 * locs.shape[-1] * math.log(2 * math.pi)  # (K,)
    log_components = (log_norm - 0.5 * quadratic).to(value.dtype)
    return torch.logsumexp(torch.log_softmax(logits, -1) + log_components, dim=-1)


class DiagonalNormalMixture(dist.MixtureSameFamily):
    """``MixtureSameFamily(Categorical(logits), Normal(locs, scales).to_event(1))`` with
    :func:`mixture_log_prob` as its density; sampling, moments and ``expand`` are inherited.

    Built with ``batch_shape == ()`` (``logits (K,)``, ``locs`` and ``scales (K, D)``); a Pyro plate
    may expand it, and every batch element then shares those parameters.
    """

    def __init__(self, logits: torch.Tensor, locs: torch.Tensor, scales: torch.Tensor,
                 validate_args=None):
        if logits.dim() != 1 or locs.dim() != 2 or scales.shape != locs.shape \
                or locs.shape[0] != logits.shape[0]:
            raise ValueError("DiagonalNormalMixture takes logits (K,), locs and scales (K, D); got "
                             f"{tuple(logits.shape)}, {tuple(locs.shape)}, {tuple(scales.shape)}")
        super().__init__(dist.Categorical(logits=logits), dist.Normal(locs, scales).to_event(1),
                         validate_args=validate_args)
        self._parameters = (logits, locs, scales)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(DiagonalNormalMixture, _instance)
        new = super().expand(batch_shape, _instance=new)
        new._parameters = self._parameters
        return new

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        log_p = mixture_log_prob(value, *self._parameters)
        return log_p.expand(torch.broadcast_shapes(log_p.shape, self.batch_shape))
