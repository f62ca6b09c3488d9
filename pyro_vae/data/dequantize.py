"""Dequantization: 8-bit data scored by a density (``continuous`` likelihoods), and the change of
variables that makes its log-likelihood one of the 8-bit data (Theis et al. 2016).

Level k in 0..255 becomes x = (k + u) / 256 with u ~ U(0, 1): a density p on [0, 1] then defines
the mass P(k) = integral over the level's cell [k, k + 1) / 256 of p, and by Jensen
E_u log p((k + u) / 256) - D log 256 <= log P(k): the dequantized log-density minus D log 256 is
a lower bound on the 8-bit log-likelihood in nats, and in bits per dimension
bits/dim = -(log p(x) - D log 256) / (D ln 2) = -log p(x) / (D ln 2) + 8.
Training draws u afresh per batch; evaluation splits are dequantized once with a fixed seed (as
grey levels are binarized once), so every run is evaluated on the same values.
"""

from __future__ import annotations

import math

import torch

LEVELS = 256
EVAL_DEQUANTIZATION_SEED = 0


def dequantize(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """8-bit data as floats k / 255 -> (k + u) / 256, u uniform (from ``generator``, else the
    global one)."""
    k = torch.round(x * (LEVELS - 1))
    u = torch.rand(x.shape, generator=generator, dtype=x.dtype) if generator is not None else torch.rand_like(x)
    return (k + u.to(x.device)) / LEVELS


def dequantize_fixed(x: torch.Tensor) -> torch.Tensor:
    """One dequantization with the fixed evaluation seed, drawn on the CPU so every device agrees."""
    g = torch.Generator().manual_seed(EVAL_DEQUANTIZATION_SEED)
    return dequantize(x.cpu(), g).to(x.device)


def log_jacobian(values: int) -> float:
    """The D log 256 that turns a density of (k + u) / 256 into a mass bound of the 8-bit k."""
    return values * math.log(LEVELS)


def bits_per_dim(log_likelihood: float, values: int) -> float:
    """-log p / (D ln 2): nats of a log-likelihood (of the data's own space: masses for 8-bit and
    binary data) per value, in bits."""
    return -log_likelihood / (values * math.log(2))
