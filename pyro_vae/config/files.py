"""Reading pyro-vae's YAML files (configs, sweeps, a run's config.yaml): plain data only, bounded
in size, every problem one line that names the file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from pyro_vae.config.config import coerce_overrides
from pyro_vae.config.values import shown
from pyro_vae.core.errors import ConfigError

# The largest YAML file pyro-vae reads. Its files (configs, sweeps, a run's config.yaml) are a
# few KiB; the bound keeps a shared file from filling the memory or a message.
MAX_YAML_BYTES = 2**20

class _AnchorRefused(Exception):
    """A YAML anchor or alias, at ``mark``: see :class:`_PlainLoader`."""

    def __init__(self, mark):
        super().__init__()
        self.mark = mark


class _PlainLoader(yaml.SafeLoader):
    """PyYAML's safe loader (plain data, no Python objects), for plain data only:

    - an anchor or alias (``&a``, ``*a``, ``<<: *a``) is refused before it is expanded: nested
      aliases make a file of a few hundred bytes expand to gigabytes (the "billion laughs"), and
      pyro-vae's files never need them;
    - a key given twice in one mapping is an error instead of the last value silently winning.
    """

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise _AnchorRefused(event.start_mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                first = seen.setdefault(key, key_node.start_mark.line)
            except TypeError:  # an unhashable key: the base class reports it
                continue
            if first != key_node.start_mark.line:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {shown(key)} appears twice (lines {first + 1} and "
                    f"{key_node.start_mark.line + 1})", key_node.start_mark)
        return super().construct_mapping(node, deep)


def read_yaml(path: str | Path, what: str = "config file") -> Any:
    """The data in a YAML file, or a one-line ConfigError: missing, unreadable, larger than
    MAX_YAML_BYTES, not UTF-8, not valid YAML, nested too deeply, an anchor or alias, or a key
    given twice."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{what} {path} does not exist" + (" (see configs/ for examples)"
                                                             if what == "config file" else ""))
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_YAML_BYTES + 1)
    except OSError as e:
        raise ConfigError(f"cannot read {what} {path}: {e.strerror}") from None
    if len(data) > MAX_YAML_BYTES:
        raise ConfigError(f"{what} {path} is larger than {MAX_YAML_BYTES // 2**20} MiB; pyro-vae's "
                          "YAML files hold a few settings (is it the right file?)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{what} {path} is not UTF-8 text (byte {e.start}); save it as UTF-8") from None
    try:
        return yaml.load(text, Loader=_PlainLoader)
    except _AnchorRefused as e:
        raise ConfigError(f"{what} {path} uses a YAML anchor or alias (&name, *name) at line "
                          f"{e.mark.line + 1}, column {e.mark.column + 1}; pyro-vae reads plain "
                          "YAML only: write the values out") from None
    except RecursionError:
        raise ConfigError(f"{what} {path} is nested too deeply to be a pyro-vae YAML file") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{what} {path} is not valid YAML{where}: {problem[:200]}") from None


# A config file may carry this mapping: the published result it reproduces (see
# scripts/reproduce.py). It describes the run; it is not a setting, so training ignores it.
REFERENCE_KEY = "reference"


def read_config_file(path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(settings, reference): a YAML config file's checked, typed keys and its ``reference``
    mapping (empty if absent)."""
    raw = read_yaml(path) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {path} must hold a mapping of keys to values")
    reference = raw.pop(REFERENCE_KEY, None) or {}
    if not isinstance(reference, dict):
        raise ConfigError(f"{REFERENCE_KEY!r} in config file {path} must be a mapping, e.g. "
                          "{paper: ..., nll: 86.76}")
    return coerce_overrides(raw, where=str(path)), reference


def load_yaml(path: str | Path) -> dict[str, Any]:
    """The settings in a YAML config file, with keys checked and values typed."""
    return read_config_file(path)[0]
