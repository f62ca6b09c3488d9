"""One writer per run directory: an operating-system file lock on ``RUN_DIR/.lock``.

Training holds the lock for the whole run; evaluation, figures and the gradient diagnostic hold
it while they work and write. A second process that wants to write the same directory is
refused at once with the holder's PID and command, instead of both writing half-finished files
over each other.

The lock is ``flock(2)`` (Linux, macOS; Windows has none and is not protected): the kernel
releases it when the holder exits, however it exits, so the lock of a process that was killed (``kill -9``, a crash, a lost
machine) is stale by construction and the next process simply takes it. The file's text (PID,
host, start time, command) only describes the holder for the refusal message. The file stays
behind after a clean exit (deleting a lock file races with a process about to take it); a
holder that never wrote anything may :meth:`RunLock.discard` it.

Within one process the lock is re-entrant: training draws its figures through the same
functions that ``scripts/plot_run.py`` uses, and those take the lock too.

A shared run directory may hold a planted ``.lock``: a symbolic link (to ``~/thesis.tex``, or
dangling, to make a file anywhere) or a hard link to someone's file. The lock file is opened with
``O_NOFOLLOW`` and used only if it is a regular file with no other name, and the directory
itself must not be a link; the holder's description is written as JSON (every character of a
path or command line escaped) and shown quoted as shell words.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import stat
import sys
import time
from pathlib import Path

from pyro_vae.core.atomic import refuse_link, write_failure
from pyro_vae.core.commands import quote
from pyro_vae.core.errors import RunLockedError, WriteError

LOCK_NAME = ".lock"

try:
    import fcntl
except ImportError:  # Windows: no flock; runs there are not protected against a second writer
    fcntl = None


def _try_lock(fd: int) -> bool:
    if fcntl is None:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _unlock(fd: int) -> None:
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)


# Locks this process holds: resolved directory -> (file descriptor, nesting depth).
_HELD: dict[Path, list[int]] = {}


class RunLock:
    """``with RunLock(run_dir): ...`` holds the run directory's lock (the directory must exist)."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self.path = self.directory / LOCK_NAME
        self._key = self.directory.resolve()

    def __enter__(self) -> "RunLock":
        if self._key in _HELD:
            _HELD[self._key][1] += 1
            return self
        refuse_link(self.directory)
        while True:
            fd = _open_lock_file(self.path)
            try:
                locked = _try_lock(fd)
            except OSError as e:  # e.g. ENOLCK: a network file system without flock
                os.close(fd)
                raise RunLockedError(f"cannot lock {self.path}: {e.strerror}; this file system "
                                     "does not support flock. Write the run elsewhere.") from None
            if not locked:
                holder = _read_holder(fd)
                os.close(fd)
                raise RunLockedError(
                    f"{self.directory} is in use by {holder}; two processes must not write one "
                    "run directory. Wait for it to finish (or stop it), or write elsewhere.")
            if _same_file(fd, self.path):
                break
            os.close(fd)  # the holder discarded the file between our open and our lock: again
        _describe_holder(fd)
        _HELD[self._key] = [fd, 1]
        return self

    def __exit__(self, *exc) -> None:
        entry = _HELD[self._key]
        entry[1] -= 1
        if entry[1] == 0:
            del _HELD[self._key]
            _unlock(entry[0])
            os.close(entry[0])

    def discard(self) -> None:
        """Remove the lock file while holding it (a run that wrote nothing leaves nothing).
        A process waiting to lock the same file notices that it was removed and tries again."""
        self.path.unlink(missing_ok=True)


def _open_lock_file(path: Path) -> int:
    """The lock file, created if missing; never through a link, never someone else's file."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o666)
    except OSError as e:
        if e.errno == errno.ELOOP or path.is_symlink():
            refuse_link(path)
        raise write_failure(path, e) from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
        os.close(fd)
        what = "not a regular file" if not stat.S_ISREG(st.st_mode) else \
            f"a hard link (the file has {st.st_nlink} names)"
        raise WriteError(f"{path} is {what}, so pyro-vae will not write it; delete it (it only "
                         "marks the directory as in use) and try again", errno.EEXIST)
    return fd


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


def _describe_holder(fd: int) -> None:
    """Who holds the lock, as one line of JSON: every character of the command line escaped."""
    text = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                       "since": time.strftime("%Y-%m-%d %H:%M:%S"), "command": sys.argv})
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, text.encode() + b"\n", 0)
    except OSError:  # a description is a courtesy; the lock itself is held
        pass


def _read_holder(fd: int) -> str:
    """The holder as the lock file describes it; every string in it quoted as a shell word, so
    that a crafted file cannot print control characters on the terminal."""
    try:
        holder = json.loads(os.pread(fd, 4096, 0).decode(errors="replace"))
        command = " ".join(quote(str(a)) for a in holder["command"]) or "python"
        text = (f"process {int(holder['pid'])} on {quote(str(holder['host']))} since "
                f"{quote(str(holder['since']))} ({command})")
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return "another process"
    return text if len(text) <= 500 else text[:500] + "..."
