"""Messages to the user: the run's lines through :mod:`logging`, and errors described in one line.

The library never prints. Its lines (a run's header, one per epoch, the log p(x) report) go to
the ``pyro_vae`` logger at INFO (:func:`log_line`), so that a program using pyro-vae decides
where they go with the logging configuration it already has. Whoever wants them on the screen
enters :func:`lines_shown`: the commands do (:mod:`pyro_vae.cli`), and so does
``pyro_vae.train(verbose=True)`` where nothing else would show them.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

LOGGER = logging.getLogger("pyro_vae")


def log_line(message: str) -> None:
    """One line (or a few, joined by newlines) of a run's report, logged at INFO."""
    LOGGER.info(message)


class LineHandler(logging.Handler):
    """Writes each record's message as it is, a line on standard output, flushed: piped to a file
    or ``tee``, lines must appear as they happen, not when the process exits (Python
    block-buffers stdout that is not a terminal). ``sys.stdout`` is looked up at each line, so a
    redirected or captured stdout (a notebook's, pytest's) gets them."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            stream = sys.stdout
            stream.write(record.getMessage() + "\n")
            stream.flush()
        except Exception:  # noqa: BLE001 - logging's own policy for a handler that fails
            self.handleError(record)


@contextmanager
def lines_shown(always: bool = True) -> Iterator[None]:
    """Within this block the run's lines reach standard output (:class:`LineHandler`).

    ``always``: as the commands want, whatever logging is configured. Else (a library call in
    someone's program) only where nothing would show them: the handler is added only if no
    handler is configured for the ``pyro_vae`` logger or its ancestors. Either way INFO is let
    through while the ``pyro_vae`` logger has no level of its own, and everything is as it was
    afterwards."""
    add = always or not LOGGER.hasHandlers()
    handler = LineHandler() if add else None
    level = LOGGER.level
    if level == logging.NOTSET:
        LOGGER.setLevel(logging.INFO)
    if handler is not None:
        LOGGER.addHandler(handler)
    try:
        yield
    finally:
        if handler is not None:
            LOGGER.removeHandler(handler)
        LOGGER.setLevel(level)


def one_line(text: str) -> str:
    """A message as the one line it must be on a terminal: line breaks and tabs become spaces,
    other control characters are escaped (a path from a shared file may hold anything)."""
    text = " ".join(text.split())
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


# Set to 1 to see the traceback of an unexpected error instead of its one-line description.
TRACEBACK_ENV = "PYRO_VAE_TRACEBACK"
_PACKAGE = Path(__file__).resolve().parent.parent
_LIBRARIES = tuple(str(Path(m.__file__).resolve().parent) for m in (argparse, os)
                   ) + tuple(p for p in sys.path if p.endswith(("site-packages", "dist-packages")))


def _user_frame(error: BaseException) -> Optional[traceback.FrameSummary]:
    """The innermost frame of ``error``'s traceback in code that is neither pyro-vae's, nor a
    library's, nor Python's: the user's model, prior or script, where it is to be fixed."""
    frames = traceback.extract_tb(error.__traceback__)
    for frame in reversed(frames):
        path = str(Path(frame.filename).resolve())
        if frame.filename.startswith("<") or path.startswith((str(_PACKAGE), *_LIBRARIES)):
            continue
        if Path(path).parent.name == "scripts" and Path(path).parent.parent == _PACKAGE.parent:
            continue  # pyro-vae's own scripts/
        return frame
    return None


def describe_unexpected(error: BaseException) -> str:
    """One line for an exception that is not one of pyro-vae's own errors: what was raised, where
    (the user's code, when the traceback passes through it) and what to do."""
    message = one_line(str(error))
    message = message if len(message) <= 300 else message[:300] + "..."
    what = f"{type(error).__name__}: {message}" if message else type(error).__name__
    frame = _user_frame(error)
    if frame is not None:
        return (f"your code raised {what} (at {frame.filename}:{frame.lineno}, in {frame.name}); "
                f"fix it and run again ({TRACEBACK_ENV}=1 shows the traceback)")
    return (f"unexpected {what}. If this is not caused by your model, prior or files, it is a bug "
            f"in pyro-vae: please report it with the traceback that {TRACEBACK_ENV}=1 shows")
