"""``Config``: the run's settings as one object made of sections (``cfg.data``, ``cfg.model``,
``cfg.prior``, ``cfg.objective``, ``cfg.optim``, ``cfg.run``), and the flat view of it.

Each section belongs to the component that reads it (a builder takes its own section:
``build_prior(cfg.prior, ...)``). Outside the program the settings stay flat, as they always
were: a YAML file, the command line and a saved run's ``config.yaml`` or checkpoint hold flat
keys (``lr``, ``prior_components``), so old and new runs read alike. :meth:`Config.from_flat`
and :meth:`Config.to_flat` convert; :data:`KEYS` maps each flat key to its place.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

from pyro_vae.config.sections import (
    SECTIONS,
    DataSection,
    ModelSection,
    ObjectiveSection,
    OptimSection,
    PriorSection,
    RunSection,
    Section,
)
from pyro_vae.config.values import PATH_KEYS, SHOWN_CHARACTERS, check_path, coerce, shown
from pyro_vae.core.errors import ConfigError

# flat key -> (section attribute, field name), in the sections' order.
KEYS: dict[str, tuple[str, str]] = {key: (s.section, f.name) for s in SECTIONS for key, f, _ in s.settings()}
# flat key -> its type (Optional[X] where None means "the default decides").
FIELD_TYPES: dict[str, Any] = {key: tp for s in SECTIONS for key, _, tp in s.settings()}
# flat key -> the dataclass field that declares it (help, docs, rules: see sections.setting).
FIELDS: dict[str, dataclasses.Field] = {key: f for s in SECTIONS for key, f, _ in s.settings()}
# Other spellings accepted for a key (YAML and command line).
ALIASES: dict[str, str] = {alias: key for key, f in FIELDS.items() for alias in f.metadata["aliases"]}


@dataclass
class Config:
    """The settings of a run, by section. ``Config()`` is the defaults; ``Config.from_flat``
    builds one from flat keys. Neither validates: :func:`~pyro_vae.config.make_config` does."""

    data: DataSection = field(default_factory=DataSection)
    model: ModelSection = field(default_factory=ModelSection)
    prior: PriorSection = field(default_factory=PriorSection)
    objective: ObjectiveSection = field(default_factory=ObjectiveSection)
    optim: OptimSection = field(default_factory=OptimSection)
    run: RunSection = field(default_factory=RunSection)

    @classmethod
    def from_flat(cls, values: Optional[Mapping[str, Any]] = None, /, **flat: Any) -> Config:
        """A Config from flat keys (``lr=1e-4``, ``prior="vamp"``); the rest are defaults. Values
        are taken as they are: :func:`coerce_overrides` types them, :func:`validate` checks them."""
        by_section: dict[str, dict[str, Any]] = {s.section: {} for s in SECTIONS}
        for key, value in {**(values or {}), **flat}.items():
            section, name = KEYS.get(ALIASES.get(key, key)) or _unknown(key, "a Config")
            by_section[section][name] = value
        return cls(**{s.section: s(**by_section[s.section]) for s in SECTIONS})

    def to_flat(self) -> dict[str, Any]:
        """The flat mapping (a copy), as config.yaml and checkpoints store it."""
        return {key: copy.deepcopy(self.value(key)) for key in KEYS}

    def value(self, key: str) -> Any:
        """The value of flat key ``key`` (``cfg.value("lr") == cfg.optim.lr``)."""
        section, name = KEYS.get(ALIASES.get(key, key)) or _unknown(key, "a Config")
        return getattr(getattr(self, section), name)

    def replace(self, **flat: Any) -> Config:
        """A copy with flat keys changed (not validated; see :func:`~pyro_vae.config.replaced`)."""
        by_section: dict[str, dict[str, Any]] = {}
        for key, value in flat.items():
            section, name = KEYS.get(ALIASES.get(key, key)) or _unknown(key, "a Config")
            by_section.setdefault(section, {})[name] = value
        return dataclasses.replace(self, **{section: dataclasses.replace(getattr(self, section), **changes)
                                            for section, changes in by_section.items()})

    def with_section(self, section: Section) -> Config:
        """A copy with ``section`` in place of its namesake (``cfg.with_section(ModelSection())``)."""
        return dataclasses.replace(self, **{section.section: section})

    @staticmethod
    def default(key: str) -> Any:
        """The default of flat key ``key`` as declared (None where the model family decides)."""
        f = FIELDS.get(ALIASES.get(key, key)) or _unknown(key, "a Config")
        return f.default_factory() if f.default is dataclasses.MISSING else f.default

    def sections(self) -> tuple[Section, ...]:
        return tuple(getattr(self, s.section) for s in SECTIONS)


def unknown_key_error(key: str, where: str) -> ConfigError:
    close = difflib.get_close_matches(key[:SHOWN_CHARACTERS], FIELD_TYPES, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return ConfigError(f"unknown config key {shown(key)} in {where}.{hint} "
                       f"Valid keys: {', '.join(FIELD_TYPES)}.")


def _unknown(key: str, where: str):
    raise unknown_key_error(str(key), where)


def coerce_overrides(raw: Mapping[str, Any], where: str = "overrides") -> dict[str, Any]:
    """``raw`` with every key checked against the config's keys and every value coerced to its
    type. YAML files use snake_case keys; dashes are accepted too, as on the command line."""
    out = {}
    for key, value in raw.items():
        name = str(key).replace("-", "_")
        name = ALIASES.get(name, name)
        if name not in FIELD_TYPES:
            raise unknown_key_error(str(key), where)
        out[name] = coerce(name, value, FIELD_TYPES[name])
        if name in PATH_KEYS and out[name] is not None:
            check_path(name, out[name])
    return out
