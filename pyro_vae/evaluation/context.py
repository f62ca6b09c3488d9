"""The state every evaluation runs in: eval mode, frozen weights, a private param store and
random stream, no Pyro validation, no TF32.

One context shared by the importance-weighted estimate (:mod:`.iwae`) and AIS/BDMC
(:mod:`.ais`, :mod:`.bdmc`), so that an evaluation never disturbs a training run in the same
process and the same seed gives the same numbers, whichever estimator runs.
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager, nullcontext

import pyro
import torch
from torch import nn

from pyro_vae.core.precision import tf32


@contextmanager
def frozen(module: nn.Module):
    """The module's parameters without gradients (an evaluation that differentiates, like AIS,
    then builds no graph through the weights), restored afterwards."""
    flags = [(p, p.requires_grad) for p in module.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


@contextmanager
def evaluation_context(model, device: torch.device, seed: int):
    """Eval mode, frozen weights, a private param store, a forked RNG seeded with ``seed``, the
    model's optional ``fixed_prior()``, no Pyro validation and no TF32 (see
    :mod:`pyro_vae.core.precision`: not measured to change log p(x) by less than its standard error;
    the previous setting comes back afterwards): evaluating never disturbs a training run's
    state, and the same seed gives the same numbers."""
    model.eval()
    devices = [device] if device.type == "cuda" else []
    fixed_prior = getattr(model, "fixed_prior", nullcontext)
    with ExitStack() as stack:
        stack.enter_context(pyro.get_param_store().scope())
        stack.enter_context(torch.random.fork_rng(devices=devices))
        torch.manual_seed(seed)
        if isinstance(model, nn.Module):
            stack.enter_context(frozen(model))
        stack.enter_context(fixed_prior())
        stack.enter_context(pyro.validation_enabled(False))
        stack.enter_context(tf32(False))
        yield
