"""Objectives Pyro lacks, written as Pyro ELBO classes (``loss``, ``loss_and_grads``,
``differentiable_loss``) that work with ``pyro.infer.SVI``: one estimator per module."""

from pyro_vae.infer.elbos.disarm import ARM_ELBO, DisARM_ELBO
from pyro_vae.infer.elbos.dreg import DReG_ELBO
from pyro_vae.infer.elbos.rebar import REBAR_ELBO
from pyro_vae.infer.elbos.renyi import IWAE_ELBO, RenyiBound
from pyro_vae.infer.elbos.stl import STL_ELBO
from pyro_vae.infer.elbos.vimco import VIMCO_ELBO

__all__ = ["ARM_ELBO", "DReG_ELBO", "DisARM_ELBO", "IWAE_ELBO", "REBAR_ELBO", "RenyiBound", "STL_ELBO", "VIMCO_ELBO"]
