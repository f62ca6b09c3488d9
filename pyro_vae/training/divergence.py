"""Why did training diverge? A look at the model and guide on the batch where it happened.

Called once, after the loss or a parameter became NaN or infinite. It checks every module's
parameters and gradients and evaluates every sample site's value and log-density on that batch,
so the message can name the likely cause (a prior that returns non-finite densities, a decoder
whose logits overflowed, an encoder whose scale collapsed) instead of always blaming the
learning rate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from pyro_vae.models.sites import trace_once


@dataclass
class Cause:
    text: str  # what went wrong, e.g. "the decoder's pixel log-likelihood is not finite"
    prior: bool  # the prior is to blame (its settings or code), not the optimizer


def non_finite_modules(model: nn.Module) -> dict[str, list[str]]:
    """``{"parameters": [...], "gradients": [...]}``: the model's submodules with a NaN or inf."""
    found: dict[str, list[str]] = {"parameters": [], "gradients": []}
    for name, module in model.named_children():
        params = list(module.parameters())
        if any(not torch.isfinite(p).all() for p in params):
            found["parameters"].append(name)
        if any(p.grad is not None and not torch.isfinite(p.grad).all() for p in params):
            found["gradients"].append(name)
    return found


@torch.no_grad()
def first_non_finite_site(model, guide, x: torch.Tensor) -> Optional[tuple[str, str]]:
    """``("guide" or "model", site name)`` of the first sample site whose value or log-density
    is not finite: the guide's sites first (the model scores the guide's values)."""
    model_trace, guide_trace = trace_once(model, guide, x, validate=False)
    for program, trace in (("guide", guide_trace), ("model", model_trace)):
        for name, site in trace.nodes.items():
            if site["type"] != "sample":
                continue
            value = site["value"]
            if not torch.isfinite(value).all() or not torch.isfinite(site["fn"].log_prob(value)).all():
                return program, name
    return None


def likely_cause(model, x: Optional[torch.Tensor], prior_name: str, top_site: str) -> Cause:
    """The most specific explanation that the parameters, gradients and sites support.
    ``top_site``: the model's top latent site, the one drawn from the prior."""
    modules = non_finite_modules(model)
    if modules["parameters"]:
        owners = " and ".join(modules["parameters"])
        return Cause(f"the {owners} parameters became NaN or infinite after an update",
                     prior=False)
    site = first_non_finite_site(model.model, model.guide, x) if x is not None else None
    if site == ("model", top_site):
        return Cause(f"the prior {prior_name!r} gave a NaN or infinite log-density for the "
                     "guide's samples", prior=True)
    if site is not None and site[0] == "guide":
        return Cause(f"the guide's q({site[1]} | x) became degenerate (its samples or their "
                     "log-density are not finite: the encoder's scale collapsed or overflowed)",
                     prior=False)
    if site is not None:
        return Cause(f"the model's log-density of site {site[1]!r} is not finite (the network "
                     "that parameterizes it overflowed)", prior=False)
    if modules["gradients"]:
        return Cause(f"the gradients of the {' and '.join(modules['gradients'])} overflowed",
                     prior=False)
    return Cause("no single site or module is to blame (the objective's estimate overflowed)",
                 prior=False)
