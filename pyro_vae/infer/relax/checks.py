"""What ``relax`` refuses, before any training work: at validation, the objectives, estimators
and options it cannot serve and the relaxation keys given without it; at start-up, a model with no
discrete site to relax, or with a discrete site that has no Concrete relaxation."""

from __future__ import annotations

from typing import Sequence

import torch

from pyro_vae.config import flag
from pyro_vae.config.values import shown
from pyro_vae.core.choices import add_unread
from pyro_vae.core.errors import ConfigError
from pyro_vae.core.options import option
from pyro_vae.infer.relax.handler import RELAXATIONS, relaxation_of
from pyro_vae.models.sites import Structure, base_distribution, latent_sites, probe, trace_once

# Keys read only under a relaxation (and ``temperature_min`` only with annealing).
RELAX_KEYS = ("temperature", "temperature_anneal", "temperature_min", "straight_through", "relax_shift")
# Objectives that cannot serve ``concrete-mass``, and why.
MASS_REFUSED = {
    "meanfield": "which meanfield replaces by the discrete KL in closed form (that is --relax concrete "
                 "under meanfield)",
    **{name: f"not a density of the relaxed sample, so {name}'s dropped score term no longer has mean zero"
       for name in ("dreg", "stl")},
}
# Estimators that leave discrete sites to the objective (reparam: continuous sites only).
PLAIN_ESTIMATORS = ("reparam", "score")


def check_relaxation(cfg, applies: bool, objectives: Sequence[str]) -> None:
    """Refuse ``relax`` where the objective (``applies``: its ``relaxation`` capability), the
    estimator or a baseline cannot serve it; ``objectives``: those that can."""
    relax, name = cfg.objective.relax, cfg.objective.elbo
    if cfg.model.estimator not in PLAIN_ESTIMATORS:
        raise ConfigError(f"{option('estimator', cfg.model.estimator)} estimates the gradient of discrete "
                          f"sites, which {option('relax', relax)} replaces by a reparameterized "
                          f"relaxation; use one or the other")
    if not applies:
        raise ConfigError(f"{option('relax', relax)} makes the discrete sites reparameterized, which "
                          f"{option('elbo', name)} does not train; use {flag('elbo')} "
                          f"{' or '.join(objectives)}, or drop {flag('relax')}")
    if relax == "concrete-mass" and name in MASS_REFUSED:
        raise ConfigError(f"{option('relax', relax)} scores the latents by their discrete log-mass, "
                          f"{MASS_REFUSED[name]}; use {flag('elbo')} trace, tracegraph, iwae or renyi, "
                          f"or {option('relax', 'concrete')}")
    if cfg.model.baseline != "none":
        raise ConfigError(f"{flag('baseline')} reduces the variance of score-function gradients, and "
                          f"{option('relax', relax)} makes the discrete sites reparameterized: drop "
                          f"{flag('baseline')}")


def _unread(cfg, defaults) -> dict[str, str]:
    """The relaxation's keys set where nothing reads them (see pyro_vae.config.ignored_settings)."""
    objective, out = cfg.objective, {}
    unread = RELAX_KEYS if objective.relax == "none" else \
        ("temperature_min",) if not objective.temperature_anneal else ()
    decider, needed = ("relax", option("relax", "concrete")) if objective.relax == "none" else \
        ("temperature_anneal", f"{flag('temperature_anneal')} R > 0")
    for key in unread:
        value = cfg.value(key)
        if value != defaults.value(key):
            out[key] = (f"{flag(key)} applies only with {needed}, and {decider} is "
                        f"{shown(cfg.value(decider))}: {flag(key)} {shown(value)} would be ignored "
                        "while config.yaml records it; drop it")
    return out


add_unread("relax", _unread)


def relaxed_structure(model, cfg, x: torch.Tensor) -> Structure:
    """The structure of ``model`` under the relaxation (its discrete sites now reparameterized),
    for :func:`~pyro_vae.infer.objectives.check_structure`. Refuses a model without discrete
    latent sites, or with one that has no Concrete relaxation. ``x``: a few data points (the
    model has passed the plain probe on them)."""
    relax, name = option("relax", cfg.objective.relax), cfg.model.name
    model_trace, guide_trace = trace_once(model.model, model.guide, x[:2])
    discrete = []
    for program, trace in (("guide", guide_trace), ("model", model_trace)):
        for site in latent_sites(trace):
            fn = site["fn"]
            if not fn.support.is_discrete:
                continue
            family = base_distribution(fn)
            if isinstance(family, torch.distributions.Categorical):
                raise ConfigError(
                    f"{relax} cannot relax site {site['name']!r} of model {name!r}: its {program} "
                    "samples a Categorical index (0..C-1), and the relaxation of a category is a "
                    "point of the simplex, a one-hot-like vector the program does not take; sample "
                    f"it as a OneHotCategorical, or train without {flag('relax')}")
            if not isinstance(family, tuple(RELAXATIONS)):
                raise ConfigError(f"{relax} cannot relax site {site['name']!r} of model {name!r}: its "
                                  f"{program} samples a {type(family).__name__}, and only Bernoulli "
                                  f"and OneHotCategorical sites have a Concrete relaxation; train "
                                  f"without {flag('relax')}")
            discrete.append(site["name"])
    if not discrete:
        continuous = ", ".join(s["name"] for s in latent_sites(guide_trace))
        raise ConfigError(f"{relax} relaxes discrete latent sites, and model {name!r} has none (its "
                          f"latent sites {continuous} are continuous): drop {flag('relax')}")
    relaxation = relaxation_of(cfg.objective, torch.tensor(cfg.objective.temperature, device=x.device))
    return probe(relaxation(model.model), relaxation(model.guide), x, name)
