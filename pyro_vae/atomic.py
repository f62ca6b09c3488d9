"""Atomic file writes: write a temporary sibling, fsync, rename over the target.

A reader (or a resumed run) sees either the old file or the new one, never a partial write,
even if the process is killed mid-write.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO, Callable, Union


def atomic_write(path: Union[str, Path], content: Union[bytes, str, Callable[[BinaryIO], None]]) -> None:
    """Write ``content`` (bytes, text, or a function that writes to a binary file) to ``path``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            if callable(content):
                content(f)
            else:
                f.write(content.encode() if isinstance(content, str) else content)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_directory(path.parent)  # make the rename itself durable
    finally:
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
