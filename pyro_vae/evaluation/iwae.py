"""The importance-weighted estimate of the marginal log-likelihood log p(x).

For each data point, K samples z_k ~ q(z | x) give

    log p^(x) = logsumexp_k (log p(x, z_k) - log q(z_k | x)) - log K,

a stochastic lower bound on log p(x) that tightens as K grows (Burda et al. 2016; K = 5000 in the
IWAE and VampPrior papers). The log-weights come from Pyro traces (:mod:`pyro_vae.infer.importance`),
so any prior and likelihood the model samples from is handled by its own ``log_prob``.

- **Memory.** K is split into chunks, combined with a streaming logsumexp
  (:class:`ChunkedLogWeights`); the chunk size follows from a memory budget for the activations
  (:mod:`.memory`), and a CUDA out-of-memory error halves it and retries. The K log-weights of
  the current batch (K x B floats) are kept for the diagnostics.
- **Sync.** Everything stays on the device; each batch moves its results to the host once, and
  on CUDA PSIS overlaps the next batch's GPU work (:mod:`.host_results`).
- **Seeds and ranks.** Each batch of images draws its particles from a stream seeded by the
  evaluation seed and the index of its first image (:func:`~pyro_vae.core.distributed.stream_seed`),
  not from one stream for the whole split. So the batches can be shared out among the ranks of a
  torchrun job and the results gathered, and the numbers are the same whatever the number of
  ranks (for the same ``batch_size`` and memory budget, which fix the batches and chunks).
- **Trust.** PSIS's k-hat per data point (:mod:`.psis`), summarized in words by :mod:`.diagnostics`.
- **Discrete sites.** Those small enough to enumerate are summed exactly inside each weight
  (:mod:`pyro_vae.infer.exact_marginal`; ``exact_discrete=False`` samples them like the rest);
  where that is every latent site, log p(x) is exact.

This module is the estimator's loop; memory, host transfers, PSIS and the summary are their own
modules so that each can be read (and tested) alone.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
import pyro
import torch
from tqdm.auto import tqdm

from pyro_vae.core.console import log_line
from pyro_vae.core.distributed import batch_span, gather_on_main, log_on_main, on_main, ranks, share_note, stream_seed
from pyro_vae.evaluation.classification import classified
from pyro_vae.evaluation.context import evaluation_context
from pyro_vae.evaluation.diagnostics import summarize
from pyro_vae.evaluation.host_results import HostResults
from pyro_vae.evaluation.memory import (
    AUTO_MEMORY,
    halved_after_out_of_memory,
    memory_budget,
    particle_bytes,
    release_memory,
)
from pyro_vae.evaluation.psis import PSIS_MIN_SAMPLES
from pyro_vae.infer.exact_marginal import exact_log_weights, exact_sites
from pyro_vae.infer.importance import log_weights, trace_particles
from pyro_vae.models.discrete import classes_of, expected_value
from pyro_vae.models.likelihoods import bits_per_dim, reports_bits_per_dim
from pyro_vae.models.sites import latent_sites

MEAN_PREFIX = "posterior_mean:"  # the columns of E_q[z | x] when ranks gather their results


@dataclass
class PointEstimates:
    """Per-data-point results, as numpy arrays of length N."""

    log_px: np.ndarray  # log p^(x), nats
    elbo: np.ndarray  # mean over the K samples of the log-weights: an ELBO estimate
    khat: np.ndarray  # PSIS Pareto shape of the K weights
    ess: np.ndarray  # effective sample size of the PSIS-smoothed weights
    posterior_mean: dict[str, np.ndarray]  # per latent site, E_q[z | x] (N, D_site): active units
    exact_sites: tuple[str, ...] = ()  # discrete sites summed exactly inside each weight
    exact: bool = False  # they are all the latent sites: log_px is log p(x) itself
    # per categorical site, its classes C: its D_site columns are D_site / C latents' probabilities
    classes: dict[str, int] = field(default_factory=dict)


class ChunkedLogWeights:
    """Draws K particles per data point in chunks, retrying with smaller chunks on OOM.
    ``exact_sites``: discrete sites summed exactly in each weight (``exact``: all of them)."""

    def __init__(self, model: Callable, guide: Callable, chunk_size: int,
                 log: Callable[[str], None] = log_line, exact_sites: tuple[str, ...] = (),
                 exact: bool = False):
        self.model, self.guide, self.chunk, self.log = model, guide, chunk_size, log
        self.exact_sites, self.exact = exact_sites, exact
        self.classes: dict[str, int] = {}  # of the categorical sites (see site_mean_sums)

    def __call__(self, x: torch.Tensor, num_samples: int):
        """``(K, B)`` log-weights, the streaming logsumexp ``(B,)``, the ELBO estimate ``(B,)``
        and E_q[z | x] ``(B, D_site)`` of every latent site (see :func:`site_mean_sums`)."""
        chunks, elbo_chunks, done, sums = [], [], 0, {}
        running_max = torch.full((x.shape[0],), -math.inf, device=x.device)
        running_sum = torch.zeros(x.shape[0], device=x.device)
        while done < num_samples:
            n = min(self.chunk, num_samples - done)
            try:
                lw, chunk_sums, elbo = self._draw(x, n)
            except RuntimeError as e:  # OutOfMemoryError included
                self.chunk = halved_after_out_of_memory(e, self.chunk, "particles per chunk", self.log)
                lw = None
            if lw is None:  # outside the except block: the failed attempt's tensors are free now
                release_memory(x.device)
                continue
            for name, total in chunk_sums.items():
                sums[name] = sums[name] + total if name in sums else total
            new_max = torch.maximum(running_max, lw.max(0).values)
            shift = torch.where(torch.isfinite(new_max), new_max, torch.zeros_like(new_max))
            running_sum = running_sum * torch.exp(running_max - shift) + torch.exp(lw - shift).sum(0)
            running_max = new_max
            chunks.append(lw)
            elbo_chunks.append(elbo)
            done += n
        # with -inf weights only, shift 0 and sum 0 give log_px = -inf (not NaN)
        shift = torch.where(torch.isfinite(running_max), running_max, torch.zeros_like(running_max))
        log_px = shift + torch.log(running_sum) - math.log(num_samples)
        lw = torch.cat(chunks)
        elbo = lw.mean(0) if not self.exact_sites else torch.cat(elbo_chunks).mean(0)
        return lw, log_px, elbo, {name: total / num_samples for name, total in sums.items()}

    def _draw(self, x: torch.Tensor, n: int) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        """``(n, B)`` log-weights of ``n`` new particles, the sums of their site means and their
        ELBO terms. The traces die on return, so the next chunk is not drawn while these are held."""
        if self.exact_sites:
            lw, elbo, sums = exact_log_weights(self.model, self.guide, x, self.exact_sites, n, self.exact)
            if not self.classes:  # the categorical sites' classes, from one plain draw
                self.classes.update(site_classes(trace_particles(self.model, self.guide, x[:1]).guide))
            return lw, sums, elbo
        traces = trace_particles(self.model, self.guide, x, num_samples=n)
        lw = log_weights(traces).expand(n, x.shape[0])
        self.classes.update(site_classes(traces.guide))
        return lw, site_mean_sums(traces.guide, n, x.shape[0]), lw


def site_mean_sums(guide_trace, num_samples: int, batch: int) -> dict[str, torch.Tensor]:
    """Each latent site's conditional mean, summed over the particles: ``{name: (batch, D)}``.

    The mean of q(z_l | parents) averaged over the particles' parents is E_q[z_l | x] (tower
    rule), with less noise than averaging the samples; for a first-layer site it is exact. A
    discrete site's mean is its probabilities (a categorical index site's: those of its one-hot
    code, :func:`~pyro_vae.models.discrete.expected_value`). Distributions without a ``mean``
    contribute their samples.
    """
    sums = {}
    for site in latent_sites(guide_trace):
        fn = site["fn"]
        try:
            mean = expected_value(fn)
        except NotImplementedError:
            mean = site["value"]
        event = mean.shape[len(fn.batch_shape):]
        sums[site["name"]] = mean.expand(num_samples, batch, *event).reshape(num_samples, batch, -1).sum(0)
    return sums


def site_classes(guide_trace) -> dict[str, int]:
    """``{name: C}`` for the categorical latent sites (one-hot or index) of a guide trace: their
    mean columns group into latents of C classes each, for active units."""
    found = {site["name"]: classes_of(site["fn"]) for site in latent_sites(guide_trace)}
    return {name: c for name, c in found.items() if c > 1}


@torch.no_grad()
def estimate_log_likelihood(model: Callable, guide: Callable, data: torch.Tensor,
                            num_samples: int = 5000, batch_size: int = 100,
                            chunk_size: Optional[int] = None, max_memory: int | str = 2**30,
                            bytes_per_particle: int = 2**14, diagnostics: bool = True, log: Callable[[str], None] = log_line,
                            progress: bool = False, seed: Optional[int] = None,
                            overlap: Optional[bool] = None, exact_discrete: bool = True) -> Optional[PointEstimates]:
    """Per-point log p^(x), ELBO, k-hat and ESS for every row of ``data``.

    ``chunk_size`` particles are drawn at once; if None it follows from ``max_memory`` (bytes,
    a size like "8GiB", or "auto": :func:`memory_budget`) and ``bytes_per_particle`` (see
    :func:`particle_bytes`). With ``seed``, each batch's particles come from the stream of
    (``seed``, its first image's index), and in a torchrun job each rank takes its share of the
    batches: rank 0 returns the results of all (the others None). ``overlap``: PSIS on a worker
    thread, overlapping the next batch (:class:`HostResults`; default: on CUDA). ``exact_discrete``:
    sum the discrete sites small enough to enumerate exactly in each weight
    (:func:`~pyro_vae.infer.exact_marginal.exact_sites`); False samples them.
    """
    sites, values, exact = exact_sites(guide, data) if exact_discrete else ([], 1, False)
    if chunk_size is None:
        budget = memory_budget(max_memory, data.device)  # a particle costs a pass per joint value
        chunk_size = num_samples if exact else \
            max(1, min(num_samples, budget // (batch_size * bytes_per_particle * values)))
    sampler = ChunkedLogWeights(model, guide, chunk_size, log, tuple(sites), exact)
    diagnostics = diagnostics and num_samples >= PSIS_MIN_SAMPLES
    host = HostResults(num_samples, diagnostics, data.is_cuda if overlap is None else overlap)

    first, end = batch_span(len(data), batch_size) if seed is not None else (0, len(data))
    starts = range(first, end, batch_size)
    report_every = max(1, len(starts) // 10)  # without a progress bar: a line per tenth
    log = log_on_main(log)
    try:
        with pyro.validation_enabled(False):
            for i, start in enumerate(tqdm(starts, disable=not progress, unit="batch",
                                           desc="log p(x)", leave=False)):
                if not progress and i and i % report_every == 0:
                    log(f"log p(x): {start - first} of {end - first} images done{share_note(len(data))}")
                if seed is not None:
                    torch.manual_seed(stream_seed("particles", seed, start))
                x = data[start:start + batch_size]
                lw, log_px, elbo, site_means = sampler(x, num_samples)
                columns = [log_px[:, None], elbo[:, None], lw.T, *site_means.values()]
                host.add(torch.cat(columns, dim=1), {name: m.shape[1] for name, m in site_means.items()})
        parts = host.results()
    finally:
        host.close()
    out = {k: [part[k] for part in parts] for k in ("log_px", "elbo")}
    out.update({k: [part[k] for part in parts] if diagnostics else [] for k in ("khat", "ess")})
    means: dict[str, list[np.ndarray]] = {}
    for part in parts:
        for name, mean in part["means"].items():
            means.setdefault(name, []).append(mean)
    n = sum(len(part) for part in out["log_px"])
    columns = {k: np.concatenate(v) if v else np.full(n, np.nan, dtype=np.float32) for k, v in out.items()}
    columns.update({f"{MEAN_PREFIX}{name}": np.concatenate(parts) for name, parts in means.items()})
    if seed is not None:
        columns = gather_on_main(columns)  # this rank's batches, then all of them on rank 0
        if columns is None:
            return None
    return PointEstimates(columns["log_px"], columns["elbo"], columns["khat"], columns["ess"],
                          {k[len(MEAN_PREFIX):]: v for k, v in columns.items() if k.startswith(MEAN_PREFIX)},
                          tuple(sites), exact, dict(sampler.classes))


def evaluate_model(model, x: torch.Tensor, num_samples: int = 5000, batch_size: int = 100,
                   max_memory: int | str = AUTO_MEMORY, seed: int = 0, log: Callable[[str], None] = log_line,
                   progress: bool = False, exact_discrete: bool = True,
                   labels: Optional[torch.Tensor] = None) -> tuple[dict, Optional[PointEstimates]]:
    """log p(x) of every row of ``x`` under a model (see :mod:`pyro_vae.models`), with
    diagnostics, in the :func:`evaluation_context`. In a torchrun job the ranks share the work;
    every rank returns the summary, rank 0 alone the per-point estimates (the others None).
    ``max_memory``: see :func:`memory_budget`; in a torchrun job every rank takes rank 0's
    budget, so that the chunks, hence the numbers, do not depend on the number of ranks.
    ``exact_discrete``: as for :func:`estimate_log_likelihood`. ``labels``: the class of every row
    of ``x``; where the guide has a label site (a model that takes labels), the summary adds the
    ``accuracy`` of q(y | x) (:mod:`~pyro_vae.evaluation.classification`)."""
    bytes_per_particle = particle_bytes(model, x)
    budget = on_main(lambda: memory_budget(max_memory, x.device, log_on_main(log)))
    start = time.perf_counter()
    with evaluation_context(model, x.device, seed):
        points = estimate_log_likelihood(model.model, model.guide, x, num_samples, batch_size,
                                         max_memory=budget,
                                         bytes_per_particle=bytes_per_particle, log=log,
                                         progress=progress, seed=seed, exact_discrete=exact_discrete)
        correct = classified(model.guide, x, labels) if labels is not None else None
    if x.is_cuda:
        torch.cuda.synchronize()

    def summary() -> dict:
        result = summarize(points, num_samples)
        if points is not None and points.exact_sites:
            result.update(summed_exactly=list(points.exact_sites), exact=points.exact)
        if getattr(model, "target_mask", None) is not None:  # log p(target | given): the CVAE's
            result["conditional"] = int(model.target_mask.sum())  # pixels predicted
        if correct is not None:
            result.update(accuracy=correct / len(x), classified=correct)
        if reports_bits_per_dim(model):  # 8-bit data: -log p(x) / (D ln 2) beside the nats
            values = x.shape[-1]
            result.update(bits_per_dim=bits_per_dim(result["log_likelihood"], values),
                          bits_per_dim_stderr=result["stderr"] / (values * math.log(2)),
                          elbo_bits_per_dim=bits_per_dim(result["elbo"], values))
        result.update(device=str(x.device), seconds=time.perf_counter() - start, seed=seed,
                      batch_size=batch_size, max_memory=budget, ranks=ranks().world_size)
        return result
    return on_main(summary), points
