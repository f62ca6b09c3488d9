"""KL warm-up (Sonderby et al. 2016; Tomczak & Welling 2018 warm up over 100 epochs).

Early in training the KL term pulls every posterior onto the prior before the decoder has learned
to use z, and the units it switches off rarely come back. Warm-up trains on

    E_q[ log p(x | z) + beta * (log p(z) - log q(z | x)) ],   beta = min(1, epochs done / E),

rising linearly, step by step, from ~0 to 1 over the first ``kl_warmup`` = E epochs. It is done
the Pyro way: a handler (:class:`LatentScale`) multiplies the scale of every latent sample site,
in the model and the guide alike, so Pyro's ELBOs weight those sites' log-densities (and
``TraceMeanField_ELBO`` its analytic KL terms) by beta. Only objectives that are a sum of site
terms take it (``trace``, ``tracegraph``, ``meanfield``); in a K-sample bound the latent terms
sit inside a log-mean-exp, where scaling them is not warm-up but a different bound, so those are
refused (:func:`~pyro_vae.infer.objectives.check_compatibility`). Evaluation never scales: the test and
validation ELBOs a run reports are the true (beta = 1) ELBO.
"""

from __future__ import annotations

import torch

from pyro_vae.infer.step_input import StepInput


class LatentScale(StepInput):
    """Multiplies the log-density of every latent (unobserved) sample site by ``beta``, a 0-dim
    tensor changed in place between steps (a traced step takes it as an input: see
    :class:`~pyro_vae.infer.step_input.StepInput`)."""

    def __init__(self, beta: torch.Tensor):
        super().__init__(beta, changes="KL warm-up changes beta")

    @property
    def beta(self) -> torch.Tensor:
        return self.value

    def _process_message(self, msg):
        if msg["type"] == "sample" and not msg["is_observed"]:
            msg["scale"] = self.beta * msg["scale"]


def warmup_beta(step: int, steps_per_epoch: int, warmup_epochs: float) -> float:
    """beta for the (0-based) training ``step``: the epochs completed by the end of that step over
    ``warmup_epochs``, at most 1 (1 throughout if ``warmup_epochs`` is 0)."""
    if warmup_epochs <= 0:
        return 1.0
    return min(1.0, (step + 1) / (steps_per_epoch * warmup_epochs))
