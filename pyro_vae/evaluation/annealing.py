"""The annealing path of AIS: from a start density p_0(z) to the posterior, and the chains moved
along it.

AIS (Neal 2001) moves C chains per image from a normalized start density p_0(z) (the guide
q(z | x), or the prior p(z)) to the posterior p(z | x) through the geometric path

    f_t(z) = p_0(z)^(1 - beta_t) p(x, z)^beta_t,    0 = beta_0 < beta_1 < ... < beta_T = 1,

with an HMC transition leaving each f_t invariant (:mod:`pyro_vae.evaluation.hmc`). Each chain's weight
sum_t (beta_t - beta_{t-1}) (log p(x, z_{t-1}) - log p_0(z_{t-1})) is an unbiased estimate of
p(x) in exp-space, so logmeanexp over the chains is a stochastic *lower* bound on log p(x) that
tightens as T grows; T = 1 is plain importance sampling from p_0. The beta schedule is
sigmoidal (Grosse et al. 2015), denser at both ends. Run backwards (descending betas) from an
exact posterior sample, the same loop gives BDMC's upper bound (:mod:`.bdmc`).

The log-densities come from Pyro traces of the model and the guide with the latent sites
conditioned on the chains' positions (all latent sites, concatenated into one vector per chain:
:class:`LatentLayout`), so every model whose latent sites are real-valued works, whatever its
prior or depth. Those traces can be replayed as a graph of tensor operations
(:mod:`.traced_ends`). This module is the mathematics of one batch of chains; batching, memory
and ranks are :mod:`.ais`'s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Optional

import torch
from pyro import poutine
from torch.distributions import constraints

from pyro_vae.core.errors import ConfigError
from pyro_vae.core.options import option, uses_flags
from pyro_vae.evaluation.hmc import STEP_SIZE_INIT, Point, adapt_step_size, hmc_transition
from pyro_vae.infer.importance import log_density, particles_plate
from pyro_vae.models.sites import OBSERVED_SITE, latent_sites, sample_sites

if TYPE_CHECKING:
    from pyro_vae.evaluation.traced_ends import TracedEnds

STARTS = ("guide", "prior")
SIGMOID_SCHEDULE_SHARPNESS = 4.0  # Grosse et al. 2015; eval_gen's default


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
                other = option("method", "iwae") if uses_flags() else "the importance-weighted estimate"
                raise ConfigError(f"AIS moves the latent sites with Hamiltonian Monte Carlo, which "
                                  f"needs real-valued sites; site {site['name']!r} has support "
                                  f"{support}. Use {other} for this model.")
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
        the traced graph where there is one (:class:`~.traced_ends.TracedEnds`), else from Pyro traces."""
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
