"""The run's random streams: its own, swapped in while it works, and saved in its checkpoints.

A run draws its data order, binarization and particles from the global generators (Pyro's
samplers take no generator argument). Seeding those behind the caller's back would change what
a notebook draws after ``train()``; so a :class:`RunGenerators` keeps the run's states apart
from the caller's: :meth:`~RunGenerators.active` swaps the run's in and, when the block ends or
raises, saves them and puts the caller's back. Inside, the numbers are exactly those of a
process seeded with the run's seed, so a given seed gives the same run as before.

A checkpoint holds the CPU generator and the run's own GPU's (:func:`rng_state`); a resume puts
them back (:func:`set_rng_state`), so the resumed run draws what an uninterrupted one would.
"""

from __future__ import annotations

import random
from contextlib import contextmanager
from typing import Any, Iterator, Optional

import numpy as np
import torch

from pyro_vae.core.errors import CheckpointError


def rng_state(device: torch.device) -> dict[str, Any]:
    """The CPU generator, and the run's own GPU's (None for a CPU run): not every GPU's, which a
    machine with fewer GPUs could not take back."""
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}


def _saved_cuda_state(saved: Any, device: torch.device) -> tuple[Optional[torch.Tensor], str, Optional[str]]:
    """(the saved CUDA generator state for ``device``, its field, or None and a note saying why
    there is none). ``saved``: a tensor (the run's GPU's), None (a CPU run), or, as pyro-vae wrote
    before, a list of one state per GPU of the machine that wrote it (empty: a CPU run)."""
    if isinstance(saved, (list, tuple)) and not saved:
        saved = None
    if not isinstance(saved, (list, tuple)):
        return saved, "rng.cuda", None if saved is not None else (
            "the checkpoint was written on the cpu, so the GPU's random numbers continue from the "
            "seed, not from where the run stopped")
    index = device.index if device.index is not None else torch.cuda.current_device()
    if index < len(saved):
        return saved[index], f"rng.cuda[{index}]", None
    return None, "rng.cuda", (f"the checkpoint holds no CUDA generator state for cuda:{index} (it has "
                              f"{len(saved)}), so the GPU's random numbers continue from the seed")


def set_rng_state(state: dict[str, Any], device: torch.device, source) -> Optional[str]:
    """Restore the generators (checked on load: :mod:`~pyro_vae.runs.checkpoint_schema`); returns a note
    where a CUDA state could not be restored (a run moved between the CPU and a GPU). A CUDA
    state's format is checked by torch here, where a GPU is."""
    torch.set_rng_state(state["torch"])
    saved = state["cuda"]
    if device.type != "cuda":
        return None if saved is None or len(saved) == 0 else (
            "the checkpoint's CUDA generator state is not restored on the cpu; the random numbers "
            "continue from its CPU generator")
    cuda_state, field, note = _saved_cuda_state(saved, device)
    if cuda_state is not None:
        try:
            torch.cuda.set_rng_state(cuda_state, device)
        except (RuntimeError, TypeError) as e:
            raise CheckpointError(f"{source}: field {field!r} is not a CUDA generator state that "
                                  f"torch accepts ({' '.join(str(e).split())}); the file was not "
                                  "written by pyro-vae or was altered") from None
    return note


def seed_torch(seed: int, device: torch.device) -> None:
    """Seed the CPU generator and ``device``'s, as ``torch.manual_seed`` seeds them, and no
    other: ``torch.manual_seed`` also seeds every other GPU (lazily, the next time CUDA starts),
    which would change what the caller draws there."""
    torch.default_generator.manual_seed(seed)
    if device.type == "cuda":
        with torch.cuda.device(device):
            torch.cuda.manual_seed(seed)


def _states(device: torch.device) -> dict[str, Any]:
    return {**rng_state(device), "numpy": np.random.get_state(), "random": random.getstate()}


def _put_back(states: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(states["torch"])
    if states["cuda"] is not None:
        torch.cuda.set_rng_state(states["cuda"], device)
    np.random.set_state(states["numpy"])
    random.setstate(states["random"])


class RunGenerators:
    """The run's own states of the global generators (torch's CPU one and ``device``'s, NumPy's,
    Python's), seeded with ``seed`` as :func:`pyro.set_rng_seed` would seed them, and swapped
    in by :meth:`active`."""

    def __init__(self, seed: int, device: torch.device):
        self.seed, self.device = seed, device
        self._states: Optional[dict[str, Any]] = None  # None: not started (seeded on first entry)

    @contextmanager
    def active(self) -> Iterator[None]:
        """The run's generators inside, the caller's back afterwards (also after an error)."""
        caller = _states(self.device)
        try:
            if self._states is None:
                seed_torch(self.seed, self.device)
                random.seed(self.seed)
                np.random.seed(self.seed)
            else:
                _put_back(self._states, self.device)
            yield
        finally:
            self._states = _states(self.device)
            _put_back(caller, self.device)

    @property
    def state(self) -> Optional[dict[str, Any]]:
        """The run's generator states as they were when it last stopped working (None before)."""
        return self._states
