"""The learned control variate of REBAR (Tucker et al. 2017) and RELAX (Grathwohl et al. 2018) for
one layer of Bernoulli latents, owned by the model like NVIL's baseline network.

REBAR's control variate is the ELBO's integrand f itself, evaluated at a Concrete relaxation of the
code and scaled: c(z) = eta * f(sigmoid(z / lambda)); RELAX adds a free-form network,
c(z) = eta * f(sigmoid(z / lambda)) + r_rho(sigmoid(z / lambda), x). eta, lambda and rho are
trained to minimize the variance of the gradient estimate (:mod:`pyro_vae.infer.elbos.rebar`).

The guide hands the module to the objective in its site's ``infer`` dict, as Pyro's baselines
are handed to ``TraceGraph_ELBO``: ``infer={"control_variate": module, "control_variate_input": x}``
(:func:`control_variate_infer`). Its parameters are the model's, so one optimizer trains them,
checkpoints save them and a compiled step is traced over them.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn

CONTROLLED = ("rebar", "relax")  # the estimators that train with a learned control variate


class RelaxControlVariate(nn.Module):
    """eta and the temperature lambda (REBAR's, starting at 1 and 0.5 as in their code), and with
    ``network`` RELAX's r_rho: one tanh hidden layer of ``hidden`` units on the relaxed code and
    the image, its output layer started at zero so that training starts from REBAR."""

    def __init__(self, x_dim: int, latent_dim: int, network: bool = False, hidden: int = 200):
        super().__init__()
        self.eta = nn.Parameter(torch.ones(()))
        self.log_temperature = nn.Parameter(torch.tensor(math.log(0.5)))
        self.net: Optional[nn.Sequential] = None
        if network:
            self.net = nn.Sequential(nn.Linear(x_dim + latent_dim, hidden), nn.Tanh(), nn.Linear(hidden, 1))
            nn.init.zeros_(self.net[-1].weight)
            nn.init.zeros_(self.net[-1].bias)

    @property
    def temperature(self) -> torch.Tensor:
        return self.log_temperature.exp()

    def forward(self, f: torch.Tensor, relaxed: torch.Tensor, x: Optional[torch.Tensor]) -> torch.Tensor:
        """c at relaxed codes ``relaxed`` ``(..., B, D)`` where the integrand is ``f`` ``(..., B)``."""
        c = self.eta * f
        if self.net is not None:
            inputs = torch.cat([relaxed, x.expand(*relaxed.shape[:-1], x.shape[-1])], -1)
            c = c + self.net(inputs).squeeze(-1)
        return c


def control_variate_infer(module: Optional[RelaxControlVariate], x: torch.Tensor) -> dict:
    """The ``infer`` dict of a Bernoulli guide site trained by REBAR or RELAX (empty without one)."""
    return {} if module is None else {"control_variate": module, "control_variate_input": x}
