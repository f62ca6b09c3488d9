"""Data-parallel training: what the ranks of a ``torchrun`` job do that one process does not.

Each rank takes a contiguous share of every minibatch (``--batch-size`` stays the size of the
whole minibatch) and computes the loss and gradients of its share. The objectives' losses are
sums over the data points of the batch, so the sum of the shares' gradients is the whole batch's
gradient: one all-reduce per step sums them (the loss rides in the same buffer), and every rank
applies the same Adam step to the same parameters. (DistributedDataParallel averages the
gradients of a per-rank *mean* loss; with a summed loss the sum is that average's equivalent.)
The summed loss tells every rank at once when it is NaN, so all stop together.

Random streams (:func:`~pyro_vae.core.distributed.stream_seed`): the epoch's data order comes from
(seed, epoch), the same on every rank; binarization and particles from (seed, epoch, rank),
independent across ranks. Both are derived from the epoch, not carried in a checkpoint, so a run
resumes with the same or a different number of ranks.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch.nn.modules.batchnorm import _BatchNorm

from pyro_vae.config import AVERAGING_BASELINES
from pyro_vae.core.distributed import Ranks, stream_seed, sum_over_ranks
from pyro_vae.core.errors import ConfigError
from pyro_vae.core.options import option
from pyro_vae.infer.objectives import capability
from pyro_vae.models.sites import sample_sites, trace_once


def data_parallel_problem(cfg, model: torch.nn.Module, x: torch.Tensor, ranks: Ranks) -> Optional[str]:
    """Why this run cannot be split across ``ranks``, or None. ``x``: a few data points."""
    if not capability(cfg.objective.elbo, "sums_over_data"):
        return (f"{option('elbo', cfg.objective.elbo)} does not declare that its loss is a sum over data points "
                "(register_objective(..., sums_over_data=True)), so shares of a batch cannot be "
                "trained on separate ranks")
    if cfg.model.baseline in AVERAGING_BASELINES:
        return (f"{option('baseline', cfg.model.baseline)} keeps its moving average in each process's Pyro "
                "param store, per position in the batch, where the ranks would not share it; use "
                f"{option('baseline', 'nn-only')} (a network alone, trained like the others) or none")
    norms = [name for name, m in model.named_modules() if isinstance(m, _BatchNorm)]
    if norms:
        return (f"the model normalizes by batch statistics ({norms[0]}), which would be those of "
                "each rank's share, not of the batch")
    model_trace, _ = trace_once(model.model, model.guide, x[:2])
    scaled = [(s["name"], float(s["scale"])) for s in sample_sites(model_trace)
              if torch.as_tensor(s["scale"]).numel() == 1 and float(s["scale"]) != 1.0]
    if scaled:
        name, scale = scaled[0]
        return (f"the model scales site {name!r} by {scale:g} (a subsampled plate's N/B?), which "
                "each rank would compute for its own share; scale the loss outside the model")
    if cfg.optim.batch_size < ranks.world_size:
        return (f"{option('batch_size', cfg.optim.batch_size)} leaves some of the {ranks.world_size} ranks without "
                f"data; use at least {ranks.world_size}")
    return None


def check_data_parallel(cfg, model: torch.nn.Module, x: torch.Tensor, ranks: Ranks) -> None:
    problem = data_parallel_problem(cfg, model, x, ranks)
    if problem:
        raise ConfigError(f"this run cannot be trained data-parallel: {problem}. Run it in one "
                          "process (python scripts/svi_train.py, without torchrun)")


def sum_loss_and_gradients(loss: torch.Tensor, grads: list[Optional[torch.Tensor]]
                           ) -> tuple[torch.Tensor, list[Optional[torch.Tensor]]]:
    """The loss and gradients summed over the ranks. A parameter without a gradient (None) has
    none on any rank (which parameters the loss reaches is the model's structure, the same on
    every rank) and stays None, as it would in one process."""
    present = [i for i, g in enumerate(grads) if g is not None]
    dtype = grads[present[0]].dtype if present else torch.float32
    total, *summed = sum_over_ranks([loss.detach().reshape(1).to(dtype)] + [grads[i] for i in present])
    out = list(grads)
    for i, g in zip(present, summed):
        out[i] = g
    return total.reshape(()), out


def epoch_order(n: int, seed: int, epoch: int, device: torch.device) -> torch.Tensor:
    """The epoch's permutation of the ``n`` training examples, the same on every rank (drawn on
    the CPU, so it is the same whatever the devices)."""
    generator = torch.Generator().manual_seed(stream_seed("data order", seed, epoch))
    return torch.randperm(n, generator=generator).to(device)


def seed_rank_stream(seed: int, epoch: int, rank: int) -> None:
    """Seed this rank's global stream (binarization, particles) for the epoch."""
    torch.manual_seed(stream_seed("rank", seed, epoch, rank))
