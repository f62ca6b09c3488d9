"""Atomic file writes: write a temporary sibling, fsync, rename over the target.

A reader (or a resumed run) sees either the old file or the new one, never a partial write,
even if the process is killed mid-write. Each write has a temporary file of its own (a unique
name), so two writers never trample each other's half-written files. A failed write (disk
full, read-only file system, no permission) leaves the old file untouched and raises a
:class:`~pyro_vae.core.errors.WriteError` that says why in words.

Nothing is written through a symbolic link. A run directory is shared data, and a link in it
(``figures -> ~``, ``eval.json -> ~/thesis.tex``) must not steer a write out of it: the
temporary file is created with ``O_EXCL`` (which never follows a link) and the rename replaces
a link at the target's name instead of following it; :func:`make_directory` refuses a
directory that is a link. Every file pyro-vae writes, figures included, goes through here.
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
import stat
from pathlib import Path
from typing import BinaryIO, Callable, Union

from pyro_vae.core.errors import WriteError

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


def refuse_link(path: Union[str, Path]) -> None:
    """A WriteError if ``path`` is a symbolic link: pyro-vae does not write through one."""
    path = Path(path)
    if path.is_symlink():
        try:
            target = f" (to {os.readlink(path)!r})"
        except OSError:
            target = ""
        raise WriteError(f"{path} is a symbolic link{target}; pyro-vae never writes through a "
                         "link. Remove the link, or name a real directory", errno.ELOOP)


def make_directory(path: Union[str, Path]) -> Path:
    """``mkdir -p path``, or a WriteError that names the cause. ``path`` itself must not be a
    symbolic link (a shared run's ``figures -> /elsewhere`` is refused, never written into);
    the folders above it are the user's to choose."""
    path = Path(path)
    refuse_link(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise write_failure(path, e) from None
    refuse_link(path)  # made a link between the check and mkdir
    if not path.is_dir():
        raise WriteError(f"{path} is not a directory", errno.ENOTDIR)
    return path


Content = Union[bytes, str, Callable[[BinaryIO], None]]


def _stage(path: Path, content: Content) -> Path:
    """``content`` in a new temporary sibling of ``path``, flushed to disk; its name."""
    # O_EXCL on a unique name (never follows a link); mode 0o666 less the umask, as a plain
    # open() would give (tempfile.mkstemp would make every checkpoint private to its owner).
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            if callable(content):
                content(f)
            else:
                f.write(content.encode() if isinstance(content, str) else content)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def atomic_write_all(files: list[tuple[Union[str, Path], Content]]) -> None:
    """Write several files that belong together: every one is written in full first, then they
    are renamed into place in the given order. A failed write (a full disk) leaves all the
    previous files as they were; only a kill between the renames, a window of microseconds,
    can leave some new and some old (readers that need them to match check an id they share:
    :mod:`pyro_vae.runs.results`). Put the file that says "complete" (the summary) last."""
    staged: list[tuple[Path, Path]] = []
    current = None
    try:
        for path, content in files:
            current = Path(path)
            staged.append((_stage(current, content), current))
        for tmp, current in staged:
            os.replace(tmp, current)
        for directory in dict.fromkeys(path.parent for _, path in staged):
            _fsync_directory(directory)  # make the renames themselves durable
    except OSError as e:
        raise write_failure(current, e) from None
    finally:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)


def atomic_write(path: Union[str, Path], content: Content) -> None:
    """Write ``content`` (bytes, text, or a function that writes to a binary file) to ``path``."""
    atomic_write_all([(path, content)])


def save_figure(fig, path: Union[str, Path], **savefig_options) -> Path:
    """A matplotlib figure to ``path`` (format from its suffix) through :func:`atomic_write`:
    ``savefig`` straight to the path would follow a link planted there."""
    path = Path(path)
    atomic_write(path, lambda f: fig.savefig(f, format=path.suffix.lstrip(".") or "png",
                                             **savefig_options))
    return path


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. platforms that cannot open directories
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_regular_file(path: Union[str, Path], max_bytes: int) -> bytes:
    """The bytes of ``path``, if it is a regular file of at most ``max_bytes``; else a ValueError
    (or OSError) that says what it is. A file of a shared directory may be a FIFO, which would
    block a plain read, or a device, which might never end."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise ValueError("it is a directory")
        if not stat.S_ISREG(info.st_mode):
            raise ValueError("it is not a regular file")
        if info.st_size > max_bytes:
            raise ValueError(f"it has {info.st_size} bytes, expected {max_bytes}")
        f = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with f:
        return f.read(max_bytes + 1)
