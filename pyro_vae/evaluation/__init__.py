"""How good a trained model is: importance-sampled log p(x) with PSIS and active-unit
diagnostics and the memory budget (:mod:`.evaluate`), AIS and BDMC (:mod:`.ais`,
:mod:`.evaluate_ais`, :mod:`.hmc`).
"""

from pyro_vae.evaluation.ais import estimate_ais
from pyro_vae.evaluation.evaluate import (
    describe,
    estimate_log_likelihood,
    evaluate_model,
    evaluate_run,
    evaluation_context,
    memory_budget,
)

__all__ = ["describe", "estimate_ais", "estimate_log_likelihood", "evaluate_model", "evaluate_run",
           "evaluation_context", "memory_budget"]
