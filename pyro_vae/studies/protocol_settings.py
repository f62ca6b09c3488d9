"""A protocol's settings: the published result a config stands beside (its ``reference``), the
protocol shortened in time (``epochs_scale``), and whether a run's saved settings are the
config's.

``epochs_scale`` F shrinks a protocol in time: epochs, the iwae schedule's stages
(``lr_schedule_scale``), the KL warm-up and the early-stopping patience are all multiplied by
F, and the run directory gets the suffix ``-xF`` so it is never confused with the full protocol.

A run is used for a config only if the settings saved in its checkpoint are the config's (up to
the keys a resume may change: :data:`MAY_DIFFER`); ``compare.py --sweep`` checks its runs the
same way. Apart from the reproduction's plan (:mod:`.reproduction_plan`) because these rules
are about one config and one run, not about choosing directories for a table of them.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from pyro_vae.config import KEYS, RESUME_OVERRIDABLE, Config, coerce_overrides
from pyro_vae.core.errors import CheckpointError, ConfigError
from pyro_vae.core.options import option
from pyro_vae.runs import RunDir, load_checkpoint

# The keys of a config's ``reference`` mapping and what each must be.
REFERENCE_FIELDS = {"paper": "a string", "table": "a string", "nll": "a finite number",
                    "train_elbo": "a finite number", "accuracy": "a number in [0, 1]",
                    "bits_per_dim": "a positive number", "epochs": "a whole number of at least 1"}

# Keys in which a run may differ from its config and still be its run (what a resume may change).
MAY_DIFFER = frozenset(RESUME_OVERRIDABLE) | {"resume", "out"}


def is_number(value: Any) -> bool:
    """An int or a float, not a bool (JSON's and YAML's numbers)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_count(value: Any, least: int = 0) -> bool:
    """A whole number (not a bool) of at least ``least``."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


def check_reference(reference: dict[str, Any], path: str | Path) -> dict[str, Any]:
    """``reference`` if each key is one of :data:`REFERENCE_FIELDS` with a value of its kind; a
    one-line ConfigError naming the key otherwise."""
    checks = {"paper": lambda v: isinstance(v, str), "table": lambda v: isinstance(v, str),
              "nll": lambda v: is_number(v) and math.isfinite(v),
              "train_elbo": lambda v: is_number(v) and math.isfinite(v),
              "accuracy": lambda v: is_number(v) and 0 <= v <= 1, "epochs": lambda v: is_count(v, 1),
              "bits_per_dim": lambda v: is_number(v) and 0 < v < math.inf}
    for key, value in reference.items():
        if key not in REFERENCE_FIELDS:
            raise ConfigError(f"unknown key {key!r} in the reference mapping of {path}; it may hold "
                              f"{', '.join(REFERENCE_FIELDS)}")
        if not checks[key](value):
            raise ConfigError(f"reference {key} in {path} must be {REFERENCE_FIELDS[key]}, got {value!r}")
    return reference


def check_scale(scale: float) -> float:
    """``scale`` if it is a positive finite number, else a one-line ConfigError."""
    if not (is_number(scale) and math.isfinite(scale) and scale > 0):
        raise ConfigError(f"{option('epochs_scale', python='scale')} must be a positive finite number, "
                          f"got {scale}")
    return scale


def scaled_settings(settings: dict[str, Any], scale: float) -> dict[str, Any]:
    """``settings`` with the protocol's length multiplied by ``scale`` (see the module doc)."""
    check_scale(scale)
    if scale == 1:
        return dict(settings)

    def scaled(key: str, default: float) -> float:
        value = (settings.get(key) or default) * scale
        if not math.isfinite(value):
            raise ConfigError(f"{option('epochs_scale', scale, python='scale')} makes {key} "
                              f"{settings.get(key) or default} infinite; choose a smaller scale")
        return value

    out = dict(settings)
    out["epochs"] = max(1, round(scaled("epochs", Config.default("epochs"))))
    out["lr_schedule_scale"] = scaled("lr_schedule_scale", Config.default("lr_schedule_scale"))
    if settings.get("kl_warmup"):
        out["kl_warmup"] = scaled("kl_warmup", 0)
    if settings.get("early_stopping"):
        out["early_stopping"] = max(1, round(scaled("early_stopping", 0)))
    return out


def settings_differences(saved: Any, expected: Config, source: str) -> list[str]:
    """The keys in which a checkpoint's saved config ``saved`` (read as data: nothing is imported)
    differs from ``expected``, as "key SAVED there, EXPECTED in the config", leaving out
    :data:`MAY_DIFFER`. Shared by reproduce and ``compare.py --sweep``."""
    if not isinstance(saved, dict):
        raise CheckpointError(f"{source} holds no config mapping")
    saved = Config.from_flat(**coerce_overrides(saved, where=source))
    return [f"{key} {saved.value(key)!r} there, {expected.value(key)!r} in the config"
            for key in KEYS if key not in MAY_DIFFER and saved.value(key) != expected.value(key)]


def check_same_settings(run: RunDir, expected: Config, config: str, why: str) -> dict[str, Any]:
    """The run's last checkpoint, if the settings saved in it (and in best.pt, which evaluation
    opens) are ``expected`` (see :func:`settings_differences`); otherwise a one-line ConfigError
    that ends with ``why`` (what the mismatch means and what to do)."""
    last = load_checkpoint(run.checkpoint_path)
    opened = [(run.path, run.checkpoint_path, last)]
    if run.best_path.exists():
        opened.append((run.best_path, run.best_path, load_checkpoint(run.best_path)))
    for where, path, state in opened:
        differences = settings_differences(state["config"], expected, str(path))
        if differences:
            shown = "; ".join(differences[:3]) + ("; ..." if len(differences) > 3 else "")
            raise ConfigError(f"{where} is a run of other settings than {config} ({shown}): {why}")
    return last
