"""Experiments built from the layers below, one module per job.

- Reproducing the papers' rows (:func:`reproduce`): :mod:`.reproduction` runs them,
  :mod:`.reproduction_plan` settles which run belongs to which config before anything trains,
  :mod:`.protocol_settings` checks a config's reference and scales its protocol,
  :mod:`.reused_evaluations` reuses an ``eval.json`` only beside its own checkpoint,
  :mod:`.reproduction_table` writes the table.
- Gradient variance and signal-to-noise ratio of each estimator (:func:`run_diagnostic`):
  :mod:`.grad_variance` runs it, :mod:`.grad_variance_settings` says what it compares and
  reads, :mod:`.gradient_moments` measures.

Other layers import from here (``from pyro_vae.studies import reproduce``).
"""

from pyro_vae.studies.grad_variance import run_diagnostic
from pyro_vae.studies.grad_variance_settings import DEFAULT_BASELINE_WARMUP, ESTIMATOR_SPECS, WITH_BASELINE, spec_config
from pyro_vae.studies.protocol_settings import check_same_settings, settings_differences
from pyro_vae.studies.reproduction import reproduce
from pyro_vae.studies.reproduction_plan import SOURCE_NAME, run_name

__all__ = [
    "DEFAULT_BASELINE_WARMUP",
    "ESTIMATOR_SPECS",
    "SOURCE_NAME",
    "WITH_BASELINE",
    "check_same_settings",
    "reproduce",
    "run_diagnostic",
    "run_name",
    "settings_differences",
    "spec_config",
]
