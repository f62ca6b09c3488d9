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
"""

from __future__ import annotations

import datetime
import io
import math
import os
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import chain
from typing import Any, Callable, Optional, TypeVar

import numpy as np
import torch
import torch.distributed as dist

from pyro_vae.core import errors
from pyro_vae.core.errors import PyroVAEError
from pyro_vae.core.options import option

T = TypeVar("T")
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
    of its own takes none (a CPU run needs none, a CUDA run is refused: :func:`check_own_gpu`)."""
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
            f"(NCCL refuses to share one); use --nproc-per-node {count} or fewer, or "
            f"{option('device', 'cpu')}")


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


# --- collectives over Python objects (torch.save bytes, read back with weights_only=True) ---

def to_bytes(value: Any) -> torch.Tensor:
    """``value`` as a CPU uint8 tensor of ``torch.save`` bytes (plain data: see :func:`from_bytes`)."""
    buffer = io.BytesIO()
    torch.save(value, buffer)
    return torch.frombuffer(bytearray(buffer.getbuffer()), dtype=torch.uint8)


def from_bytes(data: torch.Tensor) -> Any:
    """The value :func:`to_bytes` made, read with ``weights_only=True``: a payload holding anything
    but tensors, numbers, strings, lists, tuples and dicts is refused (``pickle.UnpicklingError``)
    instead of executing code another rank sent. Tensors arrive on the CPU (a GPU tensor of the
    sender's would otherwise land on the sender's GPU index); the receiver moves them."""
    return torch.load(io.BytesIO(data.numpy().tobytes()), map_location="cpu", weights_only=True)


def _sizes(data: torch.Tensor) -> list[int]:
    """Every rank's byte count, in rank order."""
    sizes = [torch.zeros(1, dtype=torch.long) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, torch.tensor([data.numel()]))
    return [int(s) for s in sizes]


def _padded(data: torch.Tensor, size: int) -> torch.Tensor:
    return torch.cat([data, data.new_zeros(size - data.numel())])


def _all_gather(value: Any) -> list:
    data = to_bytes(value)
    sizes = _sizes(data)
    parts = [torch.empty(max(sizes), dtype=torch.uint8) for _ in sizes]
    dist.all_gather(parts, _padded(data, max(sizes)))
    return [from_bytes(part[:size]) for part, size in zip(parts, sizes)]


def broadcast(value: Any = None) -> Any:
    """Rank 0's ``value`` on every rank (rank 0 keeps its own object)."""
    r = ranks()
    if not r.distributed:
        return value
    data = to_bytes(value) if r.main else None
    size = torch.tensor([data.numel() if r.main else 0])
    dist.broadcast(size, src=0)
    if not r.main:
        data = torch.empty(int(size), dtype=torch.uint8)
    dist.broadcast(data, src=0)
    return value if r.main else from_bytes(data)


def _gather(value: Any) -> Optional[list]:
    """Every rank's ``value`` in rank order on rank 0, None on the others."""
    data = to_bytes(value)
    sizes = _sizes(data)
    main = dist.get_rank() == 0
    parts = [torch.empty(max(sizes), dtype=torch.uint8) for _ in sizes] if main else None
    dist.gather(_padded(data, max(sizes)), parts, dst=0)
    return [from_bytes(part[:size]) for part, size in zip(parts, sizes)] if main else None


def _outcome(fn: Callable[[], T]) -> tuple[Any, Optional[BaseException]]:
    """(what to tell the other ranks, this rank's exception or None)."""
    try:
        return ("ok", fn()), None
    except PyroVAEError as e:
        return ("error", type(e).__name__, str(e)), e
    except Exception as e:  # a bug: its traceback is printed by the rank it happened on
        return ("crash", type(e).__name__, str(e)), e


def _stop(outcomes: list, mine: Optional[BaseException]) -> None:
    """Raise on every rank if any rank failed: the first failing rank its own error (printed),
    every other rank the same error marked as reported by that rank (not printed again)."""
    failed = [r for r, o in enumerate(outcomes) if o[0] != "ok"]
    if not failed:
        return
    first = failed[0]
    if dist.get_rank() == first:
        raise mine
    kind, name, message = outcomes[first]
    cls = getattr(errors, name, None) if kind == "error" else None
    if not (isinstance(cls, type) and issubclass(cls, PyroVAEError)):
        cls, message = PyroVAEError, f"rank {first} failed ({name}: {message})"
    error = cls(message)
    error.reported_by_rank = first  # console.run_command prints nothing for it
    raise error


def together(fn: Callable[[], T]) -> T:
    """``fn()`` on every rank; if it fails anywhere, it fails everywhere, with one message. Use it
    around work that can fail on one rank (a missing file, an invalid setting) before the ranks
    meet in a collective that a failed rank would never reach."""
    if not ranks().distributed:
        return fn()
    payload, mine = _outcome(fn)
    _stop(_all_gather(("ok", None) if mine is None else payload), mine)  # the result stays here
    return payload[1]


def on_main(fn: Callable[[], T], shared: bool = True) -> Optional[T]:
    """``fn()`` on rank 0 alone (reading or writing a run directory, printing); its result on
    every rank if ``shared`` (else None on the others), its error on every rank."""
    r = ranks()
    if not r.distributed:
        return fn()
    payload, mine = _outcome(fn) if r.main else (None, None)
    result = payload[1] if r.main and payload[0] == "ok" else None
    if r.main and not shared and payload[0] == "ok":
        payload = ("ok", None)
    payload = broadcast(payload)
    _stop([payload] + [("ok", None)] * (r.world_size - 1), mine)
    return result if r.main else payload[1]


def main_first(fn: Callable[[], T]) -> T:
    """``fn()`` on rank 0, then, if it succeeded, on the other ranks: e.g. loading a dataset that
    rank 0 may have to download first (once, not once per rank)."""
    if not ranks().distributed:
        return fn()
    result = on_main(fn, shared=False)
    return together((lambda: result) if ranks().main else fn)


def mark_reported(error: PyroVAEError) -> PyroVAEError:
    """On a rank other than 0, mark an error that every rank raises at the same point (a loss that
    became NaN: every rank sees the same summed loss) as rank 0's to report."""
    r = ranks()
    if r.distributed and not r.main:
        error.reported_by_rank = 0
    return error


# --- collectives over tensors ---

def sum_over_ranks(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """The element-wise sums over ranks of ``tensors`` (of one dtype and device), by one
    all-reduce of a flat buffer."""
    flat = torch.cat([t.reshape(-1) for t in tensors])
    dist.all_reduce(flat)
    return [part.view_as(t) for part, t in zip(flat.split([t.numel() for t in tensors]), tensors)]


def broadcast_module(module: torch.nn.Module) -> None:
    """Rank 0's parameters and buffers on every rank, as DistributedDataParallel starts."""
    if not ranks().distributed:
        return
    for t in chain(module.parameters(), module.buffers()):
        dist.broadcast(t.data, src=0)


def gather_on_main(arrays: dict[str, np.ndarray]) -> Optional[dict[str, np.ndarray]]:
    """Each rank's per-item ``arrays`` (its :func:`share` of the items), concatenated in rank
    order on rank 0 (None elsewhere): the arrays one process would have computed."""
    r = ranks()
    if not r.distributed:
        return arrays
    parts = _gather({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()})
    if not r.main:
        return None
    keys = dict.fromkeys(k for part in parts for k in part)  # a rank with no items may lack some
    return {k: np.concatenate([part[k].numpy() for part in parts if k in part]) for k in keys}


def log_on_main(log: Callable[[str], None]) -> Callable[[str], None]:
    """``log`` on rank 0; a function that prints nothing on the others (one copy of each line)."""
    return log if ranks().main else _silent


def _silent(*_args, **_kwargs) -> None:
    pass


def resolve_device(name: str) -> torch.device:
    """The device of "cpu", "cuda" or "auto" (cuda where PyTorch sees a GPU). In a torchrun job,
    "cuda" is the rank's own GPU, and a job with more ranks on a machine than GPUs is refused
    (:func:`~pyro_vae.core.distributed.check_own_gpu`)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise errors.ConfigError("device 'cuda' was asked for but PyTorch sees no CUDA GPU; use "
                                 f"{option('device', 'cpu')} (or auto)")
    if name == "cuda":
        check_own_gpu()
    return torch.device(name)
