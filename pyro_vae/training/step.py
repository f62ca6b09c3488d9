"""One SVI step: the objective's loss and gradients, then an optimizer step.

It computes what ``pyro.infer.SVI.step`` does: by default from a graph traced once
(:mod:`pyro_vae.infer.lowering`), with ``compile`` off by ``elbo.loss_and_grads(model, guide, x)``.
The optimizer differs from SVI's: one ``torch.optim.Adam`` over ``VAE.parameters()`` instead of
``pyro.optim.Adam``, which keeps a separate optimizer per parameter tensor. A single torch
optimizer has a plain ``state_dict`` for checkpoints and is the same optimizer the hand-written
PyTorch reference in ``benchmarks/`` uses.

Pyro's validation (distribution arguments, site shapes) runs on the first step of every run
(compiled: while tracing), where a modelling mistake would show, and is then switched off: on an
MLP-sized model it costs about 5% of a step. NaN and inf are caught by the loop's own check on
every loss instead.
"""

from __future__ import annotations

import math
from typing import Optional

import pyro
import torch
from pyro.infer import ELBO, TraceGraph_ELBO

from pyro_vae.config import Config
from pyro_vae.core.errors import ConfigError
from pyro_vae.core.options import option, uses_flags
from pyro_vae.infer.elbos.semi_supervised import SemiSupervisedELBO
from pyro_vae.infer.lowering import LoweredStep, LoweringFailed, lowering_problem
from pyro_vae.infer.objectives import build_objective
from pyro_vae.infer.relax import relaxation_of, temperature_at
from pyro_vae.infer.step_input import StepInput
from pyro_vae.infer.warmup import LatentScale, warmup_beta
from pyro_vae.models.estimators import baseline_networks
from pyro_vae.training.data_parallel import sum_loss_and_gradients


def make_optimizer(cfg: Config, model: torch.nn.Module) -> torch.optim.Optimizer:
    """Adam over the model's parameters: one group, or with ``baseline_lr_scale`` a second group
    of the NVIL baseline networks at ``lr_scale`` times the learning rate (the schedule keeps the
    ratio: :func:`~pyro_vae.training.graphed.set_learning_rate`)."""
    parameters = list(model.parameters())
    if not parameters:
        raise ConfigError(f"model {cfg.model.name!r} has no parameters to train: keep its networks as "
                          "attributes (submodules) of the model, as docs/models.md (\"Your own model\") shows")
    scale, lr = cfg.optim.baseline_lr_scale, cfg.optim.lr
    baselines = baseline_networks(model) if scale != 1 else []
    if baselines:
        ids = {id(p) for p in baselines}
        parameters = [{"params": [p for p in parameters if id(p) not in ids], "lr_scale": 1.0},
                      {"params": baselines, "lr": lr * scale, "lr_scale": scale}]
    return torch.optim.Adam(parameters, lr=lr, betas=tuple(cfg.optim.adam_betas), eps=cfg.optim.adam_eps)


def switched_off(key: str) -> str:
    """A boolean setting turned off, as the reader types it: ``--no-compile`` or ``compile=False``."""
    return option(f"no_{key}") if uses_flags() else option(key, False)


class SVIStep:
    """One stochastic-variational-inference step; returns the minibatch loss (-ELBO, summed).

    Compiled (the default): the loss and gradients come from one traced graph per input shape
    (:mod:`pyro_vae.infer.lowering`), then the optimizer steps. Eager: ``elbo.loss_and_grads`` as in
    ``pyro.infer.SVI.step``. ``reason`` says why a step asked to compile runs eagerly (None if
    compiled); a model that cannot be traced falls back to eager on its first step.

    ``inputs``: the handlers that model and guide run under whose number changes between steps
    (:class:`~pyro_vae.infer.step_input.StepInput`), by the name their value has in the run's
    records: ``beta`` (KL warm-up), ``temperature`` (a relaxation; applied innermost).
    """

    def __init__(self, model: torch.nn.Module, elbo: ELBO, optimizer: torch.optim.Optimizer,
                 compile: bool = True, reason: Optional[str] = None,
                 inputs: Optional[dict[str, StepInput]] = None, data_parallel: bool = False):
        self.elbo, self.optimizer = elbo, optimizer
        # In a torchrun job: the loss and gradients of this rank's share of the batch are summed
        # over the ranks before the optimizer steps (pyro_vae.training.data_parallel).
        self.data_parallel = data_parallel
        # Bind once: ``model.model`` makes a new bound-method object on every access.
        self.model, self.guide = model.model, model.guide
        self.inputs = dict(inputs or {})
        for handler in self.inputs.values():
            self.model, self.guide = handler(self.model), handler(self.guide)
        self.params = list(model.parameters())
        self.lowered = LoweredStep(elbo, self.model, self.guide, self.params, list(self.inputs.values())) \
            if compile and reason is None else None
        self.reason = reason if compile else switched_off("compile")
        self.validated = False

    def prepare(self, *batch: torch.Tensor) -> str:
        """Compile for the shapes of ``batch`` now (random stream untouched); returns how steps
        will run."""
        if self.lowered is not None:
            try:
                return f"compiled ({self.lowered.operations(*batch)} tensor operations per step)"
            except LoweringFailed as e:
                self._fall_back(e)
        return f"eager ({self.reason})"

    @property
    def scale(self) -> Optional[LatentScale]:
        """KL warm-up: the latent sites of model and guide weighted by its beta (None: off)."""
        return self.inputs.get("beta")

    @property
    def changing(self) -> list[str]:
        """What changes the step's inputs every step (for the run's log), if anything does."""
        return [handler.changes for handler in self.inputs.values() if handler.changes]

    def set_beta(self, beta: float) -> None:
        """The KL warm-up weight of the next steps (in place: a compiled step reads it)."""
        self.inputs["beta"].set(beta)

    def set_inputs(self, values: dict[str, float]) -> None:
        """The values of the next steps' inputs, by name (see :func:`scheduled_values`)."""
        for name, value in values.items():
            self.inputs[name].set(value)

    def _fall_back(self, error: LoweringFailed) -> None:
        self.lowered, self.reason = None, f"the model could not be traced ({error})"

    def __call__(self, *batch: torch.Tensor) -> float:
        """One step on ``batch``: ``x``, or a semi-supervised step's ``x, x_labelled, y_labelled``."""
        if self.lowered is None:
            return self._eager(*batch)
        try:
            loss_tensor, grads = self.lowered(*batch)  # traced on the first step of a shape
        except LoweringFailed as e:
            self._fall_back(e)
            return self._eager(*batch)
        if self.data_parallel:
            loss_tensor, grads = sum_loss_and_gradients(loss_tensor, grads)
        for p, g in zip(self.params, grads):  # replaced on every step: no zero_grad needed
            p.grad = g
        loss = loss_tensor.item()
        if not math.isfinite(loss):  # no update; the gradients stay for the caller to diagnose
            return loss
        self.optimizer.step()
        return loss

    def _eager(self, *batch: torch.Tensor) -> float:
        with pyro.validation_enabled(not self.validated):
            loss = self.elbo.loss_and_grads(self.model, self.guide, *batch)
        self.validated = True
        if self.data_parallel:
            total, grads = sum_loss_and_gradients(torch.tensor(loss, device=batch[0].device),
                                                  [p.grad for p in self.params])
            for p, g in zip(self.params, grads):
                p.grad = g
            loss = total.item()
        if not math.isfinite(loss):  # no update: the parameters stay as they were, and the
            return loss  # gradients stay for the caller to diagnose
        self.optimizer.step()
        self.optimizer.zero_grad()
        return loss


def objective_problem(elbo: ELBO) -> Optional[str]:
    """Why a step with the objective instance ``elbo`` (given in place of the config's) cannot be
    compiled, or None. The compiled step needs the objective's differentiable loss
    (:func:`pyro_vae.infer.lowering.differentiable_loss`); Pyro's ``Jit*`` objectives compile
    themselves with ``torch.jit``, which tracing cannot follow."""
    name = type(elbo).__name__
    if name.startswith("Jit"):
        return f"{name} compiles itself with torch.jit"
    if not isinstance(elbo, TraceGraph_ELBO) and not callable(getattr(elbo, "differentiable_loss", None)):
        return f"{name} has no differentiable_loss to trace"
    return None


def make_step(cfg: Config, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
              data_parallel: bool = False, elbo: Optional[ELBO] = None) -> SVIStep:
    """The run's step: compiled unless ``compile`` is off or the configuration cannot be traced;
    under the handlers of :func:`step_inputs`; summed over the ranks of a torchrun job if
    ``data_parallel``. ``elbo``: an objective instance used instead of the one the config names
    (compiled where it can be, else eager). With ``labels``, the objective is taken over
    unlabelled and labelled images (:class:`~pyro_vae.infer.elbos.semi_supervised.SemiSupervisedELBO`)."""
    reason = lowering_problem(cfg) or (objective_problem(elbo) if elbo is not None else None)
    inputs = step_inputs(cfg, model)
    elbo = build_objective(cfg) if elbo is None else elbo
    if cfg.data.labels is not None:  # steps of (x, x_labelled, y_labelled)
        elbo = SemiSupervisedELBO(elbo, cfg.objective.aux_loss)
    return SVIStep(model, elbo, optimizer, cfg.run.compile, reason, inputs, data_parallel)


def step_inputs(cfg: Config, model: torch.nn.Module) -> dict[str, StepInput]:
    """The training step's handlers whose number changes between steps, by the name of their
    value in the run's records: with ``relax``, the :class:`~pyro_vae.infer.relax.Relaxation` of
    the discrete sites (training only: evaluation runs the discrete model); with ``kl_warmup``,
    a :class:`~pyro_vae.infer.warmup.LatentScale`. Their values are set before every step from
    :func:`scheduled_values`."""
    objective, inputs = cfg.objective, {}
    if objective.relax == "none" and not objective.kl_warmup:
        return inputs
    parameter = next(model.parameters())
    device = parameter.device
    if objective.relax != "none":
        temperature = torch.tensor(temperature_at(0, objective), dtype=parameter.dtype, device=device)
        inputs["temperature"] = relaxation_of(objective, temperature)
    if objective.kl_warmup > 0:
        inputs["beta"] = LatentScale(torch.ones((), device=device))
    return inputs


def scheduled_values(cfg: Config, step: int, steps_per_epoch: int) -> dict[str, float]:
    """The values of :func:`step_inputs` for the (0-based) training ``step``: functions of the
    step alone, so a resumed run continues their schedules from its saved step."""
    values = {}
    if cfg.objective.kl_warmup:
        values["beta"] = warmup_beta(step, steps_per_epoch, cfg.objective.kl_warmup)
    if cfg.objective.relax != "none":
        values["temperature"] = temperature_at(step, cfg.objective)
    return values
