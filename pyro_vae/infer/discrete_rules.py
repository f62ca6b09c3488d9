"""What the antithetic estimators (``estimator`` ``arm`` / ``disarm``) accept, refused in one line
before any training work: checked by :func:`pyro_vae.infer.objectives.check_compatibility` (the
config) and :func:`~pyro_vae.infer.objectives.check_structure` (the model's sites at start-up).

ARM and DisARM are both an estimator and an objective: ``estimator disarm`` trains with
``elbo disarm`` (its default objective, :func:`pyro_vae.config.default_objective`), and any other
objective with it is refused, since that objective would estimate the gradient its own way.
They apply to guides whose latent sites are all Bernoulli (``model sbn``); a Normal guide's
sites, or a categorical's, are refused with the reason.
"""

from __future__ import annotations

from pyro_vae.config import flag
from pyro_vae.core.errors import ConfigError
from pyro_vae.core.options import option
from pyro_vae.models.sites import Structure

ANTITHETIC = ("arm", "disarm")


def check_antithetic_config(cfg) -> None:
    """The estimator and the objective agree, and nothing is asked that they would ignore."""
    name, estimator, baseline = cfg.objective.elbo, cfg.model.estimator, cfg.model.baseline
    if estimator in ANTITHETIC and name != estimator:
        raise ConfigError(f"{option('estimator', estimator)} is its own objective ({option('elbo', estimator)}, "
                          f"the default with it), and {option('elbo', name)} would estimate the gradient "
                          f"its own way: drop {flag('elbo')}, or use {option('estimator', 'score')} with it")
    if name in ANTITHETIC and estimator == "reparam":
        raise ConfigError(f"{option('elbo', name)} estimates the gradient of Bernoulli sites, which "
                          f"cannot be reparameterized: use {option('estimator', name)} (it implies "
                          f"{option('elbo', name)})")
    if name in ANTITHETIC and baseline != "none":
        raise ConfigError(f"{option('elbo', name)} needs no baseline (its antithetic pair is its own "
                          f"control variate): drop {flag('baseline')}")


def check_bernoulli_sites(cfg, structure: Structure) -> None:
    """Every guide latent site is Bernoulli where the objective is ARM or DisARM."""
    name = cfg.objective.elbo
    if name not in ANTITHETIC:
        return
    others = [s for s in structure.latents if s.family != "Bernoulli"]
    if others:
        estimator = cfg.model.estimator
        asked = option("estimator", estimator) if estimator in ANTITHETIC else option("elbo", name)
        site = others[0]
        raise ConfigError(f"{asked} is for Bernoulli latent sites (e.g. {option('model', 'sbn')}), but "
                          f"model {cfg.model.name!r} samples {site.name!r} from a "
                          f"{site.family or 'non-Bernoulli distribution'} in its guide: use "
                          f"{option('estimator', 'reparam')} or {option('estimator', 'score')} there")
