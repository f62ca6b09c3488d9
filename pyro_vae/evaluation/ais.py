"""Annealed importance sampling (AIS) estimates of log p(x): the gold standard that the
importance-weighted estimate is checked against.

C chains per image anneal from p_0 to the posterior (:mod:`.annealing`, HMC kernels from
:mod:`.hmc`); logmeanexp of their weights is a stochastic lower bound on log p(x) that tightens
with the number of steps T. This module runs that over a data set: in batches of images that fit
the memory budget (halved on an out-of-memory error), each batch's chains from a stream named by
the seed and its first image (so a torchrun job's ranks can share the batches and get the
numbers one process would), and it summarizes the result. BDMC's bounds reuse it (:mod:`.bdmc`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch
from tqdm.auto import tqdm

from pyro_vae.core.console import log_line
from pyro_vae.core.distributed import batch_span, gather_on_main, log_on_main, on_main, ranks, share_note, stream_seed
from pyro_vae.evaluation.annealing import (
    SIGMOID_SCHEDULE_SHARPNESS,
    AnnealingPath,
    AnnealingResult,
    LatentLayout,
    anneal,
    log_mean_exp,
    sigmoid_schedule,
)
from pyro_vae.evaluation.context import evaluation_context
from pyro_vae.evaluation.diagnostics import standard_error
from pyro_vae.evaluation.memory import (
    AUTO_MEMORY,
    halved_after_out_of_memory,
    memory_budget,
    particle_bytes,
    release_memory,
)
from pyro_vae.evaluation.traced_ends import TracedEnds

# Images per batch when none is given. On a CPU, 100 (what it always was). On CUDA, one gradient
# evaluation of 100 images' 1,600 chains is about 1.3 GFLOP for the IWAE paper's network
# (784-200-200-50, ~0.8 MFLOP per chain forward and back): tens of microseconds on an H200, while
# the host needs about a millisecond to launch the traced graph's ~100 kernels (measured on a
# 2-core CPU: 1.1 ms per evaluation, against 2.2 ms for Pyro's traces). 5,000 images (80,000
# chains, 65-160 GFLOP per evaluation for the IWAE and the default network) make the GPU's
# arithmetic the longer part, and the 10,000 test images two batches. The memory budget lowers it
# where it does not fit. The number of chains is not raised instead: it is a statistical choice
# (the bound's bias falls with it; 16 in the papers), the batch only a way of running it.
DEFAULT_BATCH = {"cpu": 100, "cuda": 5000}


def default_batch(device: str) -> int:
    return DEFAULT_BATCH.get(device, DEFAULT_BATCH["cpu"])


def images_per_batch(model, x: torch.Tensor, num_chains: int, batch_size: int,
                     max_memory: int | str, log: Optional[Callable[[str], None]] = None) -> int:
    """At most ``batch_size`` images, as many as ``max_memory`` holds (bytes, a size, or "auto":
    :func:`~pyro_vae.evaluation.memory.memory_budget`, where ``log`` hears what it chose): each chain
    costs the activations of one particle (:func:`~pyro_vae.evaluation.memory.particle_bytes`), three
    times over for the gradient's graph and the carried gradients."""
    per_image = 3 * num_chains * particle_bytes(model, x[:1])
    return max(1, min(batch_size, memory_budget(max_memory, x.device, log) // per_image))


def batch_on_main(model, x: torch.Tensor, num_chains: int, batch_size: Optional[int],
                  max_memory: int | str, log: Callable[[str], None]) -> int:
    """:func:`images_per_batch` as rank 0 finds it, on every rank of a torchrun job (the batches
    decide the random streams, so that the numbers do not depend on the number of ranks);
    ``batch_size`` None is the device's :data:`DEFAULT_BATCH`."""
    wanted = batch_size or default_batch(x.device.type)
    return on_main(lambda: images_per_batch(model, x, num_chains, wanted, max_memory, log_on_main(log)))


@dataclass
class AISPoints:
    """Per-image AIS results, numpy arrays of length N."""

    log_px: np.ndarray
    acceptance: np.ndarray
    step_size: np.ndarray


def ais_batches(model, x: torch.Tensor, num_steps: int, num_chains: int, num_leapfrog: int,
                start: str, batch_size: int, log: Callable[[str], None] = log_line,
                progress: bool = False, z_start: Optional[torch.Tensor] = None,
                layout: Optional[LatentLayout] = None, seed: Optional[int] = None,
                traced: bool = True) -> Optional[AISPoints]:
    """Forward AIS on every row of ``x`` (or, with ``z_start`` of shape ``(N, D)`` laid out as
    ``layout``, reverse AIS from those exact posterior draws: ``log_px`` then holds the upper
    bound), in batches. With ``seed``, each batch's chains start from the stream of (``seed``,
    its first image's index), and in a torchrun job each rank takes its share of the batches:
    rank 0 returns the results of all (the others None), the same whatever the number of ranks.
    ``traced``: evaluate the path by a traced graph (:class:`TracedEnds`), else by Pyro traces
    at every leapfrog step (the same numbers, to float rounding)."""
    betas = sigmoid_schedule(num_steps)
    ends = TracedEnds.of(model, log_on_main(log)) if traced else None
    if z_start is not None:
        betas = betas[::-1]
    out: dict[str, list[np.ndarray]] = {"log_px": [], "acceptance": [], "step_size": []}
    first, end = batch_span(len(x), batch_size) if seed is not None else (0, len(x))  # this rank's
    done, reported, log = first, 0, log_on_main(log)
    with tqdm(total=end - first, disable=not progress, unit="image", desc="AIS", leave=False) as bar:
        while done < end:
            if seed is not None:
                torch.manual_seed(stream_seed("chains", seed, done))
            batch = x[done:min(done + batch_size, end)]
            try:
                result = anneal_batch(model, batch, num_chains, start, layout, ends, betas,
                                      num_leapfrog, None if z_start is None else z_start[done:done + len(batch)])
            except RuntimeError as e:  # OutOfMemoryError included
                batch_size = halved_after_out_of_memory(e, batch_size, "images per batch", log)
                result = None
            if result is None:  # outside the except block: the failed attempt's tensors are free now
                release_memory(x.device)
                continue
            estimate = log_mean_exp(result.log_weights)
            out["log_px"].append((-estimate if z_start is not None else estimate).cpu().numpy())
            out["acceptance"].append(result.acceptance.cpu().numpy())
            out["step_size"].append(result.step_size.cpu().numpy())
            done += len(batch)
            bar.update(len(batch))
            if not progress and done < end and 10 * (done - first) // (end - first) > reported:
                reported = 10 * (done - first) // (end - first)
                log(f"AIS: {done - first} of {end - first} images done{share_note(len(x))}")
    columns = {k: np.concatenate(v) if v else np.zeros(0, np.float32) for k, v in out.items()}
    if seed is not None:
        columns = gather_on_main(columns)
    return AISPoints(**columns) if columns is not None else None


def anneal_batch(model, x: torch.Tensor, num_chains: int, start: str, layout: Optional[LatentLayout],
                 traced: Optional[TracedEnds], betas: list[float], num_leapfrog: int,
                 z_start: Optional[torch.Tensor] = None) -> AnnealingResult:
    """AIS on one batch of images: from p_0, or backwards from ``z_start`` (``(B, D)``)."""
    path = AnnealingPath(model.model, model.guide, x, num_chains, start, layout, traced)
    z = path.sample_start() if z_start is None else z_start.expand(num_chains, len(x), -1)
    return anneal(path, z, betas, num_leapfrog)


def nan_mean(a: np.ndarray) -> float:
    """The mean of the non-NaN values; NaN if there are none (T = 1 makes no transition)."""
    a = a[~np.isnan(a)]
    return float(a.mean()) if len(a) else float("nan")


def ais_settings(num_steps: int, num_chains: int, num_leapfrog: int, start: str) -> dict:
    """How the chains were run, as AIS and BDMC summaries both record it."""
    return {"ais_steps": num_steps, "ais_chains": num_chains, "leapfrog": num_leapfrog,
            "start": start, "schedule": f"sigmoid({SIGMOID_SCHEDULE_SHARPNESS:g})"}


def ais_summary(points: AISPoints, num_steps: int, num_chains: int, num_leapfrog: int, start: str) -> dict:
    ll = points.log_px.astype(np.float64)
    n = len(ll)
    return {
        "method": "ais",
        "log_likelihood": float(ll.mean()),
        "stderr": standard_error(ll),
        "nll": float(-ll.mean()),
        "num_points": n,
        **ais_settings(num_steps, num_chains, num_leapfrog, start),
        "acceptance_rate": nan_mean(points.acceptance),
        "step_size_median": float(np.median(points.step_size)) if n else float("nan"),
    }


def estimate_ais(model, x: torch.Tensor, num_steps: int, num_chains: int = 16, num_leapfrog: int = 10,
                 start: str = "guide", batch_size: Optional[int] = None, seed: int = 0,
                 max_memory: int | str = AUTO_MEMORY, log: Callable[[str], None] = log_line,
                 progress: bool = False, traced: bool = True) -> tuple[dict, Optional[AISPoints]]:
    """AIS log p(x) of every row of ``x`` under a model (see :mod:`pyro_vae.models`), in batches
    of at most ``batch_size`` images (default :data:`DEFAULT_BATCH` for the device) that fit
    ``max_memory``; in a torchrun job shared by the ranks (rank 0 returns the points, the others
    None; every rank the summary). ``traced`` as for :func:`ais_batches`."""
    begin = time.perf_counter()
    with evaluation_context(model, x.device, seed):
        batch_size = batch_on_main(model, x, num_chains, batch_size, max_memory, log)
        points = ais_batches(model, x, num_steps, num_chains, num_leapfrog, start, batch_size, log,
                             progress, seed=seed, traced=traced)
    if x.is_cuda:
        torch.cuda.synchronize()

    def summary() -> dict:
        result = ais_summary(points, num_steps, num_chains, num_leapfrog, start)
        result.update(device=str(x.device), seconds=time.perf_counter() - begin, seed=seed,
                      batch_size=batch_size, ranks=ranks().world_size)
        return result
    return on_main(summary), points
