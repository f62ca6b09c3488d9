"""Run a function on N ranks of a gloo process group, as ``torchrun`` would launch them.

Each rank is a process started by ``torch.multiprocessing.spawn`` with torchrun's environment
variables (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT), so pyro-vae's own
:func:`~pyro_vae.core.distributed.process_group` joins the group exactly as under torchrun. The
function's return value comes back per rank (through a file: it may hold tensors). Writes into
``watch`` are recorded per rank with an audit hook, to check which rank wrote what.

The ranks see no GPU (``CUDA_VISIBLE_DEVICES=""``): they test the CPU path, gloo alone, on any
machine (on a one-GPU machine two ranks would otherwise share it, which NCCL refuses).
"""

from __future__ import annotations

import os
import socket
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Optional

import torch
import torch.multiprocessing as mp

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun_environment(rank: int, world_size: int, port: int) -> dict[str, str]:
    return {"RANK": str(rank), "WORLD_SIZE": str(world_size), "LOCAL_RANK": str(rank),
            "LOCAL_WORLD_SIZE": str(world_size), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}


def _record_writes(watch: Path, written: list[str]) -> None:
    root = str(watch.resolve())

    def hook(event: str, args: tuple) -> None:
        paths = []
        if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
            mode, flags = args[1], args[2]
            if (mode and any(c in mode for c in "wax+")) or (flags and flags & WRITE_FLAGS):
                paths = [args[0]]
        elif event in ("os.rename", "os.replace"):
            paths = [args[0], args[1]]
        elif event in ("os.remove", "os.mkdir", "os.rmdir"):
            paths = [args[0]]
        for path in paths:
            if isinstance(path, (str, bytes, os.PathLike)):
                path = os.path.abspath(os.fsdecode(path))
                if path.startswith(root):
                    written.append(os.path.relpath(path, root))

    sys.addaudithook(hook)


def _worker(rank: int, world_size: int, port: int, fn: Callable, args: tuple, out: str,
            watch: Optional[str]) -> None:
    os.environ.update(torchrun_environment(rank, world_size, port))
    torch.set_num_threads(1)
    from pyro_vae.core.distributed import process_group

    written: list[str] = []
    if watch is not None:
        _record_writes(Path(watch), written)
    with process_group():
        result = fn(*args)
    torch.save({"result": result, "written": written}, Path(out) / f"rank{rank}.pt")


@contextmanager
def no_gpu_for_children():
    """``CUDA_VISIBLE_DEVICES=""`` in the environment that processes started meanwhile inherit."""
    before = os.environ.get("CUDA_VISIBLE_DEVICES")
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
    try:
        yield
    finally:
        if before is None:
            del os.environ["CUDA_VISIBLE_DEVICES"]
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = before


def run_ranks(world_size: int, fn: Callable, *args, tmp: Path, watch: Optional[Path] = None
              ) -> list[dict[str, Any]]:
    """``fn(*args)`` on ``world_size`` ranks; per rank ``{"result": ..., "written": [paths]}``
    (``written``: files and directories under ``watch`` that the rank wrote, created or removed)."""
    out = Path(tmp) / f"ranks-{free_port()}"
    out.mkdir(parents=True)
    with no_gpu_for_children():
        mp.spawn(_worker, args=(world_size, free_port(), fn, args, str(out), str(watch) if watch else None),
                 nprocs=world_size, join=True)
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(world_size)]
