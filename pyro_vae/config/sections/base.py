"""What every section of the config is: a dataclass whose fields are settings, each declared once
with everything the rest of pyro-vae says about it.

A field's metadata (see :func:`setting`) carries its flat key (the YAML key and ``--flag``; the
field's own name unless the section's name would repeat in it: ``cfg.prior.components`` is
``prior_components``), its ``--help`` line, its row of docs/configuration.md, and the simple
rules a section checks alone (:meth:`Section.check`): a choice among the names its owner
published (:mod:`pyro_vae.core.choices`), a least value, a positive number. Rules that need
two sections are :func:`pyro_vae.config.validate`'s.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import MISSING, field
from typing import Any, ClassVar, Iterator, Optional

from pyro_vae.config.values import check_path, optional_base, shown
from pyro_vae.core.choices import choices as published
from pyro_vae.core.errors import ConfigError

IMPORT_PATH = "package.module:ClassName"


def setting(default: Any = MISSING, *, help: str, doc: Optional[str] = None, key: Optional[str] = None,
            factory: Any = MISSING, aliases: tuple[str, ...] = (), choices: Any = None,
            names: Optional[str] = None, import_path: bool = False, minimum: Optional[int] = None,
            positive: bool = False, path: bool = False, shown: Optional[str] = None,
            alone: Any = None, file_path: bool = False) -> Any:
    """A config field.

    ``help``: the ``--help`` line (``{names}`` becomes the valid names); ``doc``: its meaning in
    docs/configuration.md (else ``help``); ``key``: the flat key, if not the field's name;
    ``aliases``: other spellings of the key; ``choices``: the published key whose names are the
    valid values (:func:`~pyro_vae.core.choices.choices`), or a tuple of them; ``names``: the
    published key whose names fill ``{names}`` in ``help`` where its owner checks the value
    itself (else ``choices``); ``import_path``:
    a ``package.module:Name`` is valid too; ``minimum``: the least value of an integer (None is
    always valid); ``positive``: a number > 0; ``path``: names a directory (see
    :func:`~pyro_vae.config.values.check_path`); ``shown``: the docs' default column where the
    default is None or not the value itself; ``alone``: the value of the flag given without one
    (``--tensorboard`` alone), where the flag's value is optional; ``file_path``: a path to a
    file or folder of the user's (ending in ``.npz``, or with a ``/``) is valid too."""
    metadata = {"help": help, "doc": doc or help, "key": key, "aliases": aliases, "choices": choices,
                "names": names or (choices if isinstance(choices, str) else None),
                "import_path": import_path, "minimum": minimum, "positive": positive, "path": path,
                "shown": shown, "alone": alone, "file_path": file_path}
    if factory is not MISSING:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def key_of(f: dataclasses.Field) -> str:
    """The flat key (YAML key, ``--flag``) of a section's field."""
    return f.metadata.get("key") or f.name


class Section:
    """Base of the config's sections. ``section`` is the section's attribute on
    :class:`~pyro_vae.config.Config` (``cfg.optim``)."""

    section: ClassVar[str]

    @classmethod
    def settings(cls) -> Iterator[tuple[str, dataclasses.Field, Any]]:
        """(flat key, field, type) of every field, in order."""
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            yield key_of(f), f, hints[f.name]

    def check(self) -> None:
        """The rules this section checks alone: each field's (see :func:`setting`), then
        :meth:`rules`. Raises a one-line ConfigError naming the key."""
        for key, f, tp in self.settings():
            _check_value(key, getattr(self, f.name), f.metadata, optional_base(tp))
        self.rules()

    def rules(self) -> None:
        """A section's own rules beyond its fields' (two fields of one section, say)."""


def named_choices(spec: Any) -> Optional[tuple[str, ...]]:
    """The valid names of a ``choices`` spec: a tuple, or the key its owner published them under
    (None while that owner is not imported)."""
    if spec is None:
        return None
    found = published(spec) if isinstance(spec, str) else spec
    return None if found is None else tuple(found)


def _check_value(key: str, value: Any, meta: dict, tp: Any) -> None:
    if value is None:
        return
    spec = meta["choices"]
    found = published(spec) if isinstance(spec, str) else spec  # a Registry also knows recorded objects
    if found is not None and value not in found and not (meta["import_path"] and ":" in value) \
            and not (meta.get("file_path") and (value.endswith(".npz") or "/" in value or "\\" in value)):
        valid = tuple(found)
        path = f", or give an import path {IMPORT_PATH}" if meta["import_path"] else ""
        raise ConfigError(f"unknown {key} {shown(value)}; choose one of: {', '.join(valid)}{path}")
    if meta["minimum"] is not None and value < meta["minimum"]:
        raise ConfigError(f"{key} must be at least {meta['minimum']}, got {value}")
    if tp is float and not math.isfinite(value):  # inf and nan parse as floats but are never meant
        raise ConfigError(f"{key} must be a finite number, got {value}")
    if meta["positive"] and not value > 0:
        raise ConfigError(f"{key} must be positive, got {value}")
    if meta["path"]:
        check_path(key, value)
