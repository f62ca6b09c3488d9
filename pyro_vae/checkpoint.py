"""Checkpoints: written atomically, read back with ``weights_only=True``.

A checkpoint is a plain dict of tensors, numbers, strings and lists (no pickled objects), so
``torch.load(..., weights_only=True)`` can read it without executing code. Writing goes to a
temporary file in the same directory that is then renamed over the old one: an interrupted
write or a crash never leaves a half-written checkpoint behind.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from .atomic import atomic_write
from .errors import CheckpointError

FORMAT = "pyro-vae-checkpoint"
VERSION = 1
REQUIRED_KEYS = ("format", "version", "epoch", "step", "config", "model", "optimizer", "rng",
                 "metrics")


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    atomic_write(path, lambda f: torch.save({"format": FORMAT, "version": VERSION, **state}, f))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint's dict on CPU, or a CheckpointError that says what to do."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.pt"
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}: is this a run directory written by "
                              "scripts/svi_train.py, and did it finish at least one epoch?")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile,
            ValueError) as e:
        raise CheckpointError(
            f"checkpoint {path} is corrupt or truncated ({type(e).__name__}: {e}). Restore it "
            "from a copy or start a new run; pyro-vae never overwrites a good checkpoint with a "
            "partial one, so this file was damaged after it was written.") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a pyro-vae checkpoint")
    if state.get("version") != VERSION:
        raise CheckpointError(f"{path} has checkpoint version {state.get('version')}; this "
                              f"pyro-vae reads version {VERSION}")
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        raise CheckpointError(f"{path} lacks {', '.join(missing)}: not a complete checkpoint")
    return state
