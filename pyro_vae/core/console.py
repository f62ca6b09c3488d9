"""Messages to the user, and the error handling every script shares."""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from pathlib import Path
from typing import Callable, Optional

from pyro_vae.core.distributed import launched_by_torchrun, ranks
from pyro_vae.core.errors import InterruptedRunError, PyroVAEError
from pyro_vae.core.options import flag_style


def log_line(message: str) -> None:
    """Print and flush: piped to a file or ``tee``, lines must appear as they happen, not when
    the process exits (Python block-buffers stdout that is not a terminal)."""
    print(message, flush=True)


def run_command(work: Callable[[], Optional[int]], interrupted: str = "nothing was written",
                single_process: bool = False) -> int:
    """A script's exit status for ``work()``: an error the user can cause is one line on stderr
    and status 2, never a traceback; Ctrl-C says what was kept (``interrupted`` unless the work
    says more) and gives 130, the shell's status for SIGINT. A ``single_process`` command
    launched by torchrun on several ranks is refused (each rank would do all of its work)."""
    if single_process and launched_by_torchrun() and int(os.environ["WORLD_SIZE"]) > 1:
        if os.environ["RANK"] == "0":
            print(f"error: {Path(sys.argv[0]).name} runs in one process; start it with python, "
                  "not torchrun (docs/scaling-out.md)", file=sys.stderr)
        return 2
    try:
        with flag_style():  # the library's messages name flags, not keyword arguments
            return work() or 0
    except InterruptedRunError as e:
        if getattr(e, "reported_by_rank", None) is None:
            print(f"\n{e}", file=sys.stderr)
        return 130
    except PyroVAEError as e:
        if os.environ.get(TRACEBACK_ENV) and e.__cause__ is not None \
                and not isinstance(e.__cause__, PyroVAEError):  # the user's code, wrapped
            traceback.print_exception(e.__cause__)
        if getattr(e, "reported_by_rank", None) is None:  # else another rank printed it
            print(f"{_rank_prefix()}error: {one_line(str(e))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\ninterrupted: {interrupted}", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - the last line of defence against a traceback
        if os.environ.get(TRACEBACK_ENV):
            raise
        if getattr(e, "reported_by_rank", None) is None:
            print(f"{_rank_prefix()}error: {one_line(describe_unexpected(e))}", file=sys.stderr)
        return 2


def one_line(text: str) -> str:
    """A message as the one line it must be on a terminal: line breaks and tabs become spaces,
    other control characters are escaped (a path from a shared file may hold anything)."""
    text = " ".join(text.split())
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


# Set to 1 to see the traceback of an unexpected error instead of its one-line description.
TRACEBACK_ENV = "PYRO_VAE_TRACEBACK"
_PACKAGE = Path(__file__).resolve().parent
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


def _rank_prefix() -> str:
    """"rank 3: " on a rank other than 0 of a torchrun job: which process failed, where an error
    is not one every rank shares (those rank 0 alone prints)."""
    r = ranks()
    return f"rank {r.rank}: " if r.distributed and not r.main else ""


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser with its errors on one line (``error: ...; see X --help``, status 2)
    instead of a usage block that can fill the screen before the one line that matters."""

    def error(self, message: str):
        # every rank of a torchrun job parses the same arguments: one of them says it
        self.exit(2, f"error: {one_line(message)}; see {self.prog} --help\n" if ranks().main else None)
