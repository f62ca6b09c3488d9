"""How good a trained model is: log p(x) by importance sampling and by annealing, with the
diagnostics that say when to trust it.

One module per job:

- :mod:`.iwae`: the importance-weighted estimate (K particles per image, chunked), and
  :func:`evaluate_model` around it;
- :mod:`.memory`: the memory budget that sizes chunks and batches, out-of-memory retries;
- :mod:`.host_results`: each batch's results moved to the host, PSIS overlapping the GPU;
- :mod:`.psis`: PSIS's k-hat and ESS (either line of ArviZ) and what k-hat values mean;
- :mod:`.diagnostics`: active units, the trust sentence, the summary and the printed report;
- :mod:`.context`: the state every evaluation runs in (frozen weights, private RNG, no TF32);
- :mod:`.run_evaluation`: evaluating a run directory into ``eval.json``;
- :mod:`.annealing`, :mod:`.traced_ends`, :mod:`.hmc`: the AIS path, its traced replay, its
  HMC kernels; :mod:`.ais` runs AIS over a data set, :mod:`.bdmc` the BDMC bounds;
- :mod:`.evaluate_ais`: AIS and BDMC of a run directory (``eval_ais.json``, ``eval_bdmc.json``).

Other layers import from here (``from pyro_vae.evaluation import evaluate_model``); the modules'
other names are their internals.
"""

from pyro_vae.evaluation.ais import DEFAULT_BATCH, AISPoints, default_batch, estimate_ais
from pyro_vae.evaluation.annealing import STARTS
from pyro_vae.evaluation.bdmc import BDMCPoints, estimate_bdmc
from pyro_vae.evaluation.classification import accuracy, predicted_classes
from pyro_vae.evaluation.context import evaluation_context
from pyro_vae.evaluation.diagnostics import active_units, describe, describe_active_units, summarize, trust_sentence
from pyro_vae.evaluation.evaluate_ais import (
    DEFAULT_AIS_STEPS,
    DEFAULT_BDMC_IMAGES,
    ais_run,
    bdmc_run,
    default_steps,
)
from pyro_vae.evaluation.iwae import PointEstimates, estimate_log_likelihood, evaluate_model
from pyro_vae.evaluation.memory import AUTO_MEMORY, memory_budget, parse_memory, particle_bytes
from pyro_vae.evaluation.run_evaluation import OpenedRun, evaluate_run, open_for_evaluation, save_results

__all__ = ["accuracy", "predicted_classes", 
    "AISPoints",
    "AUTO_MEMORY",
    "BDMCPoints",
    "DEFAULT_AIS_STEPS",
    "DEFAULT_BATCH",
    "DEFAULT_BDMC_IMAGES",
    "OpenedRun",
    "PointEstimates",
    "STARTS",
    "active_units",
    "ais_run",
    "bdmc_run",
    "default_batch",
    "default_steps",
    "describe",
    "describe_active_units",
    "estimate_ais",
    "estimate_bdmc",
    "estimate_log_likelihood",
    "evaluate_model",
    "evaluate_run",
    "evaluation_context",
    "memory_budget",
    "open_for_evaluation",
    "parse_memory",
    "particle_bytes",
    "save_results",
    "summarize",
    "trust_sentence",
]
