"""The commands' exit-code policy: what a user sees when a command stops, and its status.

An error the user can cause is one line on stderr and status 2, never a traceback; Ctrl-C says
what was kept and gives 130, the shell's status for SIGINT; anything unexpected is one line too
(``PYRO_VAE_TRACEBACK=1`` shows the traceback). Inside a command the library's messages name
command-line flags (:func:`~pyro_vae.core.options.flag_style`) and its lines go to stdout
(:func:`~pyro_vae.core.console.lines_shown`).
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import traceback
from pathlib import Path
from typing import Callable, Optional

from pyro_vae.core.console import TRACEBACK_ENV, describe_unexpected, lines_shown, one_line
from pyro_vae.core.distributed import launched_by_torchrun, ranks
from pyro_vae.core.errors import InterruptedRunError, PyroVAEError
from pyro_vae.core.options import flag_style


def command(main: Callable[..., int]) -> Callable[..., int]:
    """A command's ``main(argv)``, with everything it does naming settings as flags
    (:func:`~pyro_vae.core.options.flag_style`): the checks it makes while parsing, before its
    work starts, as well as the library's messages during it."""
    @functools.wraps(main)
    def run(argv=None) -> int:
        with flag_style():
            return main(argv)
    return run


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
        with flag_style(), lines_shown():  # messages name flags; the run's lines go to stdout
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
