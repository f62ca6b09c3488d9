"""Annealed importance sampling (AIS) estimates of log p(x), and bidirectional Monte Carlo (BDMC)
bounds: the gold standard that the importance-weighted estimate is checked against.

AIS (Neal 2001) moves C chains per image from a normalized start density p_0(z) (the guide
q(z | x), or the prior p(z)) to the posterior p(z | x) through the geometric path

    f_t(z) = p_0(z)^(1 - beta_t) p(x, z)^beta_t,    0 = beta_0 < beta_1 < ... < beta_T = 1,

with an HMC transition leaving each f_t invariant (:mod:`pyro_vae.evaluation.hmc`). Each chain's weight
sum_t (beta_t - beta_{t-1}) (log p(x, z_{t-1}) - log p_0(z_{t-1})) is an unbiased estimate of
p(x) in exp-space, so logmeanexp over the chains is a stochastic *lower* bound on log p(x) that
tightens as T grows; T = 1 is plain importance sampling from p_0. The beta schedule is
sigmoidal (Grosse et al. 2015), denser at both ends.

BDMC (Grosse et al. 2015) brackets log p(x) on data simulated from the model, where an exact
posterior sample is known (the z that generated x): AIS run backwards from it to p_0 gives an
unbiased estimate of 1 / p(x), hence a stochastic *upper* bound; forward AIS gives the lower
one. The gap between the two bounds is an upper bound (in expectation) on either one's error,
so it says whether the chains were long enough. It is valid on simulated data only.

The log-densities come from Pyro traces of the model and the guide with the latent sites
conditioned on the chains' positions (all latent sites, concatenated into one vector per chain),
so every model whose latent sites are real-valued works, whatever its prior or depth. Running
those traces at every leapfrog step costs the host about as much as the arithmetic on a CPU,
and far more than it on a GPU (15-20 ms per annealing step whatever the batch), so the two ends
of the path and their gradients are traced once per shape into a graph of tensor operations and
replayed (:class:`TracedEnds`, as the compiled training step is: :mod:`pyro_vae.infer.lowering`); a
model that cannot be traced runs the Pyro traces at every step, as before.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch
from pyro import poutine
from torch.distributions import constraints
from tqdm.auto import tqdm

from pyro_vae.core.console import log_line
from pyro_vae.core.distributed import batch_span, gather_on_main, log_on_main, on_main, ranks, share_note, stream_seed
from pyro_vae.core.errors import ConfigError
from pyro_vae.evaluation.evaluate import (
    AUTO_MEMORY,
    evaluation_context,
    halved_after_out_of_memory,
    is_out_of_memory,
    memory_budget,
    particle_bytes,
    release_memory,
    standard_error,
)
from pyro_vae.evaluation.hmc import STEP_SIZE_INIT, Point, adapt_step_size, hmc_transition
from pyro_vae.infer.importance import log_density, particles_plate
from pyro_vae.infer.lowering import LoweringFailed, operation_count, trace_graph
from pyro_vae.models.sites import OBSERVED_SITE, isolated, latent_sites, sample_sites

STARTS = ("guide", "prior")
SIGMOID_SCHEDULE_SHARPNESS = 4.0  # Grosse et al. 2015; eval_gen's default
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


def sigmoid_schedule(num_steps: int, sharpness: float = SIGMOID_SCHEDULE_SHARPNESS) -> list[float]:
    """beta_0 = 0, ..., beta_T = 1 along a rescaled sigmoid (denser where the path bends most)."""
    if num_steps < 1:
        raise ValueError("AIS needs at least one step")
    t = torch.linspace(-sharpness, sharpness, num_steps + 1, dtype=torch.float64)
    s = torch.sigmoid(t)
    betas = ((s - s[0]) / (s[-1] - s[0])).tolist()
    betas[0], betas[-1] = 0.0, 1.0
    return betas


@dataclass(frozen=True)
class LatentLayout:
    """Where each latent site lives in the flat state vector of a chain."""

    names: tuple[str, ...]
    event_shapes: tuple[tuple[int, ...], ...]

    @classmethod
    def of(cls, trace: poutine.Trace) -> "LatentLayout":
        sites = latent_sites(trace)
        for site in sites:
            support = inner = site["fn"].support
            while hasattr(inner, "base_constraint"):  # independent(...), mixtures of ...
                inner = inner.base_constraint
            if inner is not constraints.real:
                raise ConfigError(f"AIS moves the latent sites with Hamiltonian Monte Carlo, which "
                                  f"needs real-valued sites; site {site['name']!r} has support "
                                  f"{support}. Use --method iwae for this model.")
        return cls(tuple(s["name"] for s in sites), tuple(tuple(s["fn"].event_shape) for s in sites))

    @property
    def sizes(self) -> list[int]:
        return [math.prod(shape) for shape in self.event_shapes]

    def flatten(self, values: dict[str, torch.Tensor]) -> torch.Tensor:
        """``{site: (..., *event_shape)}`` -> ``(..., D)``."""
        parts = [values[name].reshape(*values[name].shape[:values[name].dim() - len(shape)], -1)
                 for name, shape in zip(self.names, self.event_shapes)]
        return torch.cat(parts, dim=-1)

    def unflatten(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        pieces = torch.split(z, self.sizes, dim=-1)
        return {name: piece.reshape(*z.shape[:-1], *shape)
                for name, piece, shape in zip(self.names, pieces, self.event_shapes)}


class AnnealingPath:
    """The path from p_0(z) to p(x, z) for a batch of images ``x``, with C chains per image.

    :meth:`ends` evaluates both ends and their gradients at once (one model trace, one guide
    trace when p_0 is the guide); :meth:`point` combines them for any beta, so moving along the
    path costs no new evaluation.
    """

    def __init__(self, model: Callable, guide: Callable, x: torch.Tensor, num_chains: int,
                 start: str = "guide", layout: Optional[LatentLayout] = None,
                 traced: Optional["TracedEnds"] = None):
        if start not in STARTS:
            raise ConfigError(f"unknown AIS start {start!r}; choose one of {', '.join(STARTS)}")
        self.model, self.guide, self.x, self.num_chains, self.start = model, guide, x, num_chains, start
        self.layout = layout
        self.traced = traced  # None: Pyro traces at every evaluation

    def _trace(self, program: Callable, values: Optional[dict] = None) -> poutine.Trace:
        if values is not None:
            program = poutine.condition(program, data=values)
        with particles_plate(self.num_chains):
            return poutine.trace(program).get_trace(self.x)

    def sample_start(self) -> torch.Tensor:
        """``(C, B, D)`` draws from p_0: the guide's latent sites, or the model's (the prior)."""
        trace = self._trace(self.guide if self.start == "guide" else poutine.block(
            self.model, hide=[OBSERVED_SITE]))
        if self.layout is None:
            self.layout = LatentLayout.of(trace)
        values = {name: trace.nodes[name]["value"] for name in self.layout.names}
        shape = (self.num_chains, len(self.x))
        return self.layout.flatten({k: v.expand(*shape, *v.shape[2:]) for k, v in values.items()}).detach()

    def ends(self, z: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``(log p_0(z), log p(x, z), their gradients)`` at ``z`` of shape ``(C, B, D)``: from
        the traced graph where there is one (:class:`TracedEnds`), else from Pyro traces."""
        if self.traced is not None:
            return self.traced(self, z)
        return self.pyro_ends(z)

    def pyro_ends(self, z: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """:meth:`ends` read off Pyro traces of the model and the guide, conditioned on ``z``."""
        with torch.enable_grad():
            z = z.detach().requires_grad_(True)
            values = self.layout.unflatten(z)
            model_trace = self._trace(self.model, values)
            log_joint = log_density(model_trace)
            if self.start == "guide":
                log_start = log_density(self._trace(self.guide, values))
            else:
                log_start = sum(site["fn"].log_prob(site["value"]) for site in sample_sites(model_trace)
                                if site["name"] in self.layout.names)
            shape = z.shape[:2]
            log_start, log_joint = log_start.expand(shape), log_joint.expand(shape)
            grad_joint, = torch.autograd.grad(log_joint.sum(), z, retain_graph=True)
            grad_start, = torch.autograd.grad(log_start.sum(), z, allow_unused=True)
        if grad_start is None:
            grad_start = torch.zeros_like(z)
        return log_start.detach(), log_joint.detach(), grad_start, grad_joint

    @staticmethod
    def point(z: torch.Tensor, ends: tuple[torch.Tensor, ...], beta: float) -> Point:
        """The point of f_beta at ``z``; ``ends`` from :meth:`ends` at ``z``."""
        log_start, log_joint, grad_start, grad_joint = ends
        return Point(z, log_start + beta * (log_joint - log_start),
                     grad_start + beta * (grad_joint - grad_start), ends)

    def log_density(self, beta: float) -> Callable[[torch.Tensor], Point]:
        return lambda z: self.point(z, self.ends(z), beta)


class TracedEnds:
    """:meth:`AnnealingPath.pyro_ends` recorded once per shape as a graph of tensor operations
    (:func:`~pyro_vae.infer.lowering.trace_graph`: the forward pass and the backward pass that gives the
    gradients in z) and replayed at every leapfrog step, without Pyro's handlers and traces.

    The graph reads the model's parameters and buffers, the images and z as inputs; what else
    the model reads (a prior built once by ``fixed_prior()``) is fixed in the graph, so one
    instance serves one evaluation, during which nothing changes. Tracing runs
    :func:`~pyro_vae.models.sites.isolated` (the random stream untouched). Where tracing fails (Python
    control flow on tensor values, results whose shape depends on the data: the flow prior's
    spline bins), the first failure is logged and Pyro's traces serve every later call.
    """

    def __init__(self, params: list[torch.Tensor], log: Callable[[str], None] = log_line):
        self.params, self.log = params, log
        self.graphs: dict[tuple, torch.fx.GraphModule] = {}
        self.problem: Optional[str] = None  # why tracing failed

    @classmethod
    def of(cls, model, log: Callable[[str], None] = log_line) -> "TracedEnds":
        """For a model (an ``nn.Module``: its parameters and buffers are the graph's inputs)."""
        tensors = [*model.parameters(), *model.buffers()] if isinstance(model, torch.nn.Module) else []
        return cls(tensors, log)

    def graph(self, path: AnnealingPath, z: torch.Tensor) -> Optional[torch.fx.GraphModule]:
        """The graph for the shapes of ``path.x`` and ``z``, traced now if it is new; None where
        the model cannot be traced."""
        key = (tuple(path.x.shape), tuple(z.shape), z.dtype, z.device, path.start, path.num_chains)
        if self.problem is None and key not in self.graphs:
            try:
                with isolated(path.x, validate=False):
                    x = path.x.contiguous()
                    twin = AnnealingPath(path.model, path.guide, x, path.num_chains, path.start,
                                           path.layout)
                    self.graphs[key] = trace_graph(lambda params, x_, z_: tuple(twin.pyro_ends(z_)),
                                                   self.params, x, z)
            except LoweringFailed as e:
                if e.__cause__ is not None and is_out_of_memory(e.__cause__):
                    raise e.__cause__  # not the model's fault: the batch is halved (ais_batches)
                self.problem = str(e)
                self.log(f"AIS: the model could not be traced into a graph ({e}); Pyro traces it "
                         "at every leapfrog step instead")
        return self.graphs.get(key)

    def operations(self) -> int:
        """Tensor operations per evaluation (of the first graph; 0 if none)."""
        return operation_count(next(iter(self.graphs.values()))) if self.graphs else 0

    def __call__(self, path: AnnealingPath, z: torch.Tensor) -> tuple[torch.Tensor, ...]:
        # Contiguous inputs: a graph records a reshape as a view or a copy by the strides it
        # was traced with (reverse AIS starts from an expanded z, then moves to fresh ones).
        z = z.detach().contiguous()
        graph = self.graph(path, z)
        if graph is None:
            return path.pyro_ends(z)
        with torch.no_grad():  # the graph holds the backward pass's operations itself
            return tuple(graph.forward(self.params, path.x.contiguous(), z))


@dataclass
class AnnealingResult:
    log_weights: torch.Tensor  # (C, B)
    acceptance: torch.Tensor  # (B,) mean acceptance rate of the image's transitions
    step_size: torch.Tensor  # (B,) the final adapted step size


def anneal(path: AnnealingPath, z: torch.Tensor, betas: list[float], num_leapfrog: int,
           step_size: float = STEP_SIZE_INIT) -> AnnealingResult:
    """Run every chain from ``z`` (a draw from f_{betas[0]}) along ``betas``; the log-weights
    estimate log(Z_last / Z_first) per chain. Ascending betas are forward AIS, descending ones
    reverse AIS. No transition is made at the last beta: it would not change the weights."""
    ends = path.ends(z)
    log_w = torch.zeros_like(ends[0])
    steps = torch.full((z.shape[1],), step_size, device=z.device, dtype=z.dtype)
    accepted = torch.zeros_like(steps)
    for t in range(1, len(betas)):
        log_start, log_joint = ends[0], ends[1]
        log_w = log_w + (betas[t] - betas[t - 1]) * (log_joint - log_start)
        if t == len(betas) - 1:
            break
        point, accept = hmc_transition(path.point(z, ends, betas[t]), path.log_density(betas[t]),
                                       steps, num_leapfrog)
        z, ends = point.z, point.parts
        steps = adapt_step_size(steps, accept)
        accepted += accept.float().mean(0)
    transitions = len(betas) - 2
    acceptance = accepted / transitions if transitions else torch.full_like(steps, math.nan)
    return AnnealingResult(log_w, acceptance, steps)


def log_mean_exp(log_w: torch.Tensor) -> torch.Tensor:
    """logmeanexp over the chains (dim 0)."""
    return torch.logsumexp(log_w, dim=0) - math.log(log_w.shape[0])


def images_per_batch(model, x: torch.Tensor, num_chains: int, batch_size: int,
                     max_memory: int | str, log: Optional[Callable[[str], None]] = None) -> int:
    """At most ``batch_size`` images, as many as ``max_memory`` holds (bytes, a size, or "auto":
    :func:`~pyro_vae.evaluation.evaluate.memory_budget`, where ``log`` hears what it chose): each chain
    costs the activations of one particle (:func:`~pyro_vae.evaluation.evaluate.particle_bytes`), three
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


def simulate(model, num: int, x_dim: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, LatentLayout]:
    """``num`` images x ~ p(x) from the model, with the latent draws that generated them
    (flat, ``(num, D)``): exact posterior samples for BDMC's reverse chains."""
    placeholder = torch.zeros(num, x_dim, device=device)
    trace = poutine.trace(poutine.uncondition(model.model)).get_trace(placeholder)
    layout = LatentLayout.of(poutine.trace(model.model).get_trace(placeholder[:1]))
    x = trace.nodes[OBSERVED_SITE]["value"].detach()
    return x, layout.flatten({name: trace.nodes[name]["value"] for name in layout.names}).detach(), layout


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
