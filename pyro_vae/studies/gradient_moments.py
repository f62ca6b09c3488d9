"""Measuring each estimator's gradients at fixed parameters: their per-element mean and variance,
hence the signal-to-noise ratio, for the encoder's and the decoder's parameters separately.

For each estimator, the same network (same weights) draws R independent gradients on the same
minibatch. Moments are accumulated in float64 running sums (:class:`_Moments`), so memory does
not grow with R. The parameters are grouped by the program that registers them, read off the
model's traces (:func:`parameter_groups`), so any model works.
"""

from __future__ import annotations

import statistics
import time
from typing import Any, Optional

import pyro
import torch

from pyro_vae.config import Config
from pyro_vae.core.console import log_line
from pyro_vae.core.errors import ConfigError
from pyro_vae.infer.objectives import build_objective, model_structure
from pyro_vae.models.sites import trace_once
from pyro_vae.studies.grad_variance_settings import DEFAULT_BASELINE_WARMUP, DEFAULT_PARTICLES, GROUPS, spec_config
from pyro_vae.training.step import step_inputs
from pyro_vae.training.trainer import non_module_params


class _Moments:
    """Running sums of x and x^2 per element (float64)."""

    def __init__(self):
        self.n, self.s, self.sq = 0, None, None

    def add(self, x: torch.Tensor) -> None:
        x = x.detach().double()
        self.s = x.clone() if self.s is None else self.s + x
        self.sq = x * x if self.sq is None else self.sq + x * x
        self.n += 1

    def summary(self) -> dict[str, float]:
        mean = self.s / self.n
        var = ((self.sq - self.n * mean * mean) / (self.n - 1)).clamp_min(0)
        informative = var > 0
        snr = mean[informative].abs() / var[informative].sqrt()
        return {"variance": var.mean().item(), "snr": snr.mean().item(),
                "mean_grad_norm": mean.norm().item()}


def parameter_groups(model, x: torch.Tensor) -> dict[str, list[torch.Tensor]]:
    """The model's parameters by the program that registers them, read off one trace of each:
    "encoder" (the guide's), "decoder" (the generative model's, the prior's included) and
    "baseline" (the networks of score-function baselines and REBAR's and RELAX's control
    variates, named in the guide sites' ``infer``). A parameter the guide and the model share
    (VampPrior's encoder) counts as the guide's."""
    model_trace, guide_trace = trace_once(model.model, model.guide, x)
    baseline = {id(p): p for site in guide_trace.nodes.values() if site["type"] == "sample"
                for net in [site["infer"].get("baseline", {}).get("nn_baseline"),
                            site["infer"].get("control_variate")] if net is not None
                for p in net.parameters()}
    groups: dict[str, dict[int, torch.Tensor]] = {"encoder": {}, "decoder": {}}
    for group, trace in (("encoder", guide_trace), ("decoder", model_trace)):
        for site in trace.nodes.values():
            if site["type"] != "param":
                continue
            value = site["value"]
            if id(value) not in baseline and all(id(value) not in g for g in groups.values()):
                groups[group][id(value)] = value
    return {**{g: list(params.values()) for g, params in groups.items()}, "baseline": list(baseline.values())}


def _warm_up_baseline(model, elbo, batches, steps: int, baseline_params: list[torch.Tensor]) -> None:
    """Let a baseline learn at the fixed model and guide parameters, on random training
    minibatches as in training: the decaying average settles, the baseline network is fitted by
    its own Adam (only its parameters move)."""
    optimizer = torch.optim.Adam(baseline_params, lr=1e-3) if baseline_params else None
    for _ in range(steps):
        elbo.loss_and_grads(model.model, model.guide, batches())
        if optimizer:
            optimizer.step()
        model.zero_grad(set_to_none=True)


def measure(model_factory, base: Config, x: torch.Tensor, estimators: list[str], repeats: int,
            num_particles: int = DEFAULT_PARTICLES, baseline_warmup: int = DEFAULT_BASELINE_WARMUP,
            batches=None, log=log_line, baseline_beta: Optional[float] = None) -> list[dict[str, Any]]:
    """One row per estimator. ``model_factory(cfg)`` returns the model at the shared weights;
    ``batches()`` returns a random training minibatch for the baselines' warm-up.

    Pyro keeps the decaying-average baseline per batch position, so on one fixed minibatch it
    would become a per-image baseline, far stronger than in training. Baselines are therefore
    warmed up on random minibatches and their state is restored before every measured draw.
    """
    rows = []
    for name in estimators:
        try:
            cfg = spec_config(base, name, num_particles, baseline_beta)
            vae = model_factory(cfg)
            structure = model_structure(vae, cfg, x)
            if cfg.model.estimator == "reparam" and structure.score_function_sites:
                raise ConfigError(f"the guide samples {', '.join(structure.score_function_sites)} "
                                  "without reparameterization (e.g. Bernoulli sites)")
        except ConfigError as e:  # e.g. meanfield on a hierarchical guide, arm on a Normal one
            log(f"  {name:<10} skipped: {e}")
            continue
        elbo = build_objective(cfg)
        model, guide = vae.model, vae.guide
        for handler in step_inputs(cfg, vae).values():  # the relaxation, as training applies it
            model, guide = handler(model), handler(guide)
        groups = parameter_groups(vae, x)
        moments = {g: _Moments() for g in GROUPS}
        seconds = []
        with pyro.get_param_store().scope():
            if cfg.model.baseline != "none":
                _warm_up_baseline(vae, elbo, batches or (lambda: x), baseline_warmup, groups["baseline"])
            frozen = non_module_params()
            for _ in range(repeats):
                for n, value in frozen.items():
                    pyro.get_param_store()[n] = value.clone()
                vae.zero_grad(set_to_none=True)
                start = time.perf_counter()
                elbo.loss_and_grads(model, guide, x)
                if x.is_cuda:
                    torch.cuda.synchronize()
                seconds.append(time.perf_counter() - start)
                for g in GROUPS:
                    moments[g].add(torch.cat([_grad(p) for p in groups[g]]))
        row = {"estimator": name, "elbo": cfg.objective.elbo, "num_particles": cfg.objective.num_particles,
               "ms_per_gradient": 1e3 * statistics.median(seconds)}
        for g in GROUPS:
            row.update({f"{g}_{k}": v for k, v in moments[g].summary().items()})
        rows.append(row)
        log(f"  {name:<10} encoder variance {row['encoder_variance']:.3e} SNR {row['encoder_snr']:.3f} | "
            f"decoder variance {row['decoder_variance']:.3e} SNR {row['decoder_snr']:.3f} | "
            f"{row['ms_per_gradient']:.1f} ms")
    return rows


def _grad(p: torch.Tensor) -> torch.Tensor:
    """The flattened gradient; zeros for a parameter this estimator's loss does not reach."""
    return (p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1)

