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
"""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path

from .atomic import write_failure
from .errors import RunLockedError

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
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            except OSError as e:
                raise write_failure(self.path, e) from None
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


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


def _describe_holder(fd: int) -> None:
    text = (f"process {os.getpid()} on {socket.gethostname()} since "
            f"{time.strftime('%Y-%m-%d %H:%M:%S')} ({' '.join(sys.argv) or 'python'})")
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, text.encode(), 0)
    except OSError:  # a description is a courtesy; the lock itself is held
        pass


def _read_holder(fd: int) -> str:
    try:
        text = os.pread(fd, 4096, 0).decode(errors="replace").strip()
    except OSError:
        text = ""
    return text or "another process"
