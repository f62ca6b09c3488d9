"""Atomic file writes: write a temporary sibling, fsync, rename over the target.

A reader (or a resumed run) sees either the old file or the new one, never a partial write,
even if the process is killed mid-write. Each write has a temporary file of its own (a unique
name), so two writers never trample each other's half-written files. A failed write (disk
full, read-only file system, no permission) leaves the old file untouched and raises a
:class:`~pyro_vae.errors.WriteError` that says why in words.
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
from pathlib import Path
from typing import BinaryIO, Callable, Union

from .errors import WriteError

REASONS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.ENOENT: "the directory does not exist",
}


def write_failure(path: Union[str, Path], error: OSError) -> WriteError:
    """A WriteError for ``path`` that names the cause (and the free space, when it ran out)."""
    path = Path(path)
    reason = REASONS.get(error.errno, error.strerror or str(error))
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        try:
            free = shutil.disk_usage(path.parent).free
            reason += f" ({free / 2**20:.1f} MiB free in {path.parent})"
        except OSError:
            pass
    return WriteError(f"could not write {path}: {reason}", error.errno)


def make_directory(path: Union[str, Path]) -> Path:
    """``mkdir -p path``, or a WriteError that names the cause."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise write_failure(path, e) from None
    return path


def atomic_write(path: Union[str, Path], content: Union[bytes, str, Callable[[BinaryIO], None]]) -> None:
    """Write ``content`` (bytes, text, or a function that writes to a binary file) to ``path``."""
    path = Path(path)
    tmp = None
    try:
        # O_EXCL on a unique name; mode 0o666 less the umask, as a plain open() would give
        # (tempfile.mkstemp would make every checkpoint private to its owner).
        tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as f:
            if callable(content):
                content(f)
            else:
                f.write(content.encode() if isinstance(content, str) else content)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_directory(path.parent)  # make the rename itself durable
    except OSError as e:
        raise write_failure(path, e) from None
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. platforms that cannot open directories
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
