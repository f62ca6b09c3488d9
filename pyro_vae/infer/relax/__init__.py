"""Continuous relaxations of discrete latent sites (``relax: concrete``).

During training only, every Bernoulli and one-hot categorical latent site of the model and the
guide is replaced by its Concrete relaxation at temperature T (Maddison, Mnih & Teh 2017; Jang,
Gu & Poole 2017), so the reparameterized objectives (``trace``, ``iwae``, ``dreg``, ``stl``, ...)
differentiate through it; evaluation (test and validation ELBO, log p(x), figures) runs the
discrete model. :mod:`.concrete`: the distributions, in logit space; :mod:`.handler`: the Pyro
handler and the temperature schedule; :mod:`.checks`: what is refused, and the start-up probe
under the relaxation.
"""

from pyro_vae.infer.relax.checks import check_relaxation, relaxed_structure
from pyro_vae.infer.relax.concrete import ExpRelaxedOneHot, LogitConcrete, LogitRelaxedBernoulli
from pyro_vae.infer.relax.handler import (
    NotRelaxable,
    Relaxation,
    relaxation_of,
    relaxed_distribution,
    temperature_at,
)

__all__ = ["ExpRelaxedOneHot", "LogitConcrete", "LogitRelaxedBernoulli", "NotRelaxable", "Relaxation",
           "check_relaxation", "relaxation_of", "relaxed_distribution", "relaxed_structure", "temperature_at"]
