"""Hamiltonian Monte Carlo transitions for many independent chains at once, with per-image step
sizes: the Markov kernels of annealed importance sampling (:mod:`pyro_vae.evaluation.annealing`).

The state is a flat tensor ``z`` of shape ``(C, B, D)``: C chains for each of B images, D latent
dimensions. The target is given by a function that returns the log-density of every chain and
its gradient; chains never interact, so one call evaluates them all. Each image has its own step
size (shape ``(B,)``), shared by its chains and adapted after every transition toward an
acceptance rate of 0.65 by the multiplicative rule of the AIS code for VAEs (Wu et al. 2017,
tonywu95/eval_gen): x1.02 above the target, x0.98 below, clamped to [1e-4, 0.5]. Adapting from
the chains' past only keeps every transition a valid Metropolis-Hastings step for its target, so
AIS stays unbiased.

The mass matrix is the identity; a proposal whose energy is not finite is rejected.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

TARGET_ACCEPTANCE = 0.65
STEP_SIZE_INIT = 0.01
STEP_SIZE_MIN, STEP_SIZE_MAX = 1e-4, 0.5
STEP_SIZE_GROW, STEP_SIZE_SHRINK = 1.02, 0.98


@dataclass
class Point:
    """Chains' positions with the target's log-density and gradient there, and ``parts``: any
    further per-chain tensors the caller wants carried along with an accepted move (AIS keeps
    the two ends of its path, so that a new target along it costs no new evaluation)."""

    z: torch.Tensor  # (C, B, D)
    log_prob: torch.Tensor  # (C, B)
    grad: torch.Tensor  # (C, B, D)
    parts: tuple[torch.Tensor, ...] = ()  # each (C, B) or (C, B, D)

    def where(self, accept: torch.Tensor, other: "Point") -> "Point":
        """This point where ``accept`` (``(C, B)``) holds, else ``other``."""
        def pick(a, b):
            return torch.where(accept if a.dim() == accept.dim() else accept[..., None], a, b)
        return Point(pick(self.z, other.z), pick(self.log_prob, other.log_prob),
                     pick(self.grad, other.grad),
                     tuple(pick(a, b) for a, b in zip(self.parts, other.parts)))


# z (C, B, D) -> the Point there
LogDensity = Callable[[torch.Tensor], Point]


def hmc_transition(point: Point, log_density: LogDensity, step_size: torch.Tensor,
                   num_leapfrog: int) -> tuple[Point, torch.Tensor]:
    """One HMC transition of every chain from ``point`` (evaluated under the same target);
    returns the new point and which chains accepted (``(C, B)`` bools). ``step_size``: ``(B,)``,
    one per image."""
    eps = step_size[:, None]  # broadcasts over chains (dim 0) and latent dimensions (dim -1)
    momentum = torch.randn_like(point.z)
    p = momentum + 0.5 * eps * point.grad
    proposal = point
    for i in range(num_leapfrog):
        proposal = log_density(proposal.z + eps * p)
        p = p + (eps if i < num_leapfrog - 1 else 0.5 * eps) * proposal.grad
    energy_change = (0.5 * p.pow(2).sum(-1) - proposal.log_prob) - (0.5 * momentum.pow(2).sum(-1) - point.log_prob)
    log_uniform = torch.rand_like(energy_change).log()
    accept = torch.isfinite(energy_change) & (log_uniform < -energy_change)
    return proposal.where(accept, point), accept


def adapt_step_size(step_size: torch.Tensor, accept: torch.Tensor) -> torch.Tensor:
    """The next per-image step size from this transition's acceptance over the image's chains."""
    rate = accept.float().mean(0)
    factor = torch.where(rate > TARGET_ACCEPTANCE, STEP_SIZE_GROW, STEP_SIZE_SHRINK)
    return (step_size * factor).clamp(STEP_SIZE_MIN, STEP_SIZE_MAX)
