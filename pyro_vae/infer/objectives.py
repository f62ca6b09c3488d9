"""Training objectives: a registry from ``--elbo`` names to factories of Pyro ELBO objects.

A factory takes the run's :class:`~pyro_vae.config.Config` and returns an object with Pyro's ELBO
interface (``loss`` and ``loss_and_grads(model, guide, *args)``), so anything ``pyro.infer.SVI``
accepts works here. Each entry also says what it supports (score-function guides, baselines,
K-sample bounds), and :func:`check_compatibility` refuses every other combination before
any work is done, with a message that says what would work. New objectives register the same
way::

    @register_objective("my-bound", description="my K-sample bound", multi_sample=True,
                        sums_over_data=True)
    def _my_bound(cfg):
        return MyBound(num_particles=cfg.num_particles)
"""

from __future__ import annotations

from typing import Callable

import torch
from pyro.infer import ELBO, Trace_ELBO, TraceGraph_ELBO, TraceMeanField_ELBO

from pyro_vae.core.errors import ConfigError
from pyro_vae.core.registry import Registry
from pyro_vae.infer.elbos import IWAE_ELBO, STL_ELBO, DReG_ELBO, RenyiBound
from pyro_vae.models.sites import MAX_PLATE_NESTING, Structure, probe

# What an objective can do; check_compatibility refuses every combination it cannot.
OBJECTIVES = Registry(
    "elbo",
    score_function=True,  # accepts a guide whose z is not reparameterized
    baselines=False,  # honours the baselines of score-function sites
    multi_sample=False,  # a K-sample bound: needs num_particles >= 2
    kl_warmup=False,  # a sum of site terms, so --kl-warmup can scale the latent ones
    # The loss is a sum of per-data-point terms, so the ranks of a torchrun job can each take a
    # share of the batch and sum their gradients (pyro_vae.training.data_parallel). False for a bound
    # taken over the whole batch at once (Pyro's RenyiELBO) or anything else that couples points.
    sums_over_data=False,
)

# Names users may look for that are refused on purpose, with the reason.
UNSUPPORTED = {
    "tail-adaptive": "Pyro's TraceTailAdaptive_ELBO returns inf from svi.step and cannot evaluate "
                     "a loss, so training could not be monitored; use --elbo renyi --alpha A or "
                     "--elbo iwae",
}


def register_objective(name: str, *, description: str = "", replace: bool = False,
                       **capabilities) -> Callable[[Callable], Callable]:
    """A decorator registering ``factory(cfg) -> ELBO`` as ``--elbo name``, with the
    capabilities of :data:`OBJECTIVES` it has (the rest keep their defaults)."""
    return OBJECTIVES.register(name, description=description, replace=replace, **capabilities)


def capability(name: str, key: str):
    """The value of capability ``key`` of objective ``name``."""
    return OBJECTIVES.get(name).capabilities[key]


def having(key: str) -> list[str]:
    """The objectives that have capability ``key``, in order."""
    return [n for n in OBJECTIVES if capability(n, key)]


def _pyro_elbo(cls):
    """A factory for one of Pyro's own ELBOs, with vectorized particles when K > 1. (Compiling is
    not the objective's business: :mod:`pyro_vae.infer.lowering` compiles any of them.)"""
    def factory(cfg) -> ELBO:
        k = cfg.num_particles
        return cls(num_particles=k, vectorize_particles=k > 1, max_plate_nesting=MAX_PLATE_NESTING)
    return factory


register_objective("trace", kl_warmup=True, sums_over_data=True,
                   description="Monte Carlo ELBO, log p(x,z) - log q(z|x) at z ~ q (REINFORCE for "
                               "a score-function guide)")(_pyro_elbo(Trace_ELBO))
register_objective("tracegraph", baselines=True, kl_warmup=True, sums_over_data=True,
                   description="the same, Rao-Blackwellized, with the baselines of score-function "
                               "sites")(_pyro_elbo(TraceGraph_ELBO))
register_objective("meanfield", score_function=False, kl_warmup=True, sums_over_data=True,
                   description="KL(q || p) analytic where kl_divergence knows the pair; "
                               "reparameterized guides only")(_pyro_elbo(TraceMeanField_ELBO))
register_objective("iwae", score_function=False, multi_sample=True, sums_over_data=True,
                   description="the K-sample importance-weighted bound (Burda et al. 2016)")(
    lambda cfg: IWAE_ELBO(num_particles=cfg.num_particles))
register_objective("renyi", score_function=False, multi_sample=True, sums_over_data=True,
                   description="the Renyi alpha bound (--alpha; 0 is iwae, 1 the ELBO)")(
    lambda cfg: RenyiBound(alpha=cfg.alpha, num_particles=cfg.num_particles))
register_objective("dreg", score_function=False, multi_sample=True, sums_over_data=True,
                   description="iwae with doubly reparameterized gradients (Tucker et al. 2019)")(
    lambda cfg: DReG_ELBO(num_particles=cfg.num_particles))
register_objective("stl", score_function=False, sums_over_data=True,
                   description="the ELBO with sticking-the-landing gradients (Roeder et al. 2017)")(
    lambda cfg: STL_ELBO(num_particles=cfg.num_particles))


def default_objective(estimator: str) -> str:
    """What ``--elbo`` means when not given: Rao-Blackwellized TraceGraph_ELBO for a score-function
    guide (the only one of Pyro's objectives that applies baselines), Trace_ELBO otherwise."""
    return "tracegraph" if estimator == "score" else "trace"


def check_compatibility(cfg) -> None:
    """Refuse objective/estimator/option combinations that cannot work, saying what would."""
    name = cfg.elbo
    if name in UNSUPPORTED:
        raise ConfigError(f"--elbo {name} is not offered: {UNSUPPORTED[name]}")
    spec = OBJECTIVES.get(name).capabilities
    score_ok = having("score_function")
    if cfg.estimator == "score" and not spec["score_function"]:
        raise ConfigError(
            f"--elbo {name} needs a reparameterized guide, but --estimator score makes z "
            f"non-reparameterized. Use --estimator reparam, or one of --elbo {', '.join(score_ok)} "
            "with --estimator score.")
    if cfg.baseline != "none":
        if cfg.estimator != "score":
            raise ConfigError("baselines reduce the variance of score-function gradients only; "
                              "add --estimator score, or drop --baseline")
        if not spec["baselines"]:
            with_baselines = having("baselines")
            raise ConfigError(f"--elbo {name} ignores baselines (Pyro applies them only in "
                              f"TraceGraph_ELBO); use --elbo {' or '.join(with_baselines)}")
    if spec["multi_sample"] and cfg.num_particles < 2:
        raise ConfigError(f"--elbo {name} is a K-sample bound: pass --num-particles K with K >= 2 "
                          "(e.g. 5 or 50); with K = 1 it is the ELBO")
    if cfg.kl_warmup and not spec["kl_warmup"]:
        with_warmup = having("kl_warmup")
        why = ("in a K-sample bound the latent terms sit inside a log-mean-exp, where scaling them "
               "is a different bound, not warm-up" if spec["multi_sample"] else
               "it does not weight its terms by Pyro's site scales")
        raise ConfigError(f"--kl-warmup does not apply to --elbo {name}: {why}; use --elbo "
                          f"{' or '.join(with_warmup)}, or drop --kl-warmup")
    if (cfg.alpha is not None) != (name == "renyi"):
        raise ConfigError("--elbo renyi needs --alpha A (0 gives the IWAE bound, 1 the ELBO)"
                          if name == "renyi" else "--alpha applies to --elbo renyi only")
    if cfg.alpha is not None and cfg.alpha < 0:
        raise ConfigError(f"--alpha {cfg.alpha} < 0 gives an upper bound on log p(x), which "
                          "training must not maximize; use alpha in [0, 1]")
    if cfg.alpha is not None and cfg.alpha > 1:
        raise ConfigError(f"--alpha {cfg.alpha} > 1 gives a bound looser than the ELBO; use alpha "
                          "in [0, 1] (0 is the IWAE bound, 1 the ELBO)")


def check_structure(cfg, structure: Structure) -> None:
    """Refuse an objective that is not sound for the model's latent structure, saying why."""
    score_sites = structure.score_function_sites
    if score_sites and not capability(cfg.elbo, "score_function"):
        score_ok = having("score_function")
        raise ConfigError(f"--elbo {cfg.elbo} needs reparameterized guide sites, but model "
                          f"{cfg.model!r} samples {', '.join(score_sites)} without "
                          f"reparameterization; use --elbo {' or '.join(score_ok)}")
    if cfg.elbo == "meanfield" and not structure.mean_field:
        dependent = next(s for s in structure.latents if s.depends_on)
        raise ConfigError(
            f"--elbo meanfield is not sound for model {cfg.model!r}: TraceMeanField_ELBO assumes a "
            f"mean-field guide, but q({dependent.name} | ...) depends on the sampled "
            f"{', '.join(sorted(dependent.depends_on))}, and its analytic KL terms would treat "
            "them as independent (a biased gradient); use --elbo trace (the same ELBO with "
            "Monte Carlo KL terms), stl, iwae or dreg")


def build_objective(cfg) -> ELBO:
    check_compatibility(cfg)
    return OBJECTIVES.get(cfg.elbo).factory(cfg)


def model_structure(model, cfg, x: torch.Tensor) -> Structure:
    """The model's latent sites, checked against the site rules, and refused where the objective
    cannot train them (:func:`~pyro_vae.infer.objectives.check_structure`). ``x``: a few data points."""
    structure = probe(model.model, model.guide, x, cfg.model)
    check_structure(cfg, structure)
    return structure
