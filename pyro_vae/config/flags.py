"""The command line: one ``--flag`` per config key, and the flags that name paths and trusted
code. Only flags the user gives count (defaults are suppressed), so a flag overrides a YAML file
and nothing else."""

from __future__ import annotations

import argparse
import json
import typing
from typing import Any, Callable, Optional

from pyro_vae.config.config import ALIASES, FIELD_TYPES, FIELDS, KEYS
from pyro_vae.config.sections import SECTIONS
from pyro_vae.config.sections.base import named_choices
from pyro_vae.config.values import PATH_KEYS, optional_base, path_problem


def path_argument(key: Optional[str] = None, default: Optional[str] = None) -> Callable[[str], str]:
    """An argparse ``type`` for a path: refuses what :func:`path_problem` refuses, as one line
    (argparse names the flag or argument). ``default`` says what leaving it out does (else
    config key ``key``'s PATH_KEYS entry; None for a required argument)."""
    default = default or PATH_KEYS.get(key or "")

    def parse(text: str) -> str:
        problem = path_problem(text)
        if problem:
            rest = f", or leave it out for {default}" if default else ""
            raise argparse.ArgumentTypeError(f"{problem}; name a directory{rest}")
        return text
    parse.__name__ = "path"
    return parse


def add_config_arguments(parser: argparse.ArgumentParser,
                         path_defaults: Optional[dict[str, str]] = None) -> None:
    """One ``--flag`` per config key, grouped by section in ``--help``. Defaults are suppressed so
    that only given flags count. ``path_defaults``: what leaving out a path flag does in this
    script, where it differs from training's (PATH_KEYS), for its message. ``{names}`` in a key's
    help becomes the names its owner published (:mod:`pyro_vae.core.choices`)."""
    groups = {s.section: parser.add_argument_group(f"{s.section} settings",
                                                   " ".join((s.__doc__ or "").split()).replace("``", ""))
              for s in SECTIONS}
    for key, f in FIELDS.items():
        tp = FIELD_TYPES[key]
        base = optional_base(tp)
        names = " | ".join(named_choices(f.metadata["names"]) or ())
        kwargs: dict[str, Any] = {"default": argparse.SUPPRESS, "dest": key,
                                  "help": f.metadata["help"].replace("{names}", names)}
        if tp is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(base) is dict:
            kwargs.update(type=_json_mapping, metavar="JSON")
        elif typing.get_origin(base) is list:
            kwargs.update(nargs="+", type=typing.get_args(base)[0], metavar="N")
        elif key in PATH_KEYS:
            kwargs.update(type=path_argument(key, (path_defaults or {}).get(key)), metavar="DIR")
        elif f.metadata["path"]:
            kwargs.update(type=path_argument(), metavar="DIR")
        else:
            kwargs.update(type=base, metavar=key.upper())
        if f.metadata["alone"] is not None:  # the flag may come without a value
            kwargs.update(nargs="?", const=f.metadata["alone"])
        aliases = ["--" + alias.replace("_", "-") for alias, name in ALIASES.items() if name == key]
        groups[KEYS[key][0]].add_argument("--" + key.replace("_", "-"), *aliases, **kwargs)


def add_trust_argument(parser: argparse.ArgumentParser) -> None:
    """``--trust-import PATH`` (repeatable): an import path that a run's saved config may name
    and that may therefore be imported when the run is opened (see
    :func:`~pyro_vae.config.check_trusted_imports`)."""
    parser.add_argument("--trust-import", action="append", default=[], metavar="PATH",
                        dest="trust_import",
                        help="allow the run's saved config to import this package.module:Name "
                             "(a user prior or model); repeat for several")


def _json_mapping(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not JSON: {e}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object, e.g. '{\"scale\": 2.0}'")
    return value
