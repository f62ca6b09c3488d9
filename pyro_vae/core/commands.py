"""The commands that pyro-vae's messages tell a user to run, quoted so that they can be pasted.

A run directory's name may hold spaces, quotes, ``$`` or any unicode: an f-string would print a
command that the shell splits or expands differently from what was meant. Every message that
prints a command builds it here. Arguments are quoted for a POSIX shell (``shlex.quote``); one
with a character that is not printable (a newline, a tab) is written as bash's ``$'...'``, so
that the message stays one line.
"""

from __future__ import annotations

import shlex
from pathlib import Path


def quote(argument: str | Path) -> str:
    """``argument`` as one shell word that pastes as exactly ``argument``."""
    text = str(argument)
    if text.isprintable():
        return shlex.quote(text)
    escaped = "".join(_escape(c) for c in text)
    return f"$'{escaped}'"


def _escape(c: str) -> str:
    if c in "\\'":
        return "\\" + c
    if c.isprintable():
        return c
    code = ord(c)
    if code < 0x80:
        return f"\\x{code:02x}"
    if 0xDC80 <= code <= 0xDCFF:  # a byte that is not UTF-8, as os.fsdecode carries it
        return f"\\x{code - 0xDC00:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def script_command(script: str, *arguments: str | Path) -> str:
    """``python scripts/<script> arguments``, each argument quoted."""
    return " ".join(["python", f"scripts/{script}", *map(quote, arguments)])


def resume_command(run_dir: str | Path, *flags: str | Path) -> str:
    """The command that continues the run in ``run_dir`` (with ``flags``, e.g. a lower --lr)."""
    return script_command("svi_train.py", "--resume", run_dir, *flags)
