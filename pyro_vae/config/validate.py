"""Validating a config: each section's own rules, then the rules that need two sections or an
owner's knowledge, so that a typo or an impossible combination costs nothing (it is refused
before any data is loaded, in one line that names the key).

Rules that only a layer above the config can check (a user model's constructor, an objective
against the guide's estimator) are added by that layer to :mod:`pyro_vae.core.choices` and run
here; nothing here imports them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from pyro_vae.config.config import Config, coerce_overrides
from pyro_vae.config.files import load_yaml
from pyro_vae.config.sections import ModelSection, default_objective
from pyro_vae.config.values import flag, shown
from pyro_vae.core.choices import choices, rules, unread_rules
from pyro_vae.core.errors import ConfigError
from pyro_vae.core.workload import check_model_size

# Keys that only some values of another key read, where no registry says so: key -> (the key that
# decides, the values under which it is read). Registered parts declare what they read in their
# ``reads`` capability instead (see READ_BY): a prior's knobs, a schedule's scale.
# The baselines that keep a decaying average of the cost (in Pyro's param store, per batch position).
AVERAGING_BASELINES = ("avg", "nn")
USED_ONLY_WITH = {"baseline_beta": ("baseline", AVERAGING_BASELINES)}

# Keys whose registry's entries declare, in their ``reads`` capability, which other keys they read.
READ_BY = ("prior", "lr_schedule")


def used_only_with() -> dict[str, tuple[str, tuple[str, ...]]]:
    """key -> (the key that decides, the values under which it is read): :data:`USED_ONLY_WITH`
    and what the published registries of :data:`READ_BY` declare."""
    out = {}
    for decider in READ_BY:
        registry = choices(decider)
        for name in registry or ():
            for key in registry.get(name).capabilities["reads"]:
                out.setdefault(key, (decider, ()))
                out[key] = (decider, (*out[key][1], name))
    return {**out, **USED_ONLY_WITH}


def validate(cfg: Config) -> Config:
    """Check choices, ranges and combinations; return ``cfg`` with what the model family and
    the estimator decide filled in (``hidden``, ``elbo``, ...)."""
    if any(getattr(cfg.model, key) is None for key in ModelSection.COMMON_DEFAULTS):
        cfg = cfg.with_section(cfg.model.filled())  # made before pyro_vae.models was imported
    for section in cfg.sections():
        section.check()
    check_model_size(cfg)  # sizes typed with a few zeros too many fail here, not in an allocation
    _cross_section_rules(cfg)
    ignored = ignored_settings(cfg)
    if ignored:
        raise ConfigError(next(iter(ignored.values())))
    if cfg.objective.elbo is None:
        cfg = cfg.replace(elbo=default_objective(cfg.model.estimator, cfg.objective.relax))
    for check in rules():  # the owners' (a user model's constructor, the objective's needs)
        check(cfg)
    return cfg


def _cross_section_rules(cfg: Config) -> None:
    if cfg.optim.early_stopping is not None and not cfg.data.has_validation():
        raise ConfigError(f"early_stopping watches the validation ELBO, and {cfg.data.dataset} has "
                          f"no validation split: add {flag('valid_size')} N (e.g. 10000)")
    if cfg.data.labels is None:
        for key, value, default in (("aux_loss", cfg.objective.aux_loss, 0.0),
                                    ("labelled_batch_size", cfg.optim.labelled_batch_size, None)):
            if value != default:
                raise ConfigError(f"{flag(key)} weighs and batches labelled images, and there are none: "
                                  f"add {flag('labels')} N (labelled training images), or drop it")
    prior = cfg.prior.registered()
    if prior is not None and cfg.model.latent_dim and cfg.model.latent_dim[-1] < prior["min_latent"]:
        raise ConfigError(f"the {cfg.prior.name} prior needs a top latent layer of size >= "
                          f"{prior['min_latent']} (latent_dim)")


def ignored_settings(cfg: Config) -> dict[str, str]:
    """key -> a one-line message, for every key that is set (differs from its default) although
    nothing in ``cfg`` reads it: a prior's option under another prior (:func:`used_only_with`), a
    model-shaping key the model does not take (the rules its owner added).

    Such a key would be silently ignored while config.yaml records it, so the saved config would
    lie about the run: :func:`validate` refuses it. A key left at its default was not given and
    is never refused; :func:`~pyro_vae.config.saved_config` drops such keys from runs saved
    before this check (they never had an effect).
    """
    defaults = Config.from_flat(model=cfg.model.name)
    out = {}
    for key, (decider, values) in used_only_with().items():
        value, decided = cfg.value(key), cfg.value(decider)
        if value != defaults.value(key) and decided not in values:
            out[key] = (f"{flag(key)} applies only with {flag(decider)} {' or '.join(values)}, and "
                        f"{decider} is {shown(decided)}: {flag(key)} {shown(value)} would be "
                        "ignored while config.yaml records it; drop it")
    for unread in unread_rules():
        out.update(unread(cfg, defaults))
    return out


def replaced(cfg: Config, **changes: Any) -> Config:
    """``cfg`` with ``changes`` (flat keys), validated. Keys the changes leave unread (a mixture
    prior's ``prior_components`` once the prior becomes ``normal``, ``baseline_beta`` once the
    baseline is ``none``) go back to their defaults instead of being refused: the caller changed
    the setting that reads them, not them (see :func:`ignored_settings`)."""
    new = cfg.replace(**changes)
    defaults = Config.from_flat(model=new.model.name)
    stale = {key: defaults.value(key) for key in ignored_settings(new) if key not in changes}
    return validate(new.replace(**stale))


def merge_values(overrides: Optional[dict[str, Any]] = None, config_file: str | Path | None = None
                 ) -> dict[str, Any]:
    """The YAML file's values updated by ``overrides``, keys checked and values typed."""
    values = load_yaml(config_file) if config_file else {}
    values.update(coerce_overrides(overrides or {}))
    return values


def make_config(overrides: Optional[dict[str, Any]] = None, config_file: str | Path | None = None
                ) -> Config:
    """Defaults, then the YAML file, then ``overrides`` (flat keys, e.g. from the command line),
    validated."""
    return validate(Config.from_flat(merge_values(overrides, config_file)))
