"""What the estimators for Bernoulli guides (``estimator`` ``arm`` / ``disarm`` / ``rebar`` /
``relax``) accept, refused in one line before any training work: checked by
:func:`pyro_vae.infer.objectives.check_compatibility` (the config) and
:func:`~pyro_vae.infer.objectives.check_structure` (the model's sites at start-up).

Each is both an estimator and an objective: ``estimator disarm`` trains with ``elbo disarm`` (its
default objective, :func:`pyro_vae.config.default_objective`), and any other objective with it is
refused, since that objective would estimate the gradient its own way. They apply to guides
whose latent sites are all Bernoulli (``model sbn``); a Normal guide's sites, or a categorical's,
are refused with the reason. REBAR and RELAX also need one Bernoulli layer whose site carries the
model's control variate (``sbn`` with one layer builds it), and one sample per image.
"""

from __future__ import annotations

from pyro_vae.config import flag
from pyro_vae.core.errors import ConfigError
from pyro_vae.core.options import option
from pyro_vae.models.control_variates import CONTROLLED
from pyro_vae.models.sites import Structure

ANTITHETIC = ("arm", "disarm")
OWN_OBJECTIVE = ANTITHETIC + CONTROLLED


def check_antithetic_config(cfg) -> None:
    """The estimator and the objective agree, and nothing is asked that they would ignore."""
    name, estimator, baseline = cfg.objective.elbo, cfg.model.estimator, cfg.model.baseline
    if estimator in OWN_OBJECTIVE and name != estimator:
        raise ConfigError(f"{option('estimator', estimator)} is its own objective ({option('elbo', estimator)}, "
                          f"the default with it), and {option('elbo', name)} would estimate the gradient "
                          f"its own way: drop {flag('elbo')}, or use {option('estimator', 'score')} with it")
    if name in ANTITHETIC and estimator == "reparam":
        raise ConfigError(f"{option('elbo', name)} estimates the gradient of Bernoulli sites, which "
                          f"cannot be reparameterized: use {option('estimator', name)} (it implies "
                          f"{option('elbo', name)})")
    if name in CONTROLLED and estimator != name:
        raise ConfigError(f"{option('elbo', name)} trains the control variate that "
                          f"{option('estimator', name)} builds into the model: use {option('estimator', name)} "
                          f"(it implies {option('elbo', name)})")
    if name in OWN_OBJECTIVE and baseline != "none":
        raise ConfigError(f"{option('elbo', name)} needs no baseline (it has its own control variate): "
                          f"drop {flag('baseline')}")
    if name in CONTROLLED and cfg.objective.num_particles != 1:
        raise ConfigError(f"{option('elbo', name)} draws one sample per image: drop {flag('num_particles')} "
                          f"(or use {option('estimator', 'disarm')}, which averages K antithetic pairs)")


def check_bernoulli_sites(cfg, structure: Structure) -> None:
    """Every guide latent site is Bernoulli where the objective is ARM, DisARM, REBAR or RELAX;
    REBAR and RELAX: one site, carrying a control variate."""
    name = cfg.objective.elbo
    if name not in OWN_OBJECTIVE:
        return
    others = [s for s in structure.latents if s.family != "Bernoulli"]
    if others:
        estimator = cfg.model.estimator
        asked = option("estimator", estimator) if estimator in OWN_OBJECTIVE else option("elbo", name)
        site = others[0]
        raise ConfigError(f"{asked} is for Bernoulli latent sites (e.g. {option('model', 'sbn')}), but "
                          f"model {cfg.model.name!r} samples {site.name!r} from a "
                          f"{site.family or 'non-Bernoulli distribution'} in its guide: use "
                          f"{option('estimator', 'reparam')} or {option('estimator', 'score')} there")
    if name in CONTROLLED:
        if len(structure.latents) != 1:
            raise ConfigError(f"{option('estimator', name)} here takes one layer of Bernoulli latents, and "
                              f"model {cfg.model.name!r} has {len(structure.latents)} "
                              f"({', '.join(s.name for s in structure.latents)}): use one "
                              f"{flag('latent_dim')}, or {option('estimator', 'disarm')} for several layers")
        if not structure.latents[0].control_variate:
            raise ConfigError(f"{option('estimator', name)} needs a control variate in the guide's site "
                              f"{structure.latents[0].name!r}: pass infer=control_variate_infer(module, x) "
                              "with a pyro_vae.models.control_variates.RelaxControlVariate, as model sbn does")
