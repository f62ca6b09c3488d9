"""Bidirectional Monte Carlo (BDMC) bounds on log p(x), on data simulated from the model.

BDMC (Grosse et al. 2015) brackets log p(x) on data simulated from the model, where an exact
posterior sample is known (the z that generated x): AIS run backwards from it to p_0 gives an
unbiased estimate of 1 / p(x), hence a stochastic *upper* bound; forward AIS gives the lower
one. The gap between the two bounds is an upper bound (in expectation) on either one's error,
so it says whether the chains were long enough. It is valid on simulated data only. Both
directions run through :func:`~pyro_vae.evaluation.ais.ais_batches`; this module adds the
simulation and the bounds' summary.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch
from pyro import poutine

from pyro_vae.core.console import log_line
from pyro_vae.core.distributed import on_main, ranks, stream_seed
from pyro_vae.evaluation.ais import AISPoints, ais_batches, ais_settings, batch_on_main, nan_mean
from pyro_vae.evaluation.annealing import LatentLayout
from pyro_vae.evaluation.context import evaluation_context
from pyro_vae.evaluation.diagnostics import standard_error
from pyro_vae.evaluation.memory import AUTO_MEMORY
from pyro_vae.models.sites import OBSERVED_SITE


def simulate(model, num: int, x_dim: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, LatentLayout]:
    """``num`` images x ~ p(x) from the model, with the latent draws that generated them
    (flat, ``(num, D)``): exact posterior samples for BDMC's reverse chains."""
    placeholder = torch.zeros(num, x_dim, device=device)
    trace = poutine.trace(poutine.uncondition(model.model)).get_trace(placeholder)
    layout = LatentLayout.of(poutine.trace(model.model).get_trace(placeholder[:1]))
    x = trace.nodes[OBSERVED_SITE]["value"].detach()
    return x, layout.flatten({name: trace.nodes[name]["value"] for name in layout.names}).detach(), layout


@dataclass
class BDMCPoints:
    x: torch.Tensor  # the simulated images
    lower: AISPoints  # forward AIS
    upper: AISPoints  # reverse AIS from the simulating z

    @property
    def gap(self) -> np.ndarray:
        return self.upper.log_px - self.lower.log_px


def estimate_bdmc(model, num: int, x_dim: int, device: torch.device, num_steps: int,
                  num_chains: int = 16, num_leapfrog: int = 10, start: str = "guide",
                  batch_size: Optional[int] = None, seed: int = 0, max_memory: int | str = AUTO_MEMORY,
                  log: Callable[[str], None] = log_line, progress: bool = False,
                  traced: bool = True) -> tuple[dict, Optional[BDMCPoints]]:
    """BDMC bounds on log p(x) of ``num`` images simulated from the model. In a torchrun job
    every rank simulates the same images and runs its share of the chains; rank 0 returns the
    points (the others None), every rank the summary."""
    begin = time.perf_counter()
    with evaluation_context(model, device, seed):
        x, z_true, layout = simulate(model, num, x_dim, device)
        batch_size = batch_on_main(model, x, num_chains, batch_size, max_memory, log)
        lower = ais_batches(model, x, num_steps, num_chains, num_leapfrog, start, batch_size, log,
                            progress, seed=seed, traced=traced)
        upper = ais_batches(model, x, num_steps, num_chains, num_leapfrog, start, batch_size, log,
                            progress, z_start=z_true, layout=layout, seed=stream_seed("reverse chains", seed),
                            traced=traced)
    points = BDMCPoints(x, lower, upper) if lower is not None else None

    def summary() -> dict:
        lo, hi, gap = (a.astype(np.float64) for a in (lower.log_px, upper.log_px, points.gap))
        return {
            "method": "bdmc", "num_points": num, "data": "simulated from the model",
            "lower": float(lo.mean()), "lower_stderr": standard_error(lo),
            "upper": float(hi.mean()), "upper_stderr": standard_error(hi),
            "gap": float(gap.mean()), "gap_stderr": standard_error(gap), "gap_max": float(gap.max()),
            **ais_settings(num_steps, num_chains, num_leapfrog, start),
            "acceptance_rate": nan_mean(np.concatenate([lower.acceptance, upper.acceptance])),
            "device": str(device), "seconds": time.perf_counter() - begin, "seed": seed,
            "batch_size": batch_size, "ranks": ranks().world_size,
        }
    return on_main(summary), points
