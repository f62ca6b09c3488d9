"""One registry mechanism for every kind of named, pluggable part: datasets, architectures,
models, priors, objectives and learning-rate schedules.

A new part is a new file plus a registration, never an edit to an if/elif chain: whatever
lists the valid names (config validation, ``--help``, error messages) reads them from the
registry, so a registered name is a valid choice everywhere at once. Each entry carries a
description (for help and docs) and capabilities, values that the rest of the package asks
about instead of testing names (``multi_sample`` for an objective, ``layers`` for a model).
A registry declares its capabilities with their defaults, so a misspelt one is refused at
registration instead of silently reading as the default. The owner publishes the registry as
the valid values of its config key (:func:`pyro_vae.core.choices.publish`)::

    OBJECTIVES = Registry("elbo", multi_sample=False)

    @OBJECTIVES.register("my-bound", description="my K-sample bound", multi_sample=True)
    def _my_bound(objective):  # the config's objective section
        return MyBound(objective.num_particles)

A part may also be an object made in Python (``pyro_vae.train(model=MyVAE(...))``). A config
records it by its class, ``instance of MyVAE from my_module`` (:func:`instance_name`): a valid
name of every registry, so that a run's saved config stays a config that validates, with
defaults for its capabilities; it is never listed among the choices, never imported, and its
factory refuses, because an object cannot be rebuilt from its class's name (its constructor's
arguments are not recorded). Whoever opens such a run passes the object again.

This is the bottom layer: it imports nothing from pyro_vae but its errors.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Optional

from pyro_vae.core.errors import ConfigError

SHOWN_NAME = 80  # characters of an unknown name quoted in a message (a name may be a whole file)
_INSTANCE = re.compile(r"instance of (?P<qualname>[^\s:]+) from (?P<module>[^\s:]+)")


def instance_name(obj: Any) -> str:
    """The name a config records for ``obj``, a part made in Python: ``instance of Class from
    module`` (the class's qualified name and module; no ':', so it is never an import path)."""
    cls = type(obj)
    return f"instance of {cls.__qualname__} from {cls.__module__}"


def instance_class(name: Any) -> Optional[tuple[str, str]]:
    """(qualified name, module) of the class an :func:`instance_name` records; None for any other
    name."""
    match = _INSTANCE.fullmatch(name) if isinstance(name, str) else None
    return (match["qualname"], match["module"]) if match else None


@dataclass(frozen=True)
class Entry:
    """One registered part: what builds it, one line for people, what it can do."""

    name: str
    factory: Callable[..., Any]
    description: str = ""
    capabilities: Mapping[str, Any] = field(default_factory=dict)


class Registry:
    """Names -> :class:`Entry`, in registration order (the order every message lists them in).

    ``kind`` names the registry in messages ("unknown prior 'x'"); ``capabilities`` are the
    ones each entry has, with their defaults.
    """

    def __init__(self, kind: str, **capabilities: Any):
        self.kind = kind
        self.defaults = capabilities
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, factory: Optional[Callable] = None, *, description: str = "",
                 replace: bool = False, **capabilities: Any) -> Callable:
        """Register ``factory`` as ``name``: ``register(name, factory, ...)``, or as a decorator,
        ``@register(name, ...)``. Returns the factory (the decorator leaves it unchanged).

        A name already taken is refused unless ``replace=True`` (which keeps its place in the
        order): two plug-ins that chose the same name must not silently replace each other."""
        if not isinstance(name, str) or not name or ":" in name or name != name.strip() \
                or instance_class(name):
            raise ConfigError(f"{self.kind} name {name!r} must be a non-empty string without ':' "
                              "or surrounding spaces (':' marks an import path package.module:Name), "
                              "not of the form 'instance of Class from module' (an object's record)")
        unknown = sorted(set(capabilities) - set(self.defaults))
        if unknown:
            raise ConfigError(f"{self.kind} {name!r}: unknown capabilities {', '.join(unknown)}; "
                              f"a {self.kind} has {', '.join(self.defaults) or 'none'}")
        if name in self._entries and not replace:
            raise ConfigError(f"{self.kind} {name!r} is registered already; pick another name, or "
                              "pass replace=True to replace it on purpose")

        def add(fn: Callable) -> Callable:
            doc = (fn.__doc__ or "").strip().split("\n", 1)[0]
            self._entries[name] = Entry(name, fn, description or doc, {**self.defaults, **capabilities})
            return fn

        return add if factory is None else add(factory)

    def remove(self, name: str) -> Entry:
        """Unregister ``name`` (a test's temporary entry, a plug-in withdrawn); returns its entry."""
        self.get(name)
        return self._entries.pop(name)

    def get(self, name: str) -> Entry:
        """The entry registered as ``name`` (or standing for an object, see :func:`instance_name`),
        or a one-line ConfigError listing the valid names."""
        if name not in self._entries and instance_class(name):
            return Entry(name, self._refuse_object(name), "an object made in Python", dict(self.defaults))
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            shown = repr(name) if len(repr(name)) <= SHOWN_NAME else repr(name)[:SHOWN_NAME] + "..."
            raise ConfigError(f"unknown {self.kind} {shown}; choose one of: "
                              f"{', '.join(self._entries)}") from None

    def _refuse_object(self, name: str) -> Callable[..., Any]:
        qualname, module = instance_class(name)

        def refuse(*_args: Any, **_kwargs: Any) -> Any:
            raise ConfigError(f"{self.kind} {name!r} was an object made in Python, which cannot be "
                              f"rebuilt from its class's name (the arguments it was made with are not "
                              f"recorded): pass the object again, a {qualname}(...) from {module}")
        return refuse

    def names(self) -> tuple[str, ...]:
        """The registered names, in order (names standing for objects are not among them)."""
        return tuple(self._entries)

    def describe(self) -> str:
        """One line per entry, ``name: description``, in order (for ``--help`` and the docs)."""
        return "\n".join(f"{e.name}: {e.description}" if e.description else e.name
                         for e in self._entries.values())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (name in self._entries or instance_class(name) is not None)

    def __iter__(self) -> Iterator[str]:
        return iter(tuple(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._entries)})"
