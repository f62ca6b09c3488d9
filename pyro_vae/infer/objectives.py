"""Training objectives: a registry from ``elbo`` names to factories of Pyro ELBO objects.

A factory takes the config's objective section (:class:`~pyro_vae.config.ObjectiveSection`:
``num_particles``, ``alpha``, ...) and returns an object with Pyro's ELBO interface (``loss``
and ``loss_and_grads(model, guide, *args)``), so anything ``pyro.infer.SVI`` accepts works here.
Each entry also says what it supports (score-function guides, baselines, K-sample bounds), and
:func:`check_compatibility`, a rule of every config's validation, refuses every other combination
before any work is done, with a message that says what would work. New objectives register the
same way::

    @register_objective("my-bound", description="my K-sample bound", multi_sample=True,
                        sums_over_data=True)
    def _my_bound(objective):
        return MyBound(num_particles=objective.num_particles)
"""

from __future__ import annotations

from typing import Callable

import torch
from pyro.infer import ELBO, Trace_ELBO, TraceGraph_ELBO, TraceMeanField_ELBO

from pyro_vae.config import flag
from pyro_vae.core.choices import add_rule, publish
from pyro_vae.core.errors import ConfigError
from pyro_vae.core.options import option
from pyro_vae.core.registry import Registry
from pyro_vae.infer.discrete_rules import OWN_OBJECTIVE, check_antithetic_config, check_bernoulli_sites
from pyro_vae.infer.elbos import (
    ARM_ELBO,
    IWAE_ELBO,
    REBAR_ELBO,
    STL_ELBO,
    VIMCO_ELBO,
    DisARM_ELBO,
    DReG_ELBO,
    RenyiBound,
)
from pyro_vae.infer.elbos.enumerated import EnumeratedELBO, check_enumeration
from pyro_vae.infer.importance import check_particles
from pyro_vae.infer.relax import check_relaxation, relaxed_structure
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
    relaxation=False,  # trains the reparameterized sites of --relax concrete (a pathwise objective)
    # check_model(cfg, structure, model, x): refuses, at start-up, a model the objective cannot
    # train (beyond the rules of check_structure); None: nothing more to check.
    check_model=None,
)
publish("elbo", OBJECTIVES)

# Names users may look for that are refused on purpose, with the reason.
UNSUPPORTED = {
    "tail-adaptive": "Pyro's TraceTailAdaptive_ELBO returns inf from svi.step and cannot evaluate "
                     "a loss, so training could not be monitored; use elbo renyi with alpha A, or "
                     "iwae",
}


def register_objective(name: str, *, description: str = "", replace: bool = False,
                       **capabilities) -> Callable[[Callable], Callable]:
    """A decorator registering ``factory(objective) -> ELBO`` as ``--elbo name`` (``objective``:
    the config's objective section), with the capabilities of :data:`OBJECTIVES` it has (the
    rest keep their defaults)."""
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
    def factory(objective) -> ELBO:
        k = objective.num_particles
        return cls(num_particles=k, vectorize_particles=k > 1, max_plate_nesting=MAX_PLATE_NESTING)
    return factory


register_objective("trace", kl_warmup=True, sums_over_data=True, relaxation=True,
                   description="Monte Carlo ELBO, log p(x,z) - log q(z|x) at z ~ q (REINFORCE for "
                               "a score-function guide)")(_pyro_elbo(Trace_ELBO))
register_objective("tracegraph", baselines=True, kl_warmup=True, sums_over_data=True, relaxation=True,
                   description="the same, Rao-Blackwellized, with the baselines of score-function "
                               "sites")(_pyro_elbo(TraceGraph_ELBO))
register_objective("meanfield", score_function=False, kl_warmup=True, sums_over_data=True, relaxation=True,
                   description="KL(q || p) analytic where kl_divergence knows the pair (under "
                               "--relax, the discrete sites' KL); reparameterized guides only")(_pyro_elbo(TraceMeanField_ELBO))
register_objective("iwae", score_function=False, multi_sample=True, sums_over_data=True, relaxation=True,
                   description="the K-sample importance-weighted bound (Burda et al. 2016)")(
    lambda objective: IWAE_ELBO(num_particles=objective.num_particles))
register_objective("renyi", score_function=False, multi_sample=True, sums_over_data=True, relaxation=True,
                   description="the Renyi alpha bound (--alpha; 0 is iwae, 1 the ELBO)")(
    lambda objective: RenyiBound(alpha=objective.alpha, num_particles=objective.num_particles))
register_objective("dreg", score_function=False, multi_sample=True, sums_over_data=True, relaxation=True,
                   description="iwae with doubly reparameterized gradients (Tucker et al. 2019)")(
    lambda objective: DReG_ELBO(num_particles=objective.num_particles))
register_objective("stl", score_function=False, sums_over_data=True, relaxation=True,
                   description="the ELBO with sticking-the-landing gradients (Roeder et al. 2017)")(
    lambda objective: STL_ELBO(num_particles=objective.num_particles))
register_objective("vimco", multi_sample=True, sums_over_data=True,
                   description="the K-sample bound with VIMCO's leave-one-out control variates for "
                               "score-function sites (Mnih & Rezende 2016)")(
    lambda objective: VIMCO_ELBO(num_particles=objective.num_particles))
register_objective("arm", sums_over_data=True, description="the ELBO with ARM's antithetic gradients "
                   "for Bernoulli guides (Yin & Zhou 2019; --estimator arm)")(
    lambda objective: ARM_ELBO(num_particles=objective.num_particles))
register_objective("disarm", sums_over_data=True, description="the ELBO with DisARM's antithetic "
                   "gradients for Bernoulli guides (Dong et al. 2020; --estimator disarm)")(
    lambda objective: DisARM_ELBO(num_particles=objective.num_particles))
register_objective("rebar", sums_over_data=True, description="the ELBO with REBAR's gradient for a "
                   "one-layer Bernoulli guide: score function + Concrete control variate, tuned for "
                   "low variance (Tucker et al. 2017; --estimator rebar)")(
    lambda objective: REBAR_ELBO(num_particles=objective.num_particles))
register_objective("relax", sums_over_data=True, description="REBAR with a learned network added to its "
                   "control variate (Grathwohl et al. 2018; --estimator relax)")(
    lambda objective: REBAR_ELBO(num_particles=objective.num_particles))
register_objective("traceenum", kl_warmup=True, sums_over_data=True, check_model=check_enumeration,
                   description="Pyro's TraceEnum_ELBO: the guide's discrete sites summed exactly "
                               "(enumerated in parallel), continuous ones sampled")(
    lambda objective: EnumeratedELBO(num_particles=objective.num_particles))


@add_rule("objective")
def check_compatibility(cfg) -> None:
    """Refuse objective/estimator/option combinations that cannot work, saying what would: the
    objective's capabilities against the model section's estimator and baseline."""
    name, estimator, baseline, objective = cfg.objective.elbo, cfg.model.estimator, cfg.model.baseline, cfg.objective
    if name in UNSUPPORTED:
        raise ConfigError(f"{option('elbo', name)} is not offered: {UNSUPPORTED[name]}")
    check_antithetic_config(cfg)
    spec = OBJECTIVES.get(name).capabilities
    score_ok = having("score_function")
    if objective.relax != "none":  # the relaxed sites are reparameterized; the start-up probe judges the rest
        check_relaxation(cfg, spec["relaxation"], having("relaxation"))
    elif estimator == "score" and not spec["score_function"]:
        raise ConfigError(
            f"{option('elbo', name)} needs a reparameterized guide, but {option('estimator', 'score')} "
            f"makes z non-reparameterized. Use {option('estimator', 'reparam')}, or one of "
            f"{flag('elbo')} {', '.join(score_ok)} with {option('estimator', 'score')}.")
    if baseline != "none":
        if estimator != "score":
            raise ConfigError("baselines reduce the variance of score-function gradients only; "
                              f"add {option('estimator', 'score')}, or drop {flag('baseline')}")
        if not spec["baselines"]:
            with_baselines = having("baselines")
            raise ConfigError(f"{option('elbo', name)} ignores baselines (Pyro applies them only in "
                              f"TraceGraph_ELBO); use {flag('elbo')} {' or '.join(with_baselines)}")
    if spec["multi_sample"] and objective.num_particles < 2:
        raise ConfigError(f"{option('elbo', name)} is a K-sample bound: pass {flag('num_particles')} K "
                          "with K >= 2 (e.g. 5 or 50); with K = 1 it is the ELBO")
    if objective.kl_warmup and not spec["kl_warmup"]:
        with_warmup = having("kl_warmup")
        why = ("in a K-sample bound the latent terms sit inside a log-mean-exp, where scaling them "
               "is a different bound, not warm-up" if spec["multi_sample"] else
               "it does not weight its terms by Pyro's site scales")
        raise ConfigError(f"{flag('kl_warmup')} does not apply to {option('elbo', name)}: {why}; use "
                          f"{flag('elbo')} {' or '.join(with_warmup)}, or drop {flag('kl_warmup')}")
    _check_alpha(name, objective.alpha)


def _check_alpha(name: str, alpha) -> None:
    if (alpha is not None) != (name == "renyi"):
        raise ConfigError(f"{option('elbo', 'renyi')} needs {flag('alpha')} A (0 gives the IWAE bound, "
                          "1 the ELBO)" if name == "renyi" else
                          f"{flag('alpha')} applies to {option('elbo', 'renyi')} only")
    if alpha is not None and alpha < 0:
        raise ConfigError(f"{option('alpha', alpha)} < 0 gives an upper bound on log p(x), which "
                          "training must not maximize; use alpha in [0, 1]")
    if alpha is not None and alpha > 1:
        raise ConfigError(f"{option('alpha', alpha)} > 1 gives a bound looser than the ELBO; use alpha "
                          "in [0, 1] (0 is the IWAE bound, 1 the ELBO)")


def check_structure(cfg, structure: Structure) -> None:
    """Refuse an objective that is not sound for the model's latent structure, saying why."""
    name, model = cfg.objective.elbo, cfg.model.name
    score_sites = structure.score_function_sites
    if score_sites and not capability(name, "score_function"):
        score_ok = having("score_function")
        if any(s.family != "Bernoulli" for s in structure.latents):  # ARM and DisARM would refuse it
            score_ok = [n for n in score_ok if n not in OWN_OBJECTIVE]
        raise ConfigError(f"{option('elbo', name)} needs reparameterized guide sites, but model "
                          f"{model!r} samples {', '.join(score_sites)} without "
                          f"reparameterization; use {flag('elbo')} {' or '.join(score_ok)}")
    check_bernoulli_sites(cfg, structure)
    if name == "meanfield" and not structure.mean_field:
        dependent = next(s for s in structure.latents if s.depends_on)
        raise ConfigError(
            f"{option('elbo', 'meanfield')} is not sound for model {model!r}: TraceMeanField_ELBO "
            f"assumes a mean-field guide, but q({dependent.name} | ...) depends on the sampled "
            f"{', '.join(sorted(dependent.depends_on))}, and its analytic KL terms would treat "
            f"them as independent (a biased gradient); use {flag('elbo')} trace (the same ELBO with "
            "Monte Carlo KL terms), stl, iwae or dreg")


def build_objective(cfg) -> ELBO:
    """The objective of the config's objective section, checked against its model section
    (:func:`check_compatibility`: a config built without validation is refused here too)."""
    check_compatibility(cfg)
    return OBJECTIVES.get(cfg.objective.elbo).factory(cfg.objective)


def model_structure(model, cfg, x: torch.Tensor) -> Structure:
    """The model's latent sites, checked against the site rules, run with two particles drawn at
    once (:func:`~pyro_vae.infer.importance.check_particles`: what the end-of-epoch test ELBO
    does), and refused where the objective cannot train them (:func:`check_structure`: under
    ``relax``, the relaxed model's sites). ``x``: a few data points."""
    structure = probe(model.model, model.guide, x, cfg.model.name)
    check_particles(model.model, model.guide, x, cfg.model.name)
    check_structure(cfg, relaxed_structure(model, cfg, x) if cfg.objective.relax != "none" else structure)
    check = capability(cfg.objective.elbo, "check_model")
    if check is not None:
        check(cfg, structure, model, x)
    return structure
