"""What the configuration asks of the layers above it, without importing them.

``pyro_vae.config`` is the lowest layer after core: it may not import the registries that know
the valid values of its keys (datasets, architectures, models, priors, objectives, schedules),
nor the rules that only their owners can check (a user model's constructor, an objective
against the guide's estimator). So each owner hands them down here when it is imported:

- ``publish("prior", PRIORS)``: the valid values of the config key ``prior`` are the names in
  that :class:`~pyro_vae.core.registry.Registry` (or tuple), and its entries' capabilities answer
  the config's questions about them (``validation`` of a dataset, ``layers`` of a model, ...);
- ``add_rule("objective", check)``: ``check(cfg)`` raises a ConfigError for a config the owner
  cannot serve; :func:`pyro_vae.config.validate` runs every rule on every config;
- ``add_unread("model", unread)``: ``unread(cfg, defaults)`` returns ``{key: message}`` for the
  keys set in ``cfg`` that the owner would not read (see :func:`pyro_vae.config.ignored_settings`).

A key whose owner is not imported is not checked by name when a config is validated; the owner
checks it when it builds (every ``Registry.get`` refuses an unknown name with the valid ones).
Every entry point that builds anything imports the owners first, so in practice every rule runs
before any data is loaded.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Optional

__all__ = ["add_rule", "add_unread", "choices", "publish", "rules", "unread_rules"]

_CHOICES: dict[str, Any] = {}
_RULES: dict[str, Callable[[Any], None]] = {}
_UNREAD: dict[str, Callable[[Any, Any], dict[str, str]]] = {}


def publish(key: str, values: Iterable[str]) -> None:
    """Make ``values`` (a Registry, or a tuple of names) the valid values of config key ``key``."""
    _CHOICES[key] = values


def choices(key: str) -> Optional[Any]:
    """The Registry or tuple published for ``key``, or None if its owner is not imported."""
    return _CHOICES.get(key)


def add_rule(name: str, check: Optional[Callable[[Any], None]] = None) -> Callable:
    """Run ``check(cfg)`` on every validated config (after the sections' own rules), in the order
    added. ``name`` identifies it: adding the same name again replaces it (a module imported
    twice). Without ``check``, a decorator."""
    def add(fn: Callable[[Any], None]) -> Callable[[Any], None]:
        _RULES[name] = fn
        return fn
    return add if check is None else add(check)


def rules() -> tuple[Callable[[Any], None], ...]:
    return tuple(_RULES.values())


def add_unread(name: str, unread: Callable[[Any, Any], dict[str, str]]) -> None:
    """``unread(cfg, defaults) -> {key: message}``: the keys that ``cfg`` sets (differ from
    ``defaults``, the config's defaults) and that the owner would never read."""
    _UNREAD[name] = unread


def unread_rules() -> tuple[Callable[[Any, Any], dict[str, str]], ...]:
    return tuple(_UNREAD.values())
