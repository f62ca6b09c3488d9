"""How the guide's latent site is estimated: reparameterized or score function, with baselines.

Pyro picks the gradient estimator per sample site from the site's distribution: a distribution
with ``has_rsample`` True is differentiated through its sample (reparameterization); one with
``has_rsample`` False gets the score-function (REINFORCE) estimator. Baselines for the latter
are passed in the site's ``infer`` dict and act only under ``TraceGraph_ELBO``.

``dist.Normal(...).has_rsample_(False)`` does not survive the broadcasting a plate applies (the
expanded copy is reparameterized again), so score-function sites use a subclass instead, as
Pyro's own tests do (``expand`` keeps the subclass).

``arm`` and ``disarm`` are antithetic estimators for Bernoulli sites (``pyro_vae.infer.elbos.disarm``),
each its own objective, and so are ``rebar`` and ``relax`` (``pyro_vae.infer.elbos.rebar``, with
the model's :class:`~pyro_vae.models.control_variates.RelaxControlVariate`); a model with Normal sites is refused at start-up with the reason
(``pyro_vae.infer.discrete_rules``), so its guide only needs to run for the probe that finds them.
"""

from __future__ import annotations

from typing import Optional

import pyro.distributions as dist
import torch
from torch import nn

from pyro_vae.config import flag
from pyro_vae.core.choices import add_unread, publish
from pyro_vae.core.options import option

ESTIMATORS = ("reparam", "score", "arm", "disarm", "rebar", "relax")
BASELINES = ("none", "avg", "nn", "nn-only")
NETWORK_BASELINES = ("nn", "nn-only")  # the baselines with a network (BaselineNet) per site
publish("estimator", ESTIMATORS)
publish("baseline", BASELINES)


class ScoreFunctionNormal(dist.Normal):
    """A Normal that Pyro must not reparameterize: its gradient comes from the score function."""

    has_rsample = False


class BaselineNet(nn.Module):
    """NVIL's input-dependent baseline (Mnih & Gregor 2014): x -> the cost's deviation from its
    running mean under ``--baseline nn``, the whole cost under ``nn-only`` (no running mean)."""

    def __init__(self, x_dim: int, hidden: int = 100):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(x_dim, hidden), nn.Tanh(), nn.Linear(hidden, 1))
        # Start at zero: the baseline begins as the running mean alone (nn) or as no baseline
        # (nn-only), instead of an untrained network's noise.
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)


def has_baseline_network(baseline: str) -> bool:
    """Whether baseline ``baseline`` has a :class:`BaselineNet` per score-function site, which the
    model owns (and trains, and saves) like its other networks."""
    return baseline in NETWORK_BASELINES


def latent_distribution(loc: torch.Tensor, scale: torch.Tensor, estimator: str) -> dist.TorchDistribution:
    """The guide's diagonal Normal over z (event dim 1), reparameterized or not."""
    if estimator in ("reparam", "arm", "disarm", "rebar", "relax"):  # the others: refused at start-up
        return dist.Normal(loc, scale).to_event(1)
    if estimator == "score":
        return ScoreFunctionNormal(loc, scale).to_event(1)
    raise ValueError(f"unknown estimator {estimator!r}; choose one of {', '.join(ESTIMATORS)}")


def baseline_infer(baseline: str, x: torch.Tensor, beta: float = 0.9,
                   net: Optional[nn.Module] = None) -> dict:
    """The ``infer`` dict of a score-function site for ``TraceGraph_ELBO``'s baselines."""
    if baseline == "none":
        return {}
    if baseline == "avg":
        return {"baseline": {"use_decaying_avg_baseline": True, "baseline_beta": beta}}
    if baseline == "nn":
        # NVIL centres the cost with a running mean and lets the network fit the residual; in
        # Pyro the two baselines add up, and the network's regression target is what remains.
        # Alone, a network would need ~1e5 Adam steps just to reach the mean cost (~100 nats).
        return {"baseline": {"use_decaying_avg_baseline": True, "baseline_beta": beta,
                             "nn_baseline": net, "nn_baseline_input": x}}
    if baseline == "nn-only":
        # NVIL as the REBAR code trains it: the network alone, no running mean. Nothing lives in
        # Pyro's param store, so the step compiles; the network must learn the mean cost itself
        # (its output starts at 0), which that code speeds up with a 10 x learning rate
        # (--baseline-lr-scale 10).
        return {"baseline": {"nn_baseline": net, "nn_baseline_input": x}}
    raise ValueError(f"unknown baseline {baseline!r}; choose one of {', '.join(BASELINES)}")


def baseline_networks(model: nn.Module) -> list[nn.Parameter]:
    """The parameters of every NVIL baseline network of ``model`` (its :class:`BaselineNet`
    submodules), which ``baseline_lr_scale`` trains at their own learning rate."""
    return [p for module in model.modules() if isinstance(module, BaselineNet) for p in module.parameters()]


def _unread(cfg, defaults) -> dict[str, str]:
    """``baseline_lr_scale`` without a baseline network."""
    if (not has_baseline_network(cfg.model.baseline)
            and cfg.optim.baseline_lr_scale != defaults.optim.baseline_lr_scale):
        return {"baseline_lr_scale": f"{flag('baseline_lr_scale')} applies only with "
                                     f"{option('baseline', 'nn')} or {option('baseline', 'nn-only')}, "
                                     f"and baseline is {cfg.model.baseline!r}; drop it"}
    return {}


add_unread("baseline_lr_scale", _unread)
