"""How a message names a setting: ``--latent-dim 2`` on the command line, ``latent_dim=2`` in Python.

A library error must say what to change in the words of whoever is reading it: the command-line
user types flags, the notebook user passes keyword arguments. So messages never spell a flag
themselves; they call :func:`option`, which renders the setting in the style of the caller. The
style is Python's unless the command-line layer asked for flags (:func:`flag_style`, entered by
every ``pyro-vae`` command around its work). A context variable, so threads and notebooks that
run the library beside a command see their own style.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Iterator, Optional

__all__ = ["flag_style", "option", "uses_flags"]

_FLAGS: ContextVar[bool] = ContextVar("pyro_vae_flag_style", default=False)
_NO_VALUE = object()


def uses_flags() -> bool:
    """True inside :func:`flag_style`: messages name command-line flags."""
    return _FLAGS.get()


def option(key: str, value: Any = _NO_VALUE, python: Optional[str] = None) -> str:
    """``key`` (a config key such as ``latent_dim``, or a command's flag name such as
    ``trust_import``), with ``value`` if given, as the reader types it: ``--latent-dim 2`` under
    :func:`flag_style`, else ``latent_dim=2``. ``python``: the keyword argument's name where it is
    not the key (``trusted_imports`` for ``--trust-import``)."""
    if _FLAGS.get():
        text = "--" + key.replace("_", "-")
        return text if value is _NO_VALUE else f"{text} {value}"
    name = python or key.replace("-", "_")
    return name if value is _NO_VALUE else f"{name}={value!r}"


@contextmanager
def flag_style() -> Iterator[None]:
    """Within this block, messages name settings as command-line flags (the CLI's entry)."""
    token = _FLAGS.set(True)
    try:
        yield
    finally:
        _FLAGS.reset(token)
