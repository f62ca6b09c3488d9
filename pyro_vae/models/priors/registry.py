"""The prior registry (``prior`` names -> builders), building a prior a config names (a
registered name or a user's import path), and the checks every prior passes before training."""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn
from torch.distributions import kl_divergence

from pyro_vae.config import PriorSection
from pyro_vae.core.choices import add_rule, publish
from pyro_vae.core.errors import ConfigError
from pyro_vae.core.imports import import_path
from pyro_vae.core.registry import Registry

# A prior's builder takes ``(prior, latent_dim, x_dim)``: the config's prior section (for its own
# knobs, such as ``prior.components``), the size of the top latent layer, and the pixels per image.
PRIORS = Registry(
    "prior",
    options=False,  # reads the section's options (prior_options; else they are refused, as unread)
    reads=(),  # the section's knobs it reads (flat keys); set under another prior, they are refused
    min_latent=1,  # the smallest top latent layer it can be built for
)
publish("prior", PRIORS)


def register_prior(name: str, *, description: str = "", replace: bool = False,
                   **capabilities) -> Callable[[Callable], Callable]:
    """A decorator registering ``builder(prior, latent_dim, x_dim) -> nn.Module`` as
    ``--prior name`` (``prior``: the config's prior section): a prior of a new file, usable by
    name like the shipped ones. ``capabilities``: those of :data:`PRIORS`."""
    return PRIORS.register(name, description=description, replace=replace, **capabilities)


def import_prior(path: str) -> type:
    """``"package.module:ClassName"`` -> the class, or a ConfigError that says what failed."""
    return import_path(path, "prior", PRIORS.names())


@add_rule("prior")
def _importable(cfg) -> None:
    """A user prior's import path imports: checked with the config, before any data is loaded."""
    if cfg.prior.name not in PRIORS:
        import_prior(cfg.prior.name)


def build_prior(prior: PriorSection, latent_dim: int, x_dim: int = 784) -> nn.Module:
    """The prior module that a config's prior section (:class:`~pyro_vae.config.PriorSection`)
    names (a registered name or an import path), over a top latent layer of ``latent_dim``.
    An unknown name is refused with the registered ones."""
    if prior.name in PRIORS:
        return PRIORS.get(prior.name).factory(prior, latent_dim, x_dim)
    cls = import_prior(prior.name)
    try:
        module = cls(latent_dim=latent_dim, **(prior.options or {}))
    except Exception as e:  # the user's constructor: any error is a configuration problem
        raise ConfigError(f"prior {prior.name!r} could not be built with latent_dim and "
                          f"prior_options {prior.options}: {e}") from None
    if not isinstance(module, nn.Module):
        raise ConfigError(f"prior {prior.name!r} must be a torch.nn.Module, got {type(module).__name__}")
    return module


def check_prior(prior: nn.Module, latent_dim: int, name: str) -> None:
    """Refuse a prior that fails or returns the wrong thing, before any training."""
    try:
        d = prior()
    except Exception as e:
        raise ConfigError(f"prior {name!r}: forward() failed ({type(e).__name__}: {e}); it must take "
                          "no arguments and return a distribution over z") from None
    if not isinstance(d, torch.distributions.Distribution):
        raise ConfigError(f"prior {name!r}: forward() returned {type(d).__name__}, not a distribution")
    if tuple(d.event_shape) != (latent_dim,) or tuple(d.batch_shape) != ():
        raise ConfigError(f"prior {name!r} returned a distribution with batch_shape "
                          f"{tuple(d.batch_shape)} and event_shape {tuple(d.event_shape)}; it must "
                          f"be batch_shape () and event_shape ({latent_dim},) (use .to_event(1))")


def kl_description(q: Any, p: Any) -> str:
    """How TraceMeanField_ELBO treats KL(q || p) for a guide site's q and the model site's p:
    analytic where ``kl_divergence`` is registered for the pair, else a Monte Carlo estimate
    (silently, in Pyro)."""
    try:
        kl_divergence(q, p)
        return f"analytic (kl_divergence knows {_describe(q)} vs {_describe(p)})"
    except NotImplementedError:
        return f"Monte Carlo (no kl_divergence registered for {_describe(q)} vs {_describe(p)})"


def _describe(d) -> str:
    base = getattr(d, "base_dist", None)
    return f"{type(d).__name__}({type(base).__name__})" if base is not None else type(d).__name__
