"""The importance-weighted estimate of the marginal log-likelihood log p(x), with diagnostics.

For each data point, K samples z_k ~ q(z | x) give

    log p^(x) = logsumexp_k (log p(x, z_k) - log q(z_k | x)) - log K,

a stochastic lower bound on log p(x) that tightens as K grows (Burda et al. 2016; K = 5000 in the
IWAE and VampPrior papers). The log-weights come from Pyro traces (:mod:`pyro_vae.infer.importance`),
so any prior and likelihood the model samples from is handled by its own ``log_prob``.

- **Memory.** K is split into chunks, combined with a streaming logsumexp; the chunk size follows
  from a memory budget for the activations (:func:`memory_budget`: by default 1 GiB on the CPU,
  a share of the free memory on CUDA), and a CUDA out-of-memory error halves it and retries.
  The K log-weights of the current batch (K x B floats) are kept for the diagnostics.
- **Sync.** Everything stays on the device; each batch moves its results to the host once. On
  CUDA that copy does not wait: it goes into pinned memory, and PSIS (float64, on the CPU) runs
  on a worker thread while the GPU draws the next batch's particles (:class:`HostResults`).
- **Seeds and ranks.** Each batch of images draws its particles from a stream seeded by the
  evaluation seed and the index of its first image (:func:`~pyro_vae.core.distributed.stream_seed`),
  not from one stream for the whole split. So the batches can be shared out among the ranks of a
  torchrun job and the results gathered, and the numbers are the same whatever the number of
  ranks (for the same ``batch_size`` and memory budget, which fix the batches and chunks).
- **Trust.** Pareto-smoothed importance sampling (ArviZ's ``psislw``) fits a generalized Pareto
  distribution to each data point's largest weights. Its shape k-hat says how heavy their tail
  is: below 0.5 the estimate converges fast, up to 0.7 slowly, above 0.7 the weights' variance
  is effectively infinite and log p^(x) can be far below log p(x) (Vehtari et al. 2024).
"""

from __future__ import annotations

import errno
import math
import shutil
import sys
import time
import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Optional

import numpy as np
import pyro
import torch
from torch import nn
from tqdm.auto import tqdm

from pyro_vae.core.atomic import atomic_write, make_directory
from pyro_vae.core.console import log_line
from pyro_vae.core.distributed import (
    batch_span,
    gather_on_main,
    log_on_main,
    main_first,
    on_main,
    ranks,
    resolve_device,
    share_note,
    stream_seed,
    together,
)
from pyro_vae.core.errors import WriteError
from pyro_vae.core.precision import tf32
from pyro_vae.core.workload import show_bytes
from pyro_vae.data import load_dataset
from pyro_vae.infer.importance import log_weights, trace_particles
from pyro_vae.models import build_model
from pyro_vae.models.sites import isolated, latent_sites, sample_sites
from pyro_vae.runs.checkpoint import checkpoint_sha256, load_checkpoint
from pyro_vae.runs.lock import RunLock
from pyro_vae.runs.opening import checkpoint_path, load_weights, run_config
from pyro_vae.runs.results import save_result
from pyro_vae.runs.rundir import RunDir

# PSIS k-hat (Vehtari et al.): up to 0.5 converged, up to 0.7 converging slowly, above 0.7 not
# converged in K. KHAT_SEVERE is ours, measured with AIS (docs/evaluation.md, "Can it be trusted?"): on trained
# MNIST VAEs, IWAE at K = 5000 fell 0.3-0.5 nats per image short of AIS whatever k-hat was up to
# 1.5, and several nats short above it.
KHAT_GOOD, KHAT_BAD, KHAT_SEVERE = 0.5, 0.7, 1.5
PSIS_MIN_SAMPLES = 21  # ArviZ fits the Pareto tail to ceil(min(K/5, 3 sqrt(K))) >= 5 weights
ACTIVE_UNIT_THRESHOLD = 1e-2  # Burda et al.: Cov_x(E_q[z_j]) above this
MEAN_PREFIX = "posterior_mean:"  # the columns of E_q[z | x] when ranks gather their results
# The memory budget "auto" (see memory_budget): on the CPU the long-standing 1 GiB, so CPU results
# are what they always were; on CUDA this share of the free memory, rounded down to a power of two.
AUTO_MEMORY = "auto"
CPU_MEMORY_BUDGET = 2**30
CUDA_FREE_SHARE = 0.5
# The out-of-memory error of the caching allocator: torch.cuda.OutOfMemoryError since torch 1.13,
# also named torch.OutOfMemoryError in recent versions (the same class); a RuntimeError either way.
OutOfMemoryError = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)
# Batches whose results may wait for PSIS on the worker thread at once (HostResults): two keep
# the GPU and the CPU both busy; more would only hold more pinned memory.
PSIS_IN_FLIGHT = 2


@dataclass
class PointEstimates:
    """Per-data-point results, as numpy arrays of length N."""

    log_px: np.ndarray  # log p^(x), nats
    elbo: np.ndarray  # mean over the K samples of the log-weights: an ELBO estimate
    khat: np.ndarray  # PSIS Pareto shape of the K weights
    ess: np.ndarray  # effective sample size of the PSIS-smoothed weights
    posterior_mean: dict[str, np.ndarray]  # per latent site, E_q[z | x] (N, D_site): active units


def parse_memory(text: str | int) -> int:
    """'2GiB', '512MB', '1e9' or an int -> bytes ("auto" is :func:`memory_budget`'s)."""
    if isinstance(text, int):
        return text
    units = {"kib": 2**10, "mib": 2**20, "gib": 2**30, "kb": 10**3, "mb": 10**6, "gb": 10**9, "b": 1}
    s = text.strip().lower().replace(" ", "")
    number, factor = s, 1
    for unit, unit_factor in units.items():
        if s.endswith(unit):
            number, factor = s[: -len(unit)], unit_factor
            break
    value = float(number) * factor
    if not math.isfinite(value):
        raise ValueError(f"{text!r} is not a finite size")
    return int(value)


def power_of_two_below(n: float) -> int:
    """The largest power of two <= ``n`` (1 for less)."""
    return 2 ** max(0, int(n).bit_length() - 1)


def memory_budget(max_memory: int | str, device: torch.device,
                  log: Optional[Callable[[str], None]] = None) -> int:
    """Bytes of activations one chunk of particles (AIS: one batch of chains) may use.

    An explicit size (``--max-memory 8GiB``) is taken as it is. "auto": on the CPU 1 GiB, the
    budget pyro-vae always had, so CPU numbers stay what they were. On CUDA a 1 GiB budget cuts
    K = 5000 for 100 images into ~18 chunks, each a Pyro trace on the host, so the GPU idles
    between them; "auto" takes half of the free memory instead (``torch.cuda.mem_get_info``, plus
    what PyTorch's caching allocator holds unused, e.g. after training in the same process):
    the other half is headroom for what the budget does not count (the allocator's rounding and
    fragmentation, the K x B log-weights and their copies, cuBLAS workspaces, and
    :func:`particle_bytes` errs large anyway). It is rounded down to a power of two, so that
    a little more or less free memory gives the same chunks, hence the same numbers (the chunk
    size decides how the random stream is cut); ``--max-memory`` with that size reproduces them
    anywhere. ``log``: where to say what "auto" chose on CUDA."""
    if not (isinstance(max_memory, str) and max_memory.strip().lower() == AUTO_MEMORY):
        return parse_memory(max_memory)
    if device.type != "cuda":
        return CPU_MEMORY_BUDGET
    free = torch.cuda.mem_get_info(device)[0]
    free += torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)  # cached, unused
    budget = power_of_two_below(CUDA_FREE_SHARE * free)
    if log is not None:
        log(f"memory budget: {show_bytes(budget)} (half of the {show_bytes(free)} free on "
            f"{device}, rounded down to a power of two; --max-memory sets it)")
    return budget


def particle_bytes(model, x: torch.Tensor) -> int:
    """Bytes that one particle of one data point costs, measured on the model itself: the outputs
    of every leaf module (forward hooks) while the guide and model run with two particles on one
    data point and the log-weights are computed, per particle, plus three floats per value of
    every sample site (values, log-density terms) and per mixture component, doubled for
    temporaries. Modules that run once per data point (the encoder of x) count half: an
    overestimate that keeps the budget safe."""
    floats = [0]

    def count(_module, _inputs, output):
        outputs = output if isinstance(output, (tuple, list)) else (output,)
        floats[0] += sum(o.numel() for o in outputs if torch.is_tensor(o))

    leaves = [m for m in model.modules() if not list(m.children())] if isinstance(model, nn.Module) else []
    hooks = [m.register_forward_hook(count) for m in leaves]
    try:
        with torch.no_grad(), isolated(x):
            traces = trace_particles(model.model, model.guide, x[:1], num_samples=2)
            log_weights(traces)
    finally:
        for h in hooks:
            h.remove()
    for trace in (traces.guide, traces.model):
        for site in sample_sites(trace):
            fn = site["fn"]
            mixture = getattr(fn, "mixture_distribution", None)
            components = mixture.logits.shape[-1] if mixture is not None else 1
            shape = torch.broadcast_shapes(site["value"].shape, fn.batch_shape + fn.event_shape)
            floats[0] += 3 * components * math.prod(shape)
    per_particle = floats[0] // 2
    return 2 * 4 * per_particle


def is_out_of_memory(error: BaseException) -> bool:
    return isinstance(error, OutOfMemoryError) or "out of memory" in str(error)


def halved_after_out_of_memory(error: BaseException, size: int, unit: str,
                               log: Callable[[str], None]) -> int:
    """The work size to retry with after ``error``: half of ``size``, said in the log; re-raises
    ``error`` if it is not an out-of-memory error or the size cannot shrink. The caller then
    leaves its ``except`` block (whose exception's traceback holds the failed attempt's
    tensors) and calls :func:`release_memory` before retrying."""
    if not is_out_of_memory(error) or size == 1:
        raise error
    size = max(1, size // 2)
    log(f"out of memory: retrying with {size} {unit}")
    return size


def release_memory(device: torch.device) -> None:
    """Give the CUDA caching allocator's free blocks back, so that a retry after an out-of-memory
    error finds unfragmented memory (nothing to do on the CPU)."""
    if device.type == "cuda":
        torch.cuda.empty_cache()


class ChunkedLogWeights:
    """Draws K particles per data point in chunks, retrying with smaller chunks on OOM."""

    def __init__(self, model: Callable, guide: Callable, chunk_size: int,
                 log: Callable[[str], None] = log_line):
        self.model, self.guide, self.chunk, self.log = model, guide, chunk_size, log

    def __call__(self, x: torch.Tensor, num_samples: int):
        """``(K, B)`` log-weights, the streaming logsumexp ``(B,)``, and E_q[z | x] ``(B, D_site)``
        of every latent site (see :func:`site_mean_sums`)."""
        chunks, done, sums = [], 0, {}
        running_max = torch.full((x.shape[0],), -math.inf, device=x.device)
        running_sum = torch.zeros(x.shape[0], device=x.device)
        while done < num_samples:
            n = min(self.chunk, num_samples - done)
            try:
                lw, chunk_sums = self._draw(x, n)
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
            done += n
        # with -inf weights only, shift 0 and sum 0 give log_px = -inf (not NaN)
        shift = torch.where(torch.isfinite(running_max), running_max, torch.zeros_like(running_max))
        log_px = shift + torch.log(running_sum) - math.log(num_samples)
        return torch.cat(chunks), log_px, {name: total / num_samples for name, total in sums.items()}

    def _draw(self, x: torch.Tensor, n: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``(n, B)`` log-weights of ``n`` new particles and the sums of their site means. The
        traces die on return, so the next chunk is not drawn while these are held."""
        traces = trace_particles(self.model, self.guide, x, num_samples=n)
        lw = log_weights(traces).expand(n, x.shape[0])
        return lw, site_mean_sums(traces.guide, n, x.shape[0])


def site_mean_sums(guide_trace, num_samples: int, batch: int) -> dict[str, torch.Tensor]:
    """Each latent site's conditional mean, summed over the particles: ``{name: (batch, D)}``.

    The mean of q(z_l | parents) averaged over the particles' parents is E_q[z_l | x] (tower
    rule), with less noise than averaging the samples; for a first-layer site it is exact.
    Distributions without a ``mean`` contribute their samples.
    """
    sums = {}
    for site in latent_sites(guide_trace):
        value = site["value"]
        try:
            mean = site["fn"].mean
        except NotImplementedError:
            mean = value
        sums[site["name"]] = mean.expand(value.shape).reshape(num_samples, batch, -1).sum(0)
    return sums


# ArviZ 0.x announces its 1.x refactor with a multi-line FutureWarning once a day, in the middle of
# an evaluation's output. It is about ArviZ's own API, which _arviz_psislw already handles in
# both lines: nothing a user of pyro-vae can act on. Only that message is filtered; every other
# warning from ArviZ (a bad k-hat fit, say) still shows.
warnings.filterwarnings("ignore", message=r"\s*ArviZ is undergoing a major refactor", category=FutureWarning)


def _arviz_psislw(log_w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ArviZ's PSIS of ``(B, K)`` log importance ratios: (smoothed log-weights normalized over K,
    k-hat per row), with either line of ArviZ. ArviZ 0.x has ``arviz.psislw(log_ratios)``; ArviZ
    1.x (what pip resolves on Python 3.12+) moved it to ``arviz_stats``, whose ``psislw`` takes a
    log-likelihood and negates it (the LOO convention), so the ratios go in negated. On the same
    log-weights (light, heavy and Gumbel-tailed rows, K = 5000) the two lines agree to 0.011 in
    k-hat and 0.016 in the smoothed log-weights; passed un-negated, 1.x gave k-hat -0.03 where
    the truth is 1."""
    try:
        from arviz_stats.base import array_stats
    except ImportError:  # ArviZ 0.x
        import arviz as az

        return az.psislw(log_w, reff=1.0)
    return array_stats.psislw(-log_w, r_eff=1.0, axis=-1)


def psis(log_w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """k-hat and effective sample size of each row of ``(B, K)`` log-weights (ArviZ's PSIS)."""
    log_w = log_w.astype(np.float64)
    # Equal weights (the guide is the exact posterior) leave no tail to fit: ArviZ 0.x returns
    # inf or fits float32 rounding noise, 1.x raises. The estimate is then exact and nothing is
    # heavy-tailed: k-hat 0 and ESS K. "Equal" is up to float32 precision of the log-weights.
    equal = np.ptp(log_w, axis=-1) <= 1e-5 * (1 + np.abs(log_w).max(-1))
    khat = np.zeros(len(log_w))
    ess = np.full(len(log_w), float(log_w.shape[-1]))
    if not equal.all():
        smoothed, fitted = _arviz_psislw(log_w[~equal])
        khat[~equal] = np.asarray(fitted)
        ess[~equal] = 1.0 / np.exp(2 * smoothed).sum(-1)
    return khat, ess


def unpack(packed: np.ndarray, num_samples: int, diagnostics: bool,
           site_sizes: dict[str, int]) -> dict:
    """One batch's results from its packed columns (log p^(x), the ELBO, the K log-weights, the
    site means): copies of the small columns (so that the K log-weights are not kept alive by
    views of them), and PSIS's k-hat and ESS where ``diagnostics``."""
    result = {"log_px": packed[:, 0].copy(), "elbo": packed[:, 1].copy(), "means": {}}
    if diagnostics:
        result["khat"], result["ess"] = psis(packed[:, 2:2 + num_samples])
    column = 2 + num_samples
    for name, size in site_sizes.items():
        result["means"][name] = packed[:, column:column + size].copy()
        column += size
    return result


class HostResults:
    """Each batch's results on the host, in batch order (:func:`unpack`).

    Serial (``overlap`` False, the CPU's way): a batch is copied to the host and unpacked, PSIS
    included, before the next one starts. Overlapped (CUDA's): the copy goes into pinned host
    memory without waiting for it, and unpacking and PSIS run on one worker thread while the
    main thread queues the next batch's GPU work; at most PSIS_IN_FLIGHT batches wait for the
    worker. PSIS is the largest single cost at GPU speed (ArviZ fits each row in float64 on the
    CPU), so it then overlaps the GPU's work instead of following it. Both ways reach the same
    code with the same float32 columns: the numbers are identical.
    """

    def __init__(self, num_samples: int, diagnostics: bool, overlap: bool):
        self.num_samples, self.diagnostics, self.overlap = num_samples, diagnostics, overlap
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="psis") if overlap else None
        self.parts: list[Future | dict] = []
        self.waited = 0  # the parts before this index are resolved

    def add(self, packed: torch.Tensor, site_sizes: dict[str, int]) -> None:
        """Take one batch's packed ``(B, 2 + K + D)`` columns (on the device)."""
        args = (self.num_samples, self.diagnostics, site_sizes)
        if self.pool is None:
            self.parts.append(unpack(packed.cpu().numpy(), *args))  # the batch's one host transfer
            return
        copied = None
        if packed.is_cuda:
            host = torch.empty(packed.shape, dtype=packed.dtype, pin_memory=True)
            host.copy_(packed, non_blocking=True)
            copied = torch.cuda.Event()
            copied.record()
        else:  # the overlapped path on the CPU (tests): nothing to copy
            host = packed

        def work() -> dict:
            if copied is not None:
                copied.synchronize()
            return unpack(host.numpy(), *args)
        self.parts.append(self.pool.submit(work))
        while len(self.parts) - self.waited > PSIS_IN_FLIGHT:
            self.parts[self.waited] = self.parts[self.waited].result()
            self.waited += 1

    def results(self) -> list[dict]:
        """Every batch's :func:`unpack` result, in the order they were added."""
        return [part.result() if isinstance(part, Future) else part for part in self.parts]

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


@torch.no_grad()
def estimate_log_likelihood(model: Callable, guide: Callable, data: torch.Tensor,
                            num_samples: int = 5000, batch_size: int = 100,
                            chunk_size: Optional[int] = None, max_memory: int | str = 2**30,
                            bytes_per_particle: int = 2**14, diagnostics: bool = True, log: Callable[[str], None] = log_line,
                            progress: bool = False, seed: Optional[int] = None,
                            overlap: Optional[bool] = None) -> Optional[PointEstimates]:
    """Per-point log p^(x), ELBO, k-hat and ESS for every row of ``data``.

    ``chunk_size`` particles are drawn at once; if None it follows from ``max_memory`` (bytes,
    a size like "8GiB", or "auto": :func:`memory_budget`) and ``bytes_per_particle`` (see
    :func:`particle_bytes`). With ``seed``, each batch's particles come from the stream of
    (``seed``, its first image's index), and in a torchrun job each rank takes its share of the
    batches: rank 0 returns the results of all (the others None). ``overlap``: PSIS on a worker
    thread, overlapping the next batch (:class:`HostResults`; default: on CUDA).
    """
    if chunk_size is None:
        budget = memory_budget(max_memory, data.device)
        chunk_size = max(1, min(num_samples, budget // (batch_size * bytes_per_particle)))
    sampler = ChunkedLogWeights(model, guide, chunk_size, log)
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
                lw, log_px, site_means = sampler(x, num_samples)
                columns = [log_px[:, None], lw.mean(0)[:, None], lw.T, *site_means.values()]
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
                          {k[len(MEAN_PREFIX):]: v for k, v in columns.items() if k.startswith(MEAN_PREFIX)})


def active_units(posterior_mean: np.ndarray, threshold: float = ACTIVE_UNIT_THRESHOLD) -> int:
    """Latent dimensions whose posterior mean varies across data points (Burda et al. 2016)."""
    return int((np.var(posterior_mean, axis=0, ddof=1) > threshold).sum())


def trust_sentence(khat: np.ndarray, num_samples: int) -> Optional[str]:
    """None when the estimate can be trusted, else what is wrong and what to do."""
    if np.isnan(khat).all():
        return (f"No PSIS diagnostics: they need K >= {PSIS_MIN_SAMPLES} samples, so nothing can "
                f"be said about how reliable the estimate with K = {num_samples} is.")
    bad = float(np.mean(khat > KHAT_BAD))
    if bad > 0.01:
        severe = float(np.mean(khat > KHAT_SEVERE))
        return (f"Not converged in K = {num_samples}: PSIS k-hat exceeds {KHAT_BAD} for {100 * bad:.1f}% "
                f"of the data points ({100 * severe:.1f}% above {KHAT_SEVERE}), so log p^(x) is a lower "
                "bound still rising with K, short of log p(x) by an amount k-hat does not tell (against "
                "AIS, trained MNIST VAEs at K = 5000 were 0.3-0.5 nats per image short, several nats "
                f"where k-hat > {KHAT_SEVERE}). To measure it, run evaluate.py --method ais on a few "
                "hundred images.")
    if float(np.median(khat)) > KHAT_GOOD:
        return (f"Converging slowly: the median PSIS k-hat is above {KHAT_GOOD}; the estimate is "
                "usable but a larger K would still raise it.")
    return None


def standard_error(values: np.ndarray) -> float:
    """The standard error of the mean of ``values`` (NaN for fewer than two)."""
    n = len(values)
    return float(np.std(values, ddof=1) / math.sqrt(n)) if n > 1 else float("nan")


def summarize(points: PointEstimates, num_samples: int) -> dict:
    """The numbers of ``eval.json`` (besides where and how long)."""
    n = len(points.log_px)
    ll, elbo = points.log_px.astype(np.float64), points.elbo.astype(np.float64)
    summary = {
        "log_likelihood": float(ll.mean()),
        "stderr": standard_error(ll),
        "nll": float(-ll.mean()),
        "elbo": float(elbo.mean()),
        "elbo_stderr": standard_error(elbo),
        "gap": float((ll - elbo).mean()),
        "num_samples": num_samples,
        "num_points": n,
    }
    if points.posterior_mean and n > 1:
        per_site = {name: active_units(mean) for name, mean in points.posterior_mean.items()}
        summary["active_units"] = sum(per_site.values())
        summary["latent_dim"] = sum(int(m.shape[1]) for m in points.posterior_mean.values())
        summary["active_units_per_site"] = per_site
        summary["latent_dim_per_site"] = {name: int(m.shape[1]) for name, m in points.posterior_mean.items()}
    khat = points.khat
    if not np.isnan(khat).all():
        summary["psis"] = {
            "khat_median": float(np.median(khat)),
            "khat_q90": float(np.quantile(khat, 0.9)),
            "khat_max": float(khat.max()),
            "share_khat_above_0.5": float(np.mean(khat > KHAT_GOOD)),
            "share_khat_above_0.7": float(np.mean(khat > KHAT_BAD)),
            "share_khat_above_1.5": float(np.mean(khat > KHAT_SEVERE)),
            "ess_median": float(np.median(points.ess)),
            "ess_min": float(points.ess.min()),
        }
    summary["trust"] = trust_sentence(khat, num_samples)
    return summary


@contextmanager
def frozen(module: nn.Module):
    """The module's parameters without gradients (an evaluation that differentiates, like AIS,
    then builds no graph through the weights), restored afterwards."""
    flags = [(p, p.requires_grad) for p in module.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


@contextmanager
def evaluation_context(model, device: torch.device, seed: int):
    """Eval mode, frozen weights, a private param store, a forked RNG seeded with ``seed``, the
    model's optional ``fixed_prior()``, no Pyro validation and no TF32 (see
    :mod:`pyro_vae.core.precision`: not measured to change log p(x) by less than its standard error;
    the previous setting comes back afterwards): evaluating never disturbs a training run's
    state, and the same seed gives the same numbers."""
    model.eval()
    devices = [device] if device.type == "cuda" else []
    fixed_prior = getattr(model, "fixed_prior", nullcontext)
    with ExitStack() as stack:
        stack.enter_context(pyro.get_param_store().scope())
        stack.enter_context(torch.random.fork_rng(devices=devices))
        torch.manual_seed(seed)
        if isinstance(model, nn.Module):
            stack.enter_context(frozen(model))
        stack.enter_context(fixed_prior())
        stack.enter_context(pyro.validation_enabled(False))
        stack.enter_context(tf32(False))
        yield


def evaluate_model(model, x: torch.Tensor, num_samples: int = 5000, batch_size: int = 100,
                   max_memory: int | str = AUTO_MEMORY, seed: int = 0, log: Callable[[str], None] = log_line,
                   progress: bool = False) -> tuple[dict, Optional[PointEstimates]]:
    """log p(x) of every row of ``x`` under a model (see :mod:`pyro_vae.models`), with
    diagnostics, in the :func:`evaluation_context`. In a torchrun job the ranks share the work;
    every rank returns the summary, rank 0 alone the per-point estimates (the others None).
    ``max_memory``: see :func:`memory_budget`; in a torchrun job every rank takes rank 0's
    budget, so that the chunks, hence the numbers, do not depend on the number of ranks."""
    bytes_per_particle = particle_bytes(model, x)
    budget = on_main(lambda: memory_budget(max_memory, x.device, log_on_main(log)))
    start = time.perf_counter()
    with evaluation_context(model, x.device, seed):
        points = estimate_log_likelihood(model.model, model.guide, x, num_samples, batch_size,
                                         max_memory=budget,
                                         bytes_per_particle=bytes_per_particle, log=log,
                                         progress=progress, seed=seed)
    if x.is_cuda:
        torch.cuda.synchronize()

    def summary() -> dict:
        result = summarize(points, num_samples)
        result.update(device=str(x.device), seconds=time.perf_counter() - start, seed=seed,
                      batch_size=batch_size, max_memory=budget, ranks=ranks().world_size)
        return result
    return on_main(summary), points


def save_results(directory: Path, summary: dict, points: PointEstimates) -> None:
    """``eval.json`` and ``eval_points.npz`` (see :func:`~pyro_vae.runs.results.save_result`)."""
    arrays = {"log_px": points.log_px, "elbo": points.elbo, "khat": points.khat, "ess": points.ess}
    save_result(directory, "eval", summary, arrays)


def check_writable(directory: Path, num_points: int) -> None:
    """Fail now, not after hours of work, if the results cannot be written into ``directory``:
    a probe file is written and removed, and the free space must hold the results."""
    probe = directory / ".write-probe"
    atomic_write(probe, b"probe")
    probe.unlink(missing_ok=True)
    needed = 4 * 8 * num_points + 2**16  # four float64 columns per point, and eval.json
    free = shutil.disk_usage(directory).free
    if free < needed:
        raise WriteError(f"could not write into {directory}: the disk is full ({free} bytes free, "
                         f"the results need about {needed})", errno.ENOSPC)


def describe_active_units(summary: dict) -> str:
    """"12 of 50", or per site as Burda et al. write it: "16+5 of 100+50 (z1+z2)"."""
    per_site = summary.get("active_units_per_site") or {}
    if len(per_site) < 2:
        return f"{summary['active_units']} of {summary['latent_dim']}"
    sizes = summary["latent_dim_per_site"]
    return (f"{'+'.join(str(v) for v in per_site.values())} of "
            f"{'+'.join(str(sizes[k]) for k in per_site)} ({'+'.join(per_site)})")


def describe(summary: dict) -> str:
    """The human-readable report that scripts print."""
    lines = [f"log p(x) = {summary['log_likelihood']:.3f} +- {summary['stderr']:.3f} nats "
             f"(NLL {summary['nll']:.3f}) on {summary['num_points']} {summary.get('split', '')} "
             f"images, K = {summary['num_samples']}",
             f"ELBO     = {summary['elbo']:.3f} +- {summary['elbo_stderr']:.3f}; gap (mean KL(q || "
             f"p(z|x))) = {summary['gap']:.3f}"]
    if "active_units" in summary:
        lines.append(f"active units: {describe_active_units(summary)}")
    if "psis" in summary:
        p = summary["psis"]
        lines.append(f"PSIS k-hat: median {p['khat_median']:.3f}, 90% {p['khat_q90']:.3f}, max "
                     f"{p['khat_max']:.3f}; {100 * p['share_khat_above_0.7']:.1f}% above 0.7; "
                     f"ESS median {p['ess_median']:.1f} of {summary['num_samples']}")
    lines.append(summary["trust"] or "The estimate can be trusted: PSIS k-hat is below 0.5 for "
                                      "most points and below 0.7 for at least 99% of them.")
    lines.append(f"{summary['seconds']:.1f} s on {summary['device']}")
    return "\n".join(lines)


@dataclass
class OpenedRun:
    """A trained run made ready for evaluation (see :func:`open_for_evaluation`)."""

    run: RunDir
    target: Path  # where the results go
    state: dict  # the checkpoint
    cfg: object  # the run's Config, with the overrides
    model: nn.Module  # with the checkpoint's weights, on the device
    x: torch.Tensor  # the images to evaluate
    which: str  # "best" or "last"
    description: str  # "runs/x (best.pt, epoch 12)"

    def provenance(self) -> dict:
        """What every result file records about the checkpoint it evaluated: its epoch, which
        file ("best"/"last") and its SHA-256 (``checkpoint_sha256``), so that a result is reused
        or compared only beside the very checkpoint it belongs to."""
        return {"epoch": self.state["epoch"], "checkpoint": self.which,
                "checkpoint_sha256": checkpoint_sha256(self.state)}


@contextmanager
def open_for_evaluation(run_dir: str | Path, split: str = "test", limit: Optional[int] = None,
                        device: Optional[str] = None, data_dir: Optional[str] = None,
                        out_dir: str | Path | None = None, trusted_imports: Iterable[str] = (),
                        checkpoint: str = "best"):
    """Open a run for an evaluation whose results go to ``out_dir`` (default: the run
    directory): the output directory is locked and checked for writing before any work, and
    the model is built with the checkpoint's weights. ``checkpoint``: "best" (best.pt, the epoch
    with the best validation ELBO, where the run has one; else the last) or "last".

    In a torchrun job rank 0 alone reads the checkpoint, locks ``out_dir`` and writes there; the
    other ranks get the checkpoint from it and load the data themselves."""
    run = RunDir(run_dir)
    target = Path(out_dir) if out_dir is not None else run.path
    overrides = {k: v for k, v in {"device": device, "data_dir": data_dir}.items() if v is not None}

    def read() -> tuple[str, dict]:
        path = checkpoint_path(run_dir, checkpoint)
        return path.name, load_checkpoint(path)
    name, state = on_main(read)
    cfg = together(lambda: run_config(state, run_dir, overrides, trusted_imports,
                                      source=str(run.path / name)))
    which = "best" if name == run.best_path.name else "last"
    with ExitStack() as stack:
        # everything that could stop the results from being written, before the work
        on_main(_nothing_computed(lambda: stack.enter_context(RunLock(make_directory(target)))),
                shared=False)
        torch_device = together(lambda: resolve_device(cfg.run.device))
        data = main_first(lambda: load_dataset(cfg.data.dataset, cfg.data.data_dir, torch_device,
                                               limit_test=limit if split == "test" else None,
                                               valid_size=cfg.data.valid_size))
        x = together(lambda: data.split(split)[:limit])
        on_main(_nothing_computed(lambda: check_writable(target, len(x))))
        model = build_model(cfg, data.image_shape).to(torch_device)
        together(lambda: load_weights(model, state["model"], run.path))
        note = " (the run has no best.pt: no validation split)" if checkpoint == "best" != which else ""
        yield OpenedRun(run, target, state, cfg, model, x, which,
                        f"{run.path} ({name}, epoch {state['epoch']}{note})")


def show_progress(progress: Optional[bool]) -> bool:
    """A progress bar on rank 0 only; by default when stderr is a terminal."""
    return ranks().main and (sys.stderr.isatty() if progress is None else progress)


def _nothing_computed(fn: Callable[[], object]) -> Callable[[], object]:
    """``fn``, with a WriteError's message saying that nothing was computed and what to do."""
    def checked():
        try:
            return fn()
        except WriteError as e:
            raise WriteError(f"{e}. Nothing was computed; pass --out DIR to write the results "
                             "elsewhere", e.errno) from None
    return checked


def evaluate_run(run_dir: str | Path, num_samples: int = 5000, split: str = "test",
                 limit: Optional[int] = None, batch_size: int = 100, device: Optional[str] = None,
                 seed: Optional[int] = None, max_memory: int | str = AUTO_MEMORY,
                 data_dir: Optional[str] = None, log: Callable[[str], None] = log_line,
                 progress: Optional[bool] = None, out_dir: str | Path | None = None,
                 trusted_imports: Iterable[str] = (), checkpoint: str = "best") -> dict:
    """Evaluate a checkpoint in ``run_dir``; write ``eval.json`` and ``eval_points.npz`` into
    ``out_dir`` (default: the run directory). ``checkpoint`` as for :func:`open_for_evaluation`.

    The report is logged before the files are written, and a failed write falls back to a
    temporary directory (:func:`save_results`). ``trusted_imports`` as for
    :func:`~pyro_vae.runs.opening.load_run`.
    """
    with open_for_evaluation(run_dir, split, limit, device, data_dir, out_dir, trusted_imports,
                             checkpoint) as opened:
        log = log_on_main(log)
        log(f"evaluating {opened.description} on {len(opened.x)} {split} images, K = {num_samples}"
            + (f", shared by {ranks().describe()}" if ranks().distributed else ""))
        summary, points = evaluate_model(opened.model, opened.x, num_samples, batch_size, max_memory,
                                         opened.cfg.run.seed if seed is None else seed, log,
                                         show_progress(progress))
        summary.update(split=split, **opened.provenance())

        def report() -> None:
            log(describe(summary))
            save_results(opened.target, summary, points)
        on_main(report)
    return summary
