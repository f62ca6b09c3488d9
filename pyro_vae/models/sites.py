"""The site rules every model follows, and a probe that reads a model's structure off its traces.

Everything downstream of a model (objectives, log p(x), active units, figures) reads Pyro traces
and relies only on these rules:

- a ``pyro.plate("data", B)`` at dim -1 over the minibatch ``x`` of shape ``(B, x_dim)``;
- one observed site ``"x"`` inside it (``obs=x``), whose distribution's ``mean`` is the
  expected image (pixel probabilities for Bernoulli pixels);
- any number of latent sites inside the plate, with the same names in ``model`` and ``guide``,
  each with ``batch_shape == (B,)`` (event dimensions declared with ``.to_event``).

:func:`probe` traces a model once on two data points, checks the rules (one line per broken
rule, naming the site) and returns a :class:`Structure`: the latent sites in the model's order
(the first one is the top layer, drawn from the prior), whether each is reparameterized in the
guide, whether it is discrete and how many joint values it can take (what enumeration and the
discrete estimators need to know), and which guide sites each depends on directly, from Pyro's own
provenance tracking (:func:`pyro.infer.inspect.get_dependencies`).
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Optional

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.infer.inspect import get_dependencies
from pyro.poutine.util import site_is_subsample
from torch.distributions import Independent

from pyro_vae.core.errors import ConfigError

# The model has one plate ("data", dim -1); objectives that vectorize over particles put theirs
# at dim -2, and saying so spares Pyro a shape-guessing trace.
MAX_PLATE_NESTING = 1
DATA_PLATE = "data"
OBSERVED_SITE = "x"
# The optional label site of models that take labels (model(x, y=None), guide(x, y=None)):
# observed in the model when y is given (and absent from the guide), latent in both when not.
LABEL_SITE = "y"


@dataclass(frozen=True)
class LatentSite:
    name: str
    event_shape: tuple[int, ...]
    reparameterized: bool  # in the guide: Pyro differentiates through its sample
    depends_on: frozenset[str]  # the guide latent sites its q depends on directly
    family: str = ""  # the guide's distribution class, Independent unwrapped ("Bernoulli", "Normal")
    discrete: bool = False  # its support is discrete (in the guide)
    support_size: Optional[int] = None  # joint values of one data point's draw; None: continuous
    control_variate: bool = False  # the guide's site carries one (infer "control_variate": REBAR, RELAX)

    @property
    def size(self) -> int:
        return math.prod(self.event_shape)


def base_distribution(fn) -> dist.TorchDistribution:
    """The distribution under any ``.to_event``/``expand`` wrappers (``Independent``)."""
    while isinstance(fn, (Independent, dist.ExpandedDistribution)):
        fn = fn.base_dist
    return fn


def support_size(fn) -> Optional[int]:
    """How many values one draw of ``fn`` (a site's distribution, per data point) can take, or
    None where the support is continuous or unbounded. A Bernoulli event of D units has 2^D, a
    one-hot categorical event of N latents of C classes C^N, a categorical index C."""
    if not fn.support.is_discrete:
        return None
    base = base_distribution(fn)
    if isinstance(base, dist.Bernoulli):
        values = 2
    elif isinstance(base, dist.OneHotCategorical):
        values, event = base.event_shape[-1], base.event_shape[:-1]
        values **= math.prod(event)
    elif isinstance(base, dist.Categorical):
        values = base.logits.shape[-1]
    else:
        return None
    extra = fn.event_shape[:len(fn.event_shape) - len(base.event_shape)]
    return values ** math.prod(extra)


@dataclass(frozen=True)
class Structure:
    """A model's latent sites, in the model's order: ``latents[0]`` is the top layer."""

    latents: tuple[LatentSite, ...]
    guide_order: tuple[str, ...]

    @property
    def top(self) -> LatentSite:
        return self.latents[0]

    @property
    def mean_field(self) -> bool:
        """No guide latent site depends on another (q factorizes given x)."""
        return not any(site.depends_on for site in self.latents)

    @property
    def score_function_sites(self) -> list[str]:
        return [s.name for s in self.latents if not s.reparameterized]

    @property
    def reparameterized_sites(self) -> list[str]:
        return [s.name for s in self.latents if s.reparameterized]

    @property
    def discrete_sites(self) -> list[str]:
        return [s.name for s in self.latents if s.discrete]


def sample_sites(trace: poutine.Trace) -> list[dict]:
    """Sample sites proper (a plate's own subsample site is left out)."""
    return [site for site in trace.nodes.values()
            if site["type"] == "sample" and not site_is_subsample(site)]


def latent_sites(trace: poutine.Trace) -> list[dict]:
    return [site for site in sample_sites(trace) if not site["is_observed"]]


def _in_data_plate(site: dict) -> bool:
    return any(frame.name == DATA_PLATE and frame.dim == -1 for frame in site["cond_indep_stack"])


@contextmanager
def isolated(x: torch.Tensor, validate: bool = True):
    """A throwaway param store, a forked RNG (on ``x``'s device) and Pyro's validation on or off:
    running a model only to look at it changes no state (a resumed run's random stream included)."""
    devices = [x.device] if x.is_cuda else []
    with pyro.get_param_store().scope(), torch.random.fork_rng(devices=devices), \
            pyro.validation_enabled(validate):
        yield


def trace_once(model: Callable, guide: Callable, x: torch.Tensor,
               validate: bool = True) -> tuple[poutine.Trace, poutine.Trace]:
    """``(model_trace, guide_trace)``: the guide traced at ``x`` and the model replayed on it,
    :func:`isolated`."""
    with isolated(x, validate):
        guide_trace = poutine.trace(guide).get_trace(x)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(x)
    return model_trace, guide_trace


def probe(model: Callable, guide: Callable, x: torch.Tensor, name: str) -> Structure:
    """Trace ``model`` and ``guide`` on the first two rows of ``x`` and check the site rules.

    Runs :func:`isolated`: probing changes no state. ``name`` names the model in error messages.
    """
    x = x[:2]
    try:
        model_trace, guide_trace = trace_once(model, guide, x)
        with isolated(x):
            dependencies = get_dependencies(guide, (x,))["prior_dependencies"]
    except Exception as e:  # the user's code: any failure is a modelling error to report
        message = str(e).splitlines()[0] if str(e) else ""
        raise ConfigError(f"model {name!r}: running model(x) and guide(x) on two images failed "
                          f"({type(e).__name__}: {message})") from None
    _check_rules(model_trace, guide_trace, len(x), name)
    guide_latents = {site["name"]: site for site in latent_sites(guide_trace)}
    def described(site: dict) -> LatentSite:
        fn = guide_latents[site["name"]]["fn"]
        return LatentSite(site["name"], tuple(site["fn"].event_shape), bool(fn.has_rsample),
                          frozenset(dependencies.get(site["name"], {})) - {site["name"]},
                          type(base_distribution(fn)).__name__, bool(fn.support.is_discrete),
                          support_size(fn), guide_latents[site["name"]]["infer"].get("control_variate") is not None)

    latents = tuple(described(site) for site in latent_sites(model_trace))
    return Structure(latents, tuple(guide_latents))


def _check_rules(model_trace: poutine.Trace, guide_trace: poutine.Trace, batch: int, name: str) -> None:
    observed = [s["name"] for s in sample_sites(model_trace) if s["is_observed"]]
    if observed != [OBSERVED_SITE]:
        raise ConfigError(f"model {name!r}: the model must observe exactly one site named "
                          f"{OBSERVED_SITE!r} (pyro.sample('x', ..., obs=x)); it observes {observed}")
    for program, trace in (("model", model_trace), ("guide", guide_trace)):
        for site in sample_sites(trace):
            if not _in_data_plate(site):
                raise ConfigError(f"model {name!r}: site {site['name']!r} of the {program} is not "
                                  f"inside pyro.plate({DATA_PLATE!r}, x.shape[0]) at dim -1")
            if tuple(site["fn"].batch_shape) != (batch,):
                raise ConfigError(
                    f"model {name!r}: site {site['name']!r} of the {program} has batch_shape "
                    f"{tuple(site['fn'].batch_shape)} for {batch} images; it must be ({batch},): "
                    "declare the latent dimensions as an event with .to_event(1)")
    guide_observed = [s["name"] for s in sample_sites(guide_trace) if s["is_observed"]]
    if guide_observed:
        raise ConfigError(f"model {name!r}: the guide must not observe sites ({guide_observed})")
    in_model = [s["name"] for s in latent_sites(model_trace)]
    in_guide = [s["name"] for s in latent_sites(guide_trace)]
    if not in_model:
        raise ConfigError(f"model {name!r}: the model has no latent site")
    if sorted(in_model) != sorted(in_guide):
        raise ConfigError(f"model {name!r}: the model's latent sites {in_model} and the guide's "
                          f"{in_guide} must be the same")
