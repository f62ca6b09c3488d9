"""The settings of the discrete families (``sbn``, ``categorical``) that a family's ``ignores``
cannot say alone, checked with every config (:mod:`pyro_vae.core.choices`), before any data is
loaded:

- ``estimator: reparam`` on a discrete family: a Bernoulli or categorical sample has no
  reparameterization (unless the objective relaxes the sites, which makes them continuous);
- ``sbn_mapping`` is read by ``sbn`` alone (no other family, no user model), and ``hidden`` by
  ``sbn`` only with the ``nonlinear`` mapping (the linear maps have no hidden layers).
"""

from __future__ import annotations

from pyro_vae.config import flag, shown
from pyro_vae.core.choices import add_rule, add_unread, choices
from pyro_vae.core.errors import ConfigError
from pyro_vae.core.options import option

SBN = "sbn"


def is_discrete_family(name: str) -> bool:
    """Whether ``name`` is a registered family whose latents are discrete."""
    families = choices("model")
    return bool(families and name in families and families.get(name).capabilities["discrete"])


def relaxed(cfg) -> bool:
    """Whether the objective trains the discrete sites through a continuous relaxation (the
    objective section's ``relax``, where that setting exists)."""
    return getattr(cfg.objective, "relax", None) not in (None, "none")


@add_rule("discrete_models")
def check_discrete_estimator(cfg) -> None:
    name = cfg.model.name
    if is_discrete_family(name) and cfg.model.estimator == "reparam" and not relaxed(cfg):
        kind = "Bernoulli" if name == SBN else "categorical"
        others = [e for e in choices("estimator") or ("score",) if e != "reparam"]
        raise ConfigError(f"{option('estimator', 'reparam')} cannot train {option('model', name)}: its "
                          f"latents are {kind}, and a discrete sample has no reparameterization; use "
                          f"{flag('estimator')} {' or '.join(others)} (score is its default)")


def unread_sbn_settings(cfg, defaults) -> dict[str, str]:
    """``sbn_mapping`` set for a model other than sbn; ``hidden`` set for the linear sbn."""
    out = {}
    name = cfg.model.name
    if name != SBN and cfg.model.sbn_mapping != defaults.model.sbn_mapping:
        out["sbn_mapping"] = (f"{flag('sbn_mapping')} is read by {option('model', SBN)} only, and the "
                              f"model is {shown(name)}; drop it")
    if name == SBN and cfg.model.sbn_mapping == "linear" and cfg.model.hidden != defaults.model.hidden:
        out["hidden"] = (f"{flag('hidden')} {shown(cfg.model.hidden)} is not read by "
                         f"{option('sbn_mapping', 'linear')}: its maps are affine, with no hidden "
                         f"layers; drop it, or add {option('sbn_mapping', 'nonlinear')}")
    return out


add_unread(SBN, unread_sbn_settings)


def prior_label(cfg) -> str:
    """The prior as a run's description names it: the prior key's name, or for a discrete family
    its own ("learned Bernoulli", "uniform categorical"), which the prior key does not choose."""
    name = cfg.model.name
    if is_discrete_family(name):
        return f"{cfg.model.discrete_prior} {'Bernoulli' if name == SBN else 'categorical'}"
    return cfg.prior.name
