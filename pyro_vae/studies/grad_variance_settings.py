"""What the gradient-variance diagnostic compares, and which settings it reads.

The estimators it measures (:data:`ESTIMATOR_SPECS`, each a set of config overrides) and the
config keys it reads at a run's checkpoint or at initialisation: every other setting given to
it is refused in one line (:func:`check_arguments`) instead of being silently ignored, since a
diagnostic that ignored ``--lr`` would report numbers the user did not ask for. Apart from the
measurement (:mod:`.gradient_moments`) so that the command's argument checks need no model.
"""

from __future__ import annotations

from typing import Any, Optional

from pyro_vae.config import AVERAGING_BASELINES, Config, replaced
from pyro_vae.core.errors import ConfigError
from pyro_vae.core.options import option

# Estimators compared by default: name -> config overrides.
ESTIMATOR_SPECS: dict[str, dict[str, Any]] = {
    "reparam": {"estimator": "reparam", "elbo": "trace"},
    "meanfield": {"estimator": "reparam", "elbo": "meanfield"},
    "stl": {"estimator": "reparam", "elbo": "stl"},
    "score": {"estimator": "score", "elbo": "tracegraph", "baseline": "none"},
    "score+avg": {"estimator": "score", "elbo": "tracegraph", "baseline": "avg"},
    "score+nn": {"estimator": "score", "elbo": "tracegraph", "baseline": "nn"},
    "score+nn-only": {"estimator": "score", "elbo": "tracegraph", "baseline": "nn-only"},
    "iwae": {"estimator": "reparam", "elbo": "iwae", "multi_sample": True},
    "dreg": {"estimator": "reparam", "elbo": "dreg", "multi_sample": True},
    # for guides that cannot be reparameterized (Bernoulli sites: arm and disarm only; the
    # relaxation: discrete sites, at the run's temperature or the default 2/3)
    "vimco": {"estimator": "score", "elbo": "vimco", "multi_sample": True},
    "arm": {"estimator": "arm", "elbo": "arm"},
    "disarm": {"estimator": "disarm", "elbo": "disarm"},
    # one Bernoulli layer; the control variate as the run trained it, else as it starts (eta 1,
    # temperature 0.5, RELAX's network at zero: REBAR)
    "rebar": {"estimator": "rebar", "elbo": "rebar"},
    "relax": {"estimator": "relax", "elbo": "relax"},
    "concrete": {"estimator": "score", "elbo": "trace", "relax": "concrete"},
}
RELAXATION_KEYS = ("relax", "temperature", "temperature_anneal", "temperature_min", "straight_through")
GROUPS = ("encoder", "decoder")
MULTI_SAMPLE = tuple(name for name, spec in ESTIMATOR_SPECS.items() if spec.get("multi_sample"))
WITH_BASELINE = tuple(name for name, spec in ESTIMATOR_SPECS.items() if spec.get("baseline", "none") != "none")
# those whose baseline keeps a decaying average (the others do not read baseline_beta)
WITH_AVERAGE = tuple(name for name in WITH_BASELINE
                     if ESTIMATOR_SPECS[name]["baseline"] in AVERAGING_BASELINES)
DEFAULT_PARTICLES, DEFAULT_BASELINE_WARMUP = 5, 100

# Config keys the diagnostic reads. At a run's checkpoint: where and how to measure (the model is
# the run's own, from its checkpoint). At initialisation (run_dir None), also what to build.
# Every other key given is refused (check_arguments): the estimator keys are what it varies
# (--estimators), and training keys are never read.
RUN_KEYS = ("batch_size", "seed", "device", "data_dir", "out", "num_particles", "baseline_beta")
INIT_KEYS = (*RUN_KEYS, "dataset", "model", "model_options", "arch", "hidden", "upper_hidden",
             "activation", "latent_dim", "logvar_range", "prior", "prior_components", "vamp_init",
             "flow", "flow_depth", "flow_hidden", "prior_df", "prior_options")
VARIED_KEYS = ("estimator", "elbo", "baseline", "alpha")


def check_arguments(at_run: bool, overrides: dict[str, Any], estimators: list[str],
                    config_file: Optional[str] = None,
                    baseline_warmup: Optional[int] = None) -> None:
    """Refuse, in one line, every setting given to the diagnostic that it would not read: the
    keys of ``overrides`` outside RUN_KEYS (at a run, ``at_run``) or INIT_KEYS, a config file at
    a run, K (``num_particles``) without a multi-sample estimator or below 2, and a baseline
    setting (``baseline_beta``, ``baseline_warmup``) without an estimator that has a baseline."""
    config, init = option("config", python="config_file"), option("init", python="initialisation (run_dir=None)")
    estimators_option = option("estimators")
    if at_run and config_file is not None:
        raise ConfigError(f"{config} is for {init}: at a run's checkpoint the model is the run's own "
                          f"(its config.yaml); drop {config}")
    for key in overrides:
        if key in (RUN_KEYS if at_run else INIT_KEYS):
            continue
        if key in VARIED_KEYS:
            why = f"it measures each estimator of {estimators_option} in turn (choose them there)"
        elif at_run and key in INIT_KEYS:
            why = f"it builds the model from it at {init}, but at a run's checkpoint the model is the run's own"
        else:
            why = "it measures gradients on one minibatch of training images and trains nothing"
        raise ConfigError(f"grad_variance does not read {option(key)}: {why}; drop it")
    if "num_particles" in overrides:
        if not set(estimators) & set(MULTI_SAMPLE):
            names = f"{', '.join(MULTI_SAMPLE[:-1])} and {MULTI_SAMPLE[-1]}"
            raise ConfigError(f"{option('num_particles')} is the K of {names}, and {estimators_option} "
                              "includes none of them; drop it or add one of them")
        if overrides["num_particles"] < 2:
            raise ConfigError(f"{option('num_particles')} must be at least 2 (the K of a multi-sample bound), "
                              f"got {overrides['num_particles']}")
    for key, given, kind, readers in (
            ("baseline_beta", "baseline_beta" in overrides, "a decaying-average baseline", WITH_AVERAGE),
            ("baseline_warmup", baseline_warmup is not None, "a baseline", WITH_BASELINE)):
        if given and not set(estimators) & set(readers):
            raise ConfigError(f"{option(key)} is for the estimators with {kind} ({', '.join(readers)}), "
                              f"and {estimators_option} includes none; drop it")


def spec_config(base: Config, name: str, num_particles: int,
                baseline_beta: Optional[float] = None) -> Config:
    """The run's config with estimator ``name`` swapped in (and ``baseline_beta``, if given, for
    an estimator with a baseline; the default decay for one without, which does not read it)."""
    overrides = dict(ESTIMATOR_SPECS[name])
    multi_sample = overrides.pop("multi_sample", False)
    overrides.update(num_particles=num_particles if multi_sample else 1, alpha=None)
    overrides.setdefault("baseline", "none")
    if name in WITH_AVERAGE and baseline_beta is not None:
        overrides["baseline_beta"] = baseline_beta
    if "relax" not in overrides:  # a run trained relaxed, measured with another estimator
        defaults = Config()
        overrides.update({key: defaults.value(key) for key in RELAXATION_KEYS})
    else:  # measured at the temperature the steps start from; no schedule over one minibatch
        overrides.update(temperature_anneal=0.0, temperature_min=Config().value("temperature_min"))
    return replaced(base, **overrides)
