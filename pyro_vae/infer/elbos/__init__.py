"""Objectives Pyro lacks, written as Pyro ELBO classes (``loss``, ``loss_and_grads``,
``differentiable_loss``) that work with ``pyro.infer.SVI``: one estimator per module."""

from pyro_vae.infer.elbos.dreg import DReG_ELBO
from pyro_vae.infer.elbos.renyi import IWAE_ELBO, RenyiBound
from pyro_vae.infer.elbos.stl import STL_ELBO

__all__ = ["DReG_ELBO", "IWAE_ELBO", "RenyiBound", "STL_ELBO"]
