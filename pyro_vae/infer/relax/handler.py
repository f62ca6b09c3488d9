"""The relaxation handler: every discrete latent site of a program sampled and scored as its
Concrete relaxation, and the temperature schedule.

:class:`Relaxation` wraps the model and the guide alike. At each latent sample site whose
distribution is a Bernoulli or a one-hot categorical (``.to_event`` wrappers kept) it puts the
logit-space Concrete distribution with the same logits in its place
(:mod:`~pyro_vae.infer.relax.concrete`): the guide draws the logit y reparameterized, the model,
replayed at the guide's values, scores that same y under the relaxation of its own distribution,
and every Pyro ELBO then computes Maddison et al.'s objective log p_T(x, z) - log q_T(z | x); with
the ``discrete_kl`` scoring (what ``meanfield`` trains) the sites' KL is that of the discrete
distributions, Jang et al.'s objective E_q log p(x | z_T) - KL(q || p); with ``mass``
(``relax: concrete-mass``) each site is scored by its discrete distribution's log-mass at the
relaxed value, the objective of Tucker et al.'s REBAR code (see :mod:`.concrete`). The
trace records y; the program itself is handed the relaxed value z (sigmoid(y), or exp(y) on the
simplex), or with ``straight_through`` the discrete value z rounds to, whose gradient is z's
(the straight-through estimator; Pyro's ``Relaxed*StraightThrough`` distributions do the same
by an attribute on the sample, which a traced graph would lose).

The handler must wrap the program directly, inside any ``poutine.trace`` (as it does in the
training step): the value is changed after the trace has recorded y.
"""

from __future__ import annotations

import math
from typing import Optional

import pyro.distributions as dist
import torch
from pyro.poutine.util import site_is_subsample
from torch.distributions import Bernoulli, Independent, OneHotCategorical

from pyro_vae.infer.relax.concrete import ExpRelaxedOneHot, LogitConcrete, LogitRelaxedBernoulli
from pyro_vae.infer.step_input import StepInput
from pyro_vae.models.sites import base_distribution

# A discrete family -> its Concrete relaxation in logit space.
RELAXATIONS: dict[type, type] = {Bernoulli: LogitRelaxedBernoulli, OneHotCategorical: ExpRelaxedOneHot}


class NotRelaxable(ValueError):
    """A discrete site without a Concrete relaxation (a Categorical index, a Poisson count, ...)."""


def relaxed_distribution(fn, temperature: torch.Tensor, scoring: str = "density",
                         shift: bool = False) -> Optional[dist.TorchDistribution]:
    """``fn``'s Concrete relaxation at ``temperature``, its ``.to_event``/``expand`` wrappers kept;
    None where ``fn`` is continuous. ``scoring`` and ``shift``: how the relaxed site is scored and
    drawn (:class:`~pyro_vae.infer.relax.concrete.LogitConcrete`). Raises :class:`NotRelaxable`
    for a discrete family that has none."""
    if isinstance(fn, Independent):
        base = relaxed_distribution(fn.base_dist, temperature, scoring, shift)
        return None if base is None else dist.Independent(base, fn.reinterpreted_batch_ndims)
    if isinstance(fn, dist.ExpandedDistribution):
        base = relaxed_distribution(fn.base_dist, temperature, scoring, shift)
        return None if base is None else base.expand(fn.batch_shape)
    for family, relaxation in RELAXATIONS.items():
        if isinstance(fn, family):
            return relaxation(temperature, fn.logits, scoring, shift)
    if fn.support.is_discrete:
        raise NotRelaxable(f"a {type(fn).__name__} site has no Concrete relaxation (only Bernoulli "
                           "and OneHotCategorical sites do)")
    return None


class Relaxation(StepInput):
    """Replaces every discrete latent site by its Concrete relaxation at ``temperature`` (a 0-dim
    tensor, changed in place between steps: see :class:`~pyro_vae.infer.step_input.StepInput`);
    see the module docstring. ``scoring``: ``density``, ``discrete_kl`` (the sites'
    ``kl_divergence`` is their discrete distributions', for ``meanfield``) or ``mass``;
    ``shift``: Tucker et al.'s shifted sample (:mod:`.concrete`). ``annealed``: the temperature
    changes every step (for the run's log)."""

    def __init__(self, temperature: torch.Tensor, straight_through: bool = False, annealed: bool = False,
                 scoring: str = "density", shift: bool = False):
        super().__init__(temperature, changes="annealing changes the temperature" if annealed else None)
        self.straight_through, self.scoring, self.shift = straight_through, scoring, shift

    @property
    def temperature(self) -> torch.Tensor:
        return self.value

    def _pyro_sample(self, msg) -> None:
        if msg["is_observed"] or site_is_subsample(msg):  # a plate's own subsample site
            return
        relaxed = relaxed_distribution(msg["fn"], self.value, self.scoring, self.shift)
        if relaxed is not None:
            msg["fn"] = relaxed

    def _pyro_post_sample(self, msg) -> None:
        # Runs after every handler outside this one, poutine.trace included, has seen y.
        base = base_distribution(msg["fn"])
        if msg["is_observed"] or not isinstance(base, LogitConcrete):
            return
        y = msg["value"]
        relaxed = base.relaxed_value(y)
        if self.straight_through:  # the discrete value forward, the relaxed one's gradient
            relaxed = base.discrete_value(y) + (relaxed - relaxed.detach())
        msg["value"] = relaxed


def relaxation_of(objective, temperature: torch.Tensor) -> Relaxation:
    """The :class:`Relaxation` that the config's objective section asks for, at ``temperature``:
    ``concrete-mass`` scores by the discrete log-mass, ``meanfield`` by the discrete KL, any
    other objective by the Concrete densities."""
    scoring = ("mass" if objective.relax == "concrete-mass"
               else "discrete_kl" if objective.elbo == "meanfield" else "density")
    return Relaxation(temperature, objective.straight_through, annealed=objective.temperature_anneal > 0,
                      scoring=scoring, shift=objective.relax_shift)


def temperature_at(step: int, objective) -> float:
    """The temperature of the (0-based) training ``step``: Jang et al.'s schedule
    T_step = max(T_min, T exp(-R step)), or T throughout where R (``temperature_anneal``) is 0.
    ``objective``: the config's objective section."""
    if not objective.temperature_anneal:
        return objective.temperature
    return max(objective.temperature_min,
               objective.temperature * math.exp(-objective.temperature_anneal * step))
