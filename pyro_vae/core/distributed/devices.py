"""Which device a run uses: "cpu", "cuda" or "auto", and in a torchrun job the rank's own GPU.

Apart from the job itself (:mod:`.job`) because a run on one process needs it too; here because
a torchrun job with more ranks on a machine than GPUs must be refused before the first
collective, which NCCL would refuse with a traceback on every rank.
"""

from __future__ import annotations

import os

import torch

from pyro_vae.core import errors
from pyro_vae.core.distributed.job import launched_by_torchrun
from pyro_vae.core.options import option


def check_own_gpu() -> None:
    """Refuse, for a run on CUDA, a torchrun job that starts more processes on this machine than
    it has GPUs. Two ranks on one GPU would get as far as the first collective, which NCCL
    refuses (a duplicate GPU) with a traceback on every rank; this says what to do instead."""
    if not launched_by_torchrun():
        return
    local_rank = int(os.environ["LOCAL_RANK"])
    local_world = max(int(os.environ.get("LOCAL_WORLD_SIZE", 0)), local_rank + 1)
    count = torch.cuda.device_count()
    if local_world > count:
        raise errors.ConfigError(
            f"torchrun started {local_world} processes on this machine, which has {count} GPU"
            f"{'' if count == 1 else 's'} that PyTorch can see: each rank needs a GPU of its own "
            f"(NCCL refuses to share one); use --nproc-per-node {count} or fewer, or {option('device', 'cpu')}")


def resolve_device(name: str) -> torch.device:
    """The device of "cpu", "cuda" or "auto" (cuda where PyTorch sees a GPU). In a torchrun job,
    "cuda" is the rank's own GPU, and a job with more ranks on a machine than GPUs is refused
    (:func:`check_own_gpu`)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise errors.ConfigError(f"device 'cuda' was asked for but PyTorch sees no CUDA GPU; use "
                                 f"{option('device', 'cpu')} (or auto)")
    if name == "cuda":
        check_own_gpu()
    return torch.device(name)
