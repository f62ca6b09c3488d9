"""The public API's keyword arguments, checked and turned into config values.

Every config key (docs/configuration.md) is a keyword argument of :func:`~pyro_vae.api.training.train`;
``model=``, ``prior=`` and ``elbo=`` take a registered name, an import path or an object made in
Python. An object is recorded in the config by its class (``instance of MyVAE from my_module``,
:func:`~pyro_vae.core.registry.instance_name`), never as an import path: the arguments it was
made with are not known, and a model rebuilt from its class with the config's arguments could
differ from it without any tensor's shape showing it (another activation, another option). A
model meant to be rebuilt from its config is named by its import path instead
(``model="my_module:MyVAE"``), as on the command line.

Each refusal is a one-line :class:`~pyro_vae.core.errors.ConfigError` that names the parameter as
the caller typed it (``model=``), never a command-line flag.
"""

from __future__ import annotations

import difflib
import operator
from typing import Any, Iterable, Optional, Sequence

from torch import nn

from pyro_vae.config import ALIASES, FIELD_TYPES, USED_ONLY_WITH, shown
from pyro_vae.core.errors import ConfigError
from pyro_vae.core.registry import instance_name
from pyro_vae.infer.objectives import OBJECTIVES
from pyro_vae.models import MODEL_KEYS, MODELS
from pyro_vae.models.priors import PRIORS


def check_keywords(function: str, given: Iterable[str], parameters: Sequence[str],
                   keys: Sequence[str], redirects: Optional[dict[str, str]] = None) -> None:
    """Refuse a keyword argument of ``function`` that is neither one of its ``parameters`` nor
    one of the config ``keys`` it takes, with the closest one and the list of all; ``redirects``:
    keyword -> the message for a config key that the function takes in another way."""
    for key in given:
        if ALIASES.get(key, key) in keys:
            continue
        if redirects and key in redirects:
            raise ConfigError(redirects[key])
        close = difflib.get_close_matches(key, [*parameters, *keys], n=1)
        hint = f"; did you mean {close[0]}=?" if close else ""
        raise ConfigError(f"{function}() got an unknown keyword argument {key}={hint} It takes "
                          f"{', '.join(p + '=' for p in parameters)} and these config keys "
                          f"(docs/configuration.md): {', '.join(keys)}")


def config_keys(*taken: str) -> list[str]:
    """The config keys a function takes as keyword arguments: all but those it ``taken`` as
    parameters of its own."""
    return [key for key in FIELD_TYPES if key not in taken]


def shaping_keys() -> tuple[str, ...]:
    """The config keys that shape a model built from its name (and its prior): a model given as
    an object is built already, so none of them would be read."""
    prior_knobs = [key for key, (decider, _) in USED_ONLY_WITH.items() if decider in MODEL_KEYS]
    return (*MODEL_KEYS, "model_options", *prior_knobs)


def _kind(obj: Any) -> str:
    return "the class " + obj.__name__ if isinstance(obj, type) else type(obj).__name__


def model_object(model: Any) -> nn.Module:
    """``model``, a model made in Python, checked: an ``nn.Module`` with ``model(x)`` and
    ``guide(x)`` methods (what they do is checked against the site rules when it is used)."""
    if isinstance(model, type):
        raise ConfigError(f"model= is the class {model.__name__}; pass an instance, {model.__name__}(...), "
                          f"or its import path 'package.module:{model.__name__}'")
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model= must be a model name ({', '.join(MODELS.names())}), an import path "
                          "'package.module:Class', or an nn.Module with model(x) and guide(x) methods; "
                          f"got {_kind(model)}")
    for method in ("model", "guide"):
        if not callable(getattr(model, method, None)):
            raise ConfigError(f"model= ({type(model).__name__}) has no {method}(x) method: a model is an "
                              "nn.Module with the Pyro programs model(x) and guide(x) (docs/models.md, "
                              "the site rules)")
    return model


def prior_object(prior: Any) -> nn.Module:
    """``prior``, a prior made in Python, checked: an ``nn.Module`` (whose ``forward()`` returns
    the prior distribution; checked when the model is built)."""
    if isinstance(prior, type) or not isinstance(prior, nn.Module):
        raise ConfigError(f"prior= must be a prior name ({', '.join(PRIORS.names())}), an import path "
                          "'package.module:Class', or an nn.Module whose forward() returns the prior "
                          f"distribution; got {_kind(prior)}")
    return prior


def elbo_object(elbo: Any) -> Any:
    """``elbo``, an objective made in Python, checked: Pyro's ELBO interface (``loss`` and
    ``loss_and_grads(model, guide, x)``), e.g. ``pyro.infer.Trace_ELBO(num_particles=5)``."""
    if isinstance(elbo, type) or not all(callable(getattr(elbo, m, None)) for m in ("loss", "loss_and_grads")):
        raise ConfigError(f"elbo= must be an objective name ({', '.join(OBJECTIVES.names())}) or an "
                          "objective object with Pyro's ELBO interface (loss, loss_and_grads), e.g. "
                          f"pyro.infer.Trace_ELBO(); got {_kind(elbo)}")
    return elbo


def model_argument(model: Any, values: dict[str, Any]) -> Optional[nn.Module]:
    """Record ``model`` (a name, an import path or an object) in the config ``values``; returns
    the object, if it is one. A key that shapes a model built from its name is refused beside an
    object: the object would not read it, while the saved config would record it."""
    if model is None:
        return None
    if isinstance(model, str):
        values["model"] = model
        return None
    model = model_object(model)
    for key in shaping_keys():
        if key in values:
            raise ConfigError(f"{key}={shown(values[key], 40)} shapes a model that pyro-vae builds "
                              f"from its name, but model= is an object ({type(model).__name__}), built "
                              f"already: drop {key}=, or pass a model name such as model='vae'")
    values["model"] = instance_name(model)
    return model


def prior_argument(prior: Any, values: dict[str, Any], model: Optional[nn.Module]) -> Optional[nn.Module]:
    """Record ``prior`` in the config ``values``; returns the object, if it is one. A model given
    as an object holds its own prior."""
    if prior is None:
        return None
    if model is not None:
        raise ConfigError(f"prior= is for a model built from its name; model= is an object "
                          f"({type(model).__name__}) that holds its own prior: drop prior=")
    if isinstance(prior, str):
        values["prior"] = prior
        return None
    values["prior"] = instance_name(prior_object(prior))
    return prior


def elbo_argument(elbo: Any, values: dict[str, Any]) -> Any:
    """Record ``elbo`` in the config ``values``; returns the object, if it is one. An object's
    particles are its own (recorded as ``num_particles`` where it says how many)."""
    if elbo is None:
        return None
    if isinstance(elbo, str):
        values["elbo"] = elbo
        return None
    elbo = elbo_object(elbo)
    for key in ("num_particles", "alpha"):
        if key in values:
            raise ConfigError(f"{key}= is set on the objective object itself ({type(elbo).__name__}"
                              f"({key}=...)) when elbo= is one: drop {key}=")
    particles = getattr(elbo, "num_particles", None)
    if isinstance(particles, int) and not isinstance(particles, bool) and particles >= 1:
        values["num_particles"] = particles
    values["elbo"] = instance_name(elbo)
    return elbo


def positive(name: str, value: Any, optional: bool = False) -> Optional[int]:
    """``value`` of parameter ``name`` as an int, if it is a whole number of at least 1 (None if
    ``optional`` and None); else a one-line ConfigError naming the parameter."""
    if optional and value is None:
        return None
    try:
        number = None if isinstance(value, bool) else operator.index(value)
    except TypeError:
        number = None
    if number is None or number < 1:
        raise ConfigError(f"{name}= must be a whole number of at least 1, got {shown(value, 40)}")
    return number
