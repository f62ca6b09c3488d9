"""Several processes, one run: ``torch.distributed`` as ``torchrun`` launches it.

pyro-vae starts no processes and opens no sockets of its own. ``torchrun`` starts one process
(rank) per device and sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT``; :func:`process_group` joins them, with gloo for tensors on the CPU and NCCL for
tensors on a GPU. Without those variables nothing here does anything: one process, unchanged.

What the ranks share, and how:

- **Random streams** (:func:`stream_seed`): a stream is named by its purpose and integers (the
  run's seed, the epoch, the rank, an image's index) and seeded from their hash, so streams that must agree
  (the data order) and streams that must differ (binarization, particles) are both a matter of
  which integers name them, and need no state in a checkpoint.
- **Work** (:func:`share`): a contiguous share of n items per rank, as even as can be.
- **Decisions** (:func:`together`, :func:`on_main`): rank 0 alone reads and writes the run
  directory; the others receive what it read, and an error on any rank stops every rank with the
  message printed once. A rank never waits in a collective for a rank that has already failed.
- **Numbers** (:func:`sum_over_ranks`, :func:`gather_on_main`, :func:`broadcast_module`).

Objects travel between ranks as ``torch.save`` bytes read back with ``torch.load(weights_only=True)``:
tensors, numbers, strings, lists and dicts only, like a checkpoint, so no rank executes code
another rank sent. pyro-vae serializes them itself (:func:`to_bytes`, :func:`from_bytes`) rather
than through ``all_gather_object`` and its kin, whose ``weights_only`` argument only recent
torch has (2.11 lacks it): the same safety on every torch version, one code path. The bytes
travel as uint8 tensors on the CPU, by gloo (with GPUs, too: the group is ``cpu:gloo,cuda:nccl``):
they are a few kilobytes of decisions and per-image numbers, which copies to and from a GPU for
NCCL would only slow down, and a CPU tensor needs no rank's GPU to be chosen yet.

Three modules: :mod:`.job` (who this rank is, its share, its streams), :mod:`.collectives`
(what ranks tell each other), :mod:`.devices` (which device a rank uses). Everything is imported
from here (``from pyro_vae.core.distributed import on_main``).
"""

from pyro_vae.core.distributed.collectives import (
    broadcast,
    broadcast_module,
    from_bytes,
    gather_on_main,
    main_first,
    mark_reported,
    on_main,
    sum_over_ranks,
    to_bytes,
    together,
)
from pyro_vae.core.distributed.devices import check_own_gpu, resolve_device
from pyro_vae.core.distributed.job import (
    TIMEOUT,
    TORCHRUN_VARIABLES,
    Ranks,
    backend_for,
    batch_span,
    launched_by_torchrun,
    log_on_main,
    process_group,
    ranks,
    share,
    share_note,
    stream_seed,
)

__all__ = [
    "Ranks",
    "TIMEOUT",
    "TORCHRUN_VARIABLES",
    "backend_for",
    "batch_span",
    "broadcast",
    "broadcast_module",
    "check_own_gpu",
    "from_bytes",
    "gather_on_main",
    "launched_by_torchrun",
    "log_on_main",
    "main_first",
    "mark_reported",
    "on_main",
    "process_group",
    "ranks",
    "resolve_device",
    "share",
    "share_note",
    "stream_seed",
    "sum_over_ranks",
    "to_bytes",
    "together",
]
