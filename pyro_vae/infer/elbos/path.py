"""The path derivative: log q(z | x) at *stopped* guide parameters, z keeping its dependence on them.

STL and DReG drop the score term d log q_phi(z) / d phi (z held fixed) from the guide's gradient
and keep only the path through the reparameterized sample z = z(eps, phi). So log q must be
evaluated with phi detached while z stays differentiable.

- **General case** (:func:`stopped_guide_log_density`): the guide is run again at the sampled
  values (``poutine.replay``) with every parameter detached: module parameters through
  ``torch.func.functional_call`` on the module that owns the guide, ``pyro.param`` values by a
  messenger. In a hierarchical guide q(z1 | x) q(z2 | z1) this keeps the dependence of
  q(z2 | z1) on the sampled z1 (its parameters are a function of z1), which detaching the
  distribution's parameters would cut.
- **One reparameterized site** (:func:`detach_parameters`): nothing upstream of that site
  depends on phi through a sample, so rebuilding its distribution from detached parameters is
  the same thing without a second pass through the guide.
"""

from __future__ import annotations

import warnings
from functools import partial
from typing import Callable, Optional

import torch
from pyro import poutine
from pyro.poutine.messenger import Messenger
from torch import nn
from torch.distributions import Independent

from pyro_vae.infer.importance import particles_plate
from pyro_vae.models.sites import latent_sites, sample_sites


def detach_parameters(fn):
    """The same distribution with its parameters detached, or None where it cannot be rebuilt
    from its ``arg_constraints`` (then the general re-evaluation applies)."""
    if isinstance(fn, Independent):
        base = detach_parameters(fn.base_dist)
        return None if base is None else Independent(base, fn.reinterpreted_batch_ndims)
    params = {k: getattr(fn, k).detach() for k in fn.arg_constraints if k in fn.__dict__}
    try:
        return type(fn)(**params, validate_args=False)
    except (TypeError, ValueError):
        return None


class _DetachParams(Messenger):
    """``pyro.param`` values come back detached (parameters registered outside a module)."""

    def _pyro_post_param(self, msg):
        msg["value"] = msg["value"].detach()


class _Call(nn.Module):
    """Runs ``fn`` with ``owner`` as a submodule, so that ``functional_call`` can swap the
    owner's parameters for detached copies while ``fn`` (a method of the owner) runs."""

    def __init__(self, owner: nn.Module, fn: Callable):
        super().__init__()
        self.owner = owner
        self._fn = [fn]  # a list: not a submodule

    def forward(self, *args, **kwargs):
        return self._fn[0](*args, **kwargs)


def _owner(guide: Callable) -> Optional[nn.Module]:
    """The module whose parameters the guide uses: the guide's ``self``, or the guide itself, seen
    through Pyro handlers wrapped around it (``handler(guide)`` is a partial of Pyro's
    ``_context_wrap(handler, guide)``; a relaxation wraps the guide so)."""
    while isinstance(getattr(guide, "func", None), partial) and len(guide.func.args) == 2 \
            and isinstance(guide.func.args[0], Messenger):
        guide = guide.func.args[1]
    owner = getattr(guide, "__self__", guide)
    return owner if isinstance(owner, nn.Module) else None


def with_values(trace: poutine.Trace, values: dict[str, torch.Tensor]) -> poutine.Trace:
    """A copy of ``trace`` whose sites in ``values`` hold those values (for ``poutine.replay``)."""
    out = poutine.Trace()
    for name, site in trace.nodes.items():
        out.add_node(name, **({**site, "value": values[name]} if name in values else site))
    return out


def stopped_guide_log_density(guide: Callable, guide_trace: poutine.Trace, args, kwargs,
                              num_samples: int, max_plate_nesting: int) -> torch.Tensor:
    """``(K, B)`` log q(z | x) of the values in ``guide_trace`` with every guide parameter
    detached, z keeping its graph (see the module docstring)."""
    owner = _owner(guide)
    if owner is None and any("$$$" in s["name"] for s in guide_trace.nodes.values() if s["type"] == "param"):
        raise NotImplementedError(
            "stl and dreg with several reparameterized guide sites need the guide to be a method "
            "of the nn.Module that holds its networks (its parameters are detached through "
            "torch.func.functional_call)")
    particles = particles_plate(num_samples, max_plate_nesting)

    def rerun(*a, **k):
        with particles:
            return poutine.trace(poutine.replay(guide, trace=guide_trace)).get_trace(*a, **k)

    with _DetachParams(), warnings.catch_warnings():
        # pyro.module warns that detached copies (requires_grad False) are not registered
        warnings.filterwarnings("ignore", message=".*was not registered in the param store")
        if owner is None:
            trace = rerun(*args, **kwargs)
        else:
            detached = {f"owner.{n}": p.detach() for n, p in owner.named_parameters()}
            trace = torch.func.functional_call(_Call(owner, rerun), detached, args, kwargs)
    return sum(site["fn"].log_prob(site["value"]) for site in sample_sites(trace))


def path_log_density(guide: Callable, guide_trace: poutine.Trace, args, kwargs, num_samples: int,
                     max_plate_nesting: int) -> torch.Tensor:
    """``(K, B)`` log q at stopped parameters: by :func:`detach_parameters` where the guide has
    one reparameterized site of a rebuildable family, else by re-running the guide."""
    sites = sample_sites(guide_trace)
    reparameterized = [s for s in latent_sites(guide_trace) if s["fn"].has_rsample]
    if len(reparameterized) <= 1:
        stopped = [detach_parameters(s["fn"]) for s in sites]
        if all(fn is not None for fn in stopped):
            return sum(fn.log_prob(s["value"]) for fn, s in zip(stopped, sites))
    return stopped_guide_log_density(guide, guide_trace, args, kwargs, num_samples, max_plate_nesting)
