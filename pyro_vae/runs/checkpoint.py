"""Checkpoints: written atomically, read back with ``weights_only=True``, checked by SHA-256.

A checkpoint is a plain dict of tensors, numbers, strings and lists (no pickled objects), so
``torch.load(..., weights_only=True)`` can read it without executing code; it stays an ordinary
PyTorch file that ``torch.load`` opens. Writing goes to a temporary file in the same directory
that is then renamed over the old one: an interrupted write or a crash never leaves a
half-written checkpoint behind.

PyTorch's zip reader does not verify the archive's CRCs, so bytes damaged on disk or in a copy
would load silently (an Adam state of 3.4e38, say). Each checkpoint therefore carries the
SHA-256 of its contents (``checksum``): every tensor's dtype, shape and bytes and every other
value, in order. Loading recomputes it and refuses a checkpoint that does not match.

The checksum catches accidents, not an author who recomputes it. So every field is then checked
for type and range against the one schema (:mod:`pyro_vae.runs.checkpoint_schema`): a crafted
checkpoint is refused with one line naming the file and the field, before anything uses it.
"""

from __future__ import annotations

import hashlib
import io
import pickle
from pathlib import Path
from typing import Any

import torch

from pyro_vae.core.atomic import atomic_write
from pyro_vae.core.errors import CheckpointError
from pyro_vae.core.options import option
from pyro_vae.runs.checkpoint_schema import FORMAT, READABLE_VERSIONS, check_checkpoint

VERSION = 2  # 2: with a checksum; 1 (earlier pyro-vae) is read without one


def content_digest(state: dict[str, Any]) -> str:
    """SHA-256 of everything in ``state`` except its ``checksum`` entry."""
    h = hashlib.sha256()
    _feed(h, {k: v for k, v in state.items() if k != "checksum"})
    return h.hexdigest()


def _feed(h, value: Any) -> None:
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous()
        h.update(f"tensor {t.dtype} {tuple(t.shape)}:".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(value, dict):
        h.update(f"dict {len(value)}:".encode())
        for k, v in value.items():
            _feed(h, k)
            _feed(h, v)
    elif isinstance(value, (list, tuple)):
        h.update(f"{type(value).__name__} {len(value)}:".encode())
        for v in value:
            _feed(h, v)
    elif value is None or isinstance(value, (bool, int, float, str)):
        h.update(f"{type(value).__name__} {value!r};".encode())
    else:
        raise TypeError(f"a checkpoint holds tensors, numbers, strings, lists and dicts, not "
                        f"{type(value).__name__}")


def checkpoint_sha256(state: dict[str, Any]) -> str:
    """The SHA-256 that identifies a loaded checkpoint: the one stored in it, or (a version-1
    file, written before checksums) the one its contents have. Results record it to say which
    checkpoint they belong to."""
    return state.get("checksum") or content_digest(state)


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """Serialize in memory, then write atomically: a full disk fails as a plain ``OSError``
    (a WriteError that says so), never inside torch's zip writer, and the old file survives."""
    state = {"format": FORMAT, "version": VERSION, **state}
    state["checksum"] = content_digest(state)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write(path, buffer.getvalue())


def _refused_object(error: pickle.UnpicklingError) -> str | None:
    """The line of torch's weights-only refusal that names a disallowed object (without torch's
    advice to allowlist it or to retry with ``weights_only=False``); None if the unpickler
    failed for another reason (damaged bytes)."""
    for line in str(error).splitlines():
        if any(marker in line for marker in ("GLOBAL", "allowlisted", "Can only")):
            return line.split(" Please use")[0].strip()
    return None


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint's dict on CPU, every field checked (:mod:`~pyro_vae.runs.checkpoint_schema`), or
    a one-line CheckpointError that says what to do. A damaged ``best.pt`` beside an intact
    ``checkpoint.pt`` says that ``checkpoint="last"`` (``--checkpoint last``) opens the latter."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.pt"
    try:
        return _load(path)
    except CheckpointError as e:
        if path.name != "best.pt" or not path.is_file():
            raise
        try:
            last = _load(path.with_name("checkpoint.pt"))
        except CheckpointError:
            raise e from None
        raise CheckpointError(f"{str(e).rstrip('.')}. checkpoint.pt beside it (epoch {last['epoch']}) is intact: "
                              f"{option('checkpoint', 'last')} uses it") from None


def _load(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}: is this a run directory written by "
                              "scripts/svi_train.py, and did it finish at least one epoch?")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        refused = _refused_object(e)
        if refused is None:
            raise CheckpointError(f"checkpoint {path} is corrupt or truncated (its data could not be "
                                  "unpickled). Restore it from a copy or start a new run.") from None
        raise CheckpointError(
            f"{path} holds Python objects that a pyro-vae checkpoint never contains ({refused}), "
            "so it was not written by pyro-vae or was altered, and it was not loaded. Do not open "
            "it with torch.load(weights_only=False): that would run code stored in it.") from None
    except Exception as e:  # noqa: BLE001 - torch's readers fail on arbitrary bytes in many ways
        raise CheckpointError(
            f"checkpoint {path} is corrupt or truncated ({type(e).__name__}: "
            f"{' '.join(str(e).split())}). Restore it from a copy or start a new run.") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a pyro-vae checkpoint")
    if state.get("version") not in READABLE_VERSIONS:
        raise CheckpointError(f"{path} has checkpoint version {state.get('version')!r}; this "
                              f"pyro-vae reads versions {', '.join(map(str, READABLE_VERSIONS))}")
    if state["version"] >= 2:
        try:
            intact = state.get("checksum") == content_digest(state)
        except TypeError as e:
            raise CheckpointError(f"{path} is not a pyro-vae checkpoint ({e})") from None
        if not intact:
            raise CheckpointError(
                f"checkpoint {path} is corrupt: its contents do not match the SHA-256 checksum "
                "stored in it, so it was damaged after it was written (on disk or in a copy). "
                "Restore it from a copy or start a new run.")
    check_checkpoint(state, str(path))
    return state
