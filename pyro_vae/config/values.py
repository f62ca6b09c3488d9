"""Values of config keys: typing what a YAML file or a flag gave, paths, and quoting a value in
a message. Everything here works on one key and one value; which keys exist is the sections'
business (:mod:`pyro_vae.config.sections`)."""

from __future__ import annotations

import typing
from typing import Any, Optional

from pyro_vae.core.errors import ConfigError
from pyro_vae.core.options import option, uses_flags

# Keys that name a file-system path. An empty one means the working directory to the operating
# system ("--out ''" would write a run into it, "--resume ''" would start a new run): refused.
# The value is what leaving the key out does.
PATH_KEYS = {"out": "runs/<timestamp>", "resume": "a new run",
             "data_dir": "$PYRO_VAE_DATA, else ./data"}

# The most characters of a value that a message quotes: a value read from a file can be as large
# as the file, and an error message is one line.
SHOWN_CHARACTERS = 80


def shown(value: Any, limit: int = SHOWN_CHARACTERS) -> str:
    """``repr(value)``, cut to ``limit`` characters: how every message of pyro-vae's configuration
    quotes a value (see SHOWN_CHARACTERS)."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text):,} characters)"


def flag(key: str) -> str:
    """A config key as the reader types it: ``--latent-dim`` on the command line, ``latent_dim``
    in Python (:func:`~pyro_vae.core.options.option`)."""
    return option(key)


def option_list(key: str, values: list) -> str:
    """A list-valued setting as the reader types it: ``--latent-dim 100 50`` on the command line,
    ``latent_dim=[100, 50]`` in Python."""
    if uses_flags():
        return option(key, " ".join(map(str, values)))
    return option(key, list(values))


def path_problem(value: str) -> Optional[str]:
    """Why ``value`` cannot name a path, or None: empty (the working directory to the operating
    system) or holding a NUL byte (no path can)."""
    if not value.strip():
        return f"is empty ({shown(value)})"
    if "\0" in value:
        return f"{shown(value)} holds a NUL byte, which no path can"
    return None


def check_path(key: str, value: str) -> str:
    """``value`` if config key ``key`` (a path) can hold it, else a one-line ConfigError."""
    problem = path_problem(value)
    if problem:
        default = PATH_KEYS.get(key)
        rest = f", or leave it out for {default}" if default else ""
        raise ConfigError(f"{flag(key)} {problem}; name a directory{rest}")
    return value


def optional_base(tp: Any) -> Any:
    """``X`` for ``Optional[X]``, else ``tp``."""
    if typing.get_origin(tp) is typing.Union:
        return next(a for a in typing.get_args(tp) if a is not type(None))
    return tp


def type_name(tp: Any) -> str:
    """How a message names a key's type: "an integer", "a list of numbers or null", ..."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Union:
        return " or ".join(type_name(a) for a in args if a is not type(None)) + " or null"
    if origin is list:
        return f"a list of {type_name(args[0]).split(' ', 1)[1]}s"
    if origin is dict:
        return "a mapping of names to values"
    return {int: "an integer", float: "a number", bool: "true/false", str: "a string"}[tp]


def coerce(key: str, value: Any, tp: Any) -> Any:
    """``value`` as type ``tp``, or a ConfigError that names ``key``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Union:  # Optional[X]
        if value is None:
            return None
        return coerce(key, value, next(a for a in args if a is not type(None)))
    if origin is list:
        if isinstance(value, (list, tuple)):
            return [coerce(key, v, args[0]) for v in value]
        if isinstance(value, (int, float)) and not isinstance(value, bool):  # one size: [size]
            return [coerce(key, value, args[0])]
    elif origin is dict:
        if isinstance(value, dict) and all(isinstance(k, str) for k in value):
            return dict(value)
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # PyYAML reads 1e-3 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, str):
            return value
    raise ConfigError(f"config key {key!r} must be {type_name(tp)}, got {shown(value)}")
