"""Binarizing grey levels. Training batches of grey-level datasets are binarized afresh (a new
Bernoulli draw per batch: :meth:`~pyro_vae.data.VAEData.train_batch`); evaluation splits are
binarized once, here, with the fixed seed :data:`EVAL_BINARIZATION_SEED`, so that every run,
whatever its seed or ``limit_test``, is evaluated on the same binary images."""

from __future__ import annotations

import torch

EVAL_BINARIZATION_SEED = 0


def binarize_fixed(x: torch.Tensor) -> torch.Tensor:
    """One Bernoulli draw with the fixed evaluation seed, on CPU so every device agrees."""
    g = torch.Generator().manual_seed(EVAL_BINARIZATION_SEED)
    return torch.bernoulli(x.cpu(), generator=g).to(x.device)
