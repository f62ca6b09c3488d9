"""This process's place in a torchrun job, and what it owns there: its share of the work, its
random streams, whether it prints.

Who a rank is (:class:`Ranks`), joining the job (:func:`process_group`), dividing work between
ranks so that the batches are the same whatever their number (:func:`share`,
:func:`batch_span`), and naming random streams by integers (:func:`stream_seed`). Nothing here
talks to another rank; that is :mod:`.collectives`'.
"""

from __future__ import annotations

import datetime
import math
import os
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch
import torch.distributed as dist

from pyro_vae.core import errors

TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
# How long a rank waits for the others in one collective. A rank that fails makes the others
# fail too (torchrun stops them), so this bounds only a rank that hangs.
TIMEOUT = datetime.timedelta(minutes=30)


@dataclass(frozen=True)
class Ranks:
    """This process's place in the job: ``rank`` of ``world_size`` (0 of 1 without torchrun)."""

    rank: int = 0
    world_size: int = 1
    backend: Optional[str] = None  # None: not distributed

    @property
    def main(self) -> bool:
        """Rank 0, the one that reads and writes run directories and prints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.backend is not None

    def describe(self) -> str:
        return f"{self.world_size} ranks ({self.backend})" if self.distributed else "one process"


def ranks() -> Ranks:
    """This process's :class:`Ranks`, from the initialized process group (if any)."""
    if not (dist.is_available() and dist.is_initialized()):
        return Ranks()
    return Ranks(dist.get_rank(), dist.get_world_size(), str(dist.get_backend()))


def launched_by_torchrun() -> bool:
    return all(name in os.environ for name in TORCHRUN_VARIABLES)


def backend_for(cuda: bool) -> str:
    """gloo for CPU tensors; with a GPU, NCCL for CUDA tensors as well (one group serves both)."""
    return "cpu:gloo,cuda:nccl" if cuda else "gloo"


@contextmanager
def process_group():
    """Join the ranks ``torchrun`` launched (a no-op when it did not, or when a process group is
    already initialized); leave the group on the way out. With GPUs each rank takes the one its
    ``LOCAL_RANK`` names, so ``--device cuda`` means that rank's own device; a rank with no GPU
    of its own takes none (a CPU run needs none, a CUDA run is refused: :func:`~.devices.check_own_gpu`)."""
    if not launched_by_torchrun() or (dist.is_available() and dist.is_initialized()):
        yield ranks()
        return
    if not dist.is_available():
        raise errors.ConfigError("this PyTorch build has no torch.distributed; run without torchrun")
    cuda = torch.cuda.is_available()
    if cuda and int(os.environ["LOCAL_RANK"]) < torch.cuda.device_count():
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    dist.init_process_group(backend_for(cuda), timeout=TIMEOUT)
    try:
        yield ranks()
    finally:
        dist.destroy_process_group()



def stream_seed(purpose: str, *keys: int) -> int:
    """A 64-bit seed for the random stream named by ``purpose`` and ``keys`` (non-negative
    integers): NumPy's SeedSequence hash of both (and of how many keys there are: SeedSequence
    alone does not tell (0, 1) from (0, 1, 0)), so streams of different names are independent
    for all practical purposes."""
    entropy = [zlib.crc32(purpose.encode()), len(keys), *(int(k) for k in keys)]
    return int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0])


def share(n: int, r: Optional[Ranks] = None) -> slice:
    """Rank ``r``'s contiguous share of ``n`` items: shares differ in size by at most one, and
    rank order is item order."""
    r = r or ranks()
    base, extra = divmod(n, r.world_size)
    start = r.rank * base + min(r.rank, extra)
    return slice(start, start + base + (r.rank < extra))


def batch_span(n: int, batch_size: int, r: Optional[Ranks] = None) -> tuple[int, int]:
    """``(first, end)``: the images of rank ``r``'s :func:`share` of the batches that ``n`` images
    make in batches of ``batch_size``. The batches are the same whatever the number of ranks;
    ``(0, 0)`` for a rank with none."""
    mine = range(0, n, batch_size)[share(math.ceil(n / batch_size), r)]
    return (mine.start, min(mine.stop, n)) if len(mine) else (0, 0)


def share_note(n: int) -> str:
    """", rank 0's share of 10000" in a progress line of rank 0's, "" in one process."""
    r = ranks()
    return f", rank 0's share of {n}" if r.distributed else ""


def log_on_main(log: Callable[[str], None]) -> Callable[[str], None]:
    """``log`` on rank 0; a function that prints nothing on the others (one copy of each line)."""
    return log if ranks().main else _silent


def _silent(*_args, **_kwargs) -> None:
    pass

