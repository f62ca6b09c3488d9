"""Opening a saved run's config (a checkpoint's, or config.yaml): flat values checked and typed,
nothing imported that the user did not name, and the few keys that may change on resume."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from pyro_vae.config.config import Config, coerce_overrides
from pyro_vae.config.trust import IMPORT_PATH_KEYS, check_trusted_imports
from pyro_vae.config.validate import ignored_settings, make_config, validate
from pyro_vae.config.values import PATH_KEYS, flag, path_problem, shown
from pyro_vae.core.errors import ConfigError
from pyro_vae.core.options import option

# Keys that may differ from the saved config when resuming: they do not change what the run is.
RESUME_OVERRIDABLE = ("epochs", "lr", "device", "data_dir", "eval_samples", "plots", "compile",
                      "tf32", "tensorboard", "max_minutes", "train_elbo")


def saved_config(saved: Any, trusted: Iterable[str], source: str) -> dict[str, Any]:
    """A checkpoint's flat config as checked, typed values; nothing imported (see
    :func:`~pyro_vae.config.check_trusted_imports`). A saved ``data_dir`` is a path on the
    machine that trained the run: it is kept only where that directory exists here, so that a
    shared run cannot make pyro-vae create directories (or download a dataset) where its author
    chose."""
    if not isinstance(saved, dict):
        raise ConfigError(f"{source} holds no config mapping")
    check_trusted_imports(saved, trusted, source)
    # An empty path was saved by a run started before empty paths were refused (--out '' wrote
    # it into the working directory): the run is opened by its directory, so the value is dropped
    # rather than the run refused.
    values = coerce_overrides({k: v for k, v in saved.items()
                               if not (k in PATH_KEYS and isinstance(v, str) and path_problem(v))},
                              where=source)
    if values.get("data_dir") and not Path(values["data_dir"]).expanduser().is_dir():
        del values["data_dir"]  # --data-dir, else $PYRO_VAE_DATA, else ./data
    try:
        ignored = ignored_settings(Config.from_flat(values))
    except (ConfigError, TypeError):  # reported as such when the config is validated
        return values
    # Saved before such keys were refused: they never had an effect, so the run is its config
    # without them (and a resumed run writes it so).
    return {k: v for k, v in values.items() if k not in ignored}


def resume_config(saved: dict[str, Any], overrides: dict[str, Any], run_dir: str,
                  trusted_imports: Iterable[str] = ()) -> Config:
    """The saved run's config (flat) with the few keys that may change on resume replaced by
    ``overrides`` (flat).

    Changing anything else (the architecture, the objective, the data) would silently make the
    resumed run a different experiment, so it is refused with the list of offending keys. An
    import path in the saved config counts as named by the user if ``overrides`` repeat it.
    """
    source = f"the checkpoint in {run_dir}"
    named = [overrides[key] for key in IMPORT_PATH_KEYS if key in overrides]
    values = saved_config(saved, [*trusted_imports, *named], source)
    out = overrides.get("out")
    if out is not None and Path(out).resolve() != Path(run_dir).resolve():
        raise ConfigError(f"{option('out', out)} differs from the run being resumed ({run_dir}); a "
                          "resumed run continues in its own directory, so drop it")
    cfg = make_config(values)
    changed = sorted(k for k, v in overrides.items()
                     if k not in (*RESUME_OVERRIDABLE, "resume", "out") and cfg.value(k) != v)
    if changed:
        detail = ", ".join(f"{k}: {shown(cfg.value(k))} -> {shown(overrides[k])}" for k in changed)
        raise ConfigError(
            f"cannot change {detail} when resuming; only {', '.join(RESUME_OVERRIDABLE)} may "
            f"differ. Start a new run ({flag('out')}) to train with other settings.")
    allowed = {k: v for k, v in overrides.items() if k in RESUME_OVERRIDABLE}
    return validate(cfg.replace(**allowed, resume=str(run_dir), out=str(run_dir)))
