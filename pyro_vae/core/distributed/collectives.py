"""What ranks tell each other: decisions and errors (:func:`together`, :func:`on_main`), Python
objects (:func:`broadcast`), and numbers (:func:`sum_over_ranks`, :func:`gather_on_main`,
:func:`broadcast_module`).

Objects travel as ``torch.save`` bytes read back with ``torch.load(weights_only=True)``
(:func:`to_bytes`, :func:`from_bytes`), so no rank executes code another rank sent. An error on
any rank stops every rank with the message printed once, and a rank never waits in a
collective for a rank that has already failed. Without a process group every function here is
the plain call it wraps.
"""

from __future__ import annotations

import io
from itertools import chain
from typing import Any, Callable, Optional, TypeVar

import numpy as np
import torch
import torch.distributed as dist

from pyro_vae.core import errors
from pyro_vae.core.distributed.job import ranks
from pyro_vae.core.errors import PyroVAEError

T = TypeVar("T")


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

