"""Priors over the latent code: modules whose ``forward()`` returns a Pyro distribution over z.

The interface, for the shipped priors and for users' own (``--prior my_pkg.my_mod:MyPrior``):

- The class is an ``nn.Module`` constructed as ``Class(latent_dim=D, **options)``, where the
  options are the config's ``prior_options`` mapping (plus, for shipped priors, their own keys).
- ``forward()`` takes no arguments and returns a distribution with ``event_shape == (D,)`` and
  ``batch_shape == ()``. The model's data plate broadcasts it over the minibatch and over
  vectorized particles, so ``log_prob`` must accept any leading batch dimensions.
- Learnable parameters are ordinary ``nn.Parameter``s or submodules: the model registers the prior
  with ``pyro.module("prior", ...)``, and the optimizer and checkpoints see them like any other.
- A prior that needs the model itself (VampPrior uses its ``encode_top``) or training data (to
  initialise) may define ``bind(model, train_data)``; it is called once, after the model is built.
- The prior is over the top latent layer: ``latent_dim`` is the last of the config's latent sizes.

A prior can also be registered under a name, as the shipped ones are (:func:`register_prior`):
then ``--prior NAME`` builds it through ``builder(prior, latent_dim, x_dim)``, where ``prior`` is
the config's prior section (:class:`~pyro_vae.config.PriorSection`), with no import path to
trust. A builder declares the section's knobs it reads (``reads=("prior_components",)``; a knob
set under a prior that does not read it is refused) and ``options=True`` if it reads
``prior.options`` (the ``prior_options`` key).
"""

from __future__ import annotations

import math
from typing import Any, Callable

import pyro.distributions as dist
import pyro.distributions.transforms as T
import torch
from pyro.nn import DenseNN
from torch import nn
from torch.distributions import kl_divergence
from torch.nn import functional as F

from pyro_vae.config import PriorSection
from pyro_vae.core.choices import add_rule, publish
from pyro_vae.core.errors import ConfigError
from pyro_vae.core.imports import import_path
from pyro_vae.core.registry import Registry
from pyro_vae.nn.mixture import DiagonalNormalMixture


class StandardNormalPrior(nn.Module):
    """N(0, I): the classic VAE prior. Buffers, not parameters, so it follows ``.to(device)``."""

    def __init__(self, latent_dim: int):
        super().__init__()
        self.latent_dim = latent_dim
        self.register_buffer("loc", torch.zeros(latent_dim))
        self.register_buffer("scale", torch.ones(latent_dim))

    def forward(self) -> dist.TorchDistribution:
        return dist.Normal(self.loc, self.scale).to_event(1)


class LearnedNormalPrior(nn.Module):
    """A diagonal Normal with learned mean and (softplus) scale, starting at N(0, I)."""

    def __init__(self, latent_dim: int):
        super().__init__()
        self.latent_dim = latent_dim
        self.loc = nn.Parameter(torch.zeros(latent_dim))
        self.raw_scale = nn.Parameter(torch.full((latent_dim,), math.log(math.e - 1)))  # softplus = 1

    def forward(self) -> dist.TorchDistribution:
        return dist.Normal(self.loc, F.softplus(self.raw_scale)).to_event(1)


class MixtureOfGaussiansPrior(nn.Module):
    """K diagonal Gaussians with learned weights, means and scales."""

    def __init__(self, latent_dim: int, components: int = 10):
        super().__init__()
        self.latent_dim = latent_dim
        self.logits = nn.Parameter(torch.zeros(components))
        self.locs = nn.Parameter(torch.randn(components, latent_dim))
        self.raw_scales = nn.Parameter(torch.zeros(components, latent_dim))

    def forward(self) -> dist.TorchDistribution:
        return DiagonalNormalMixture(self.logits, self.locs, F.softplus(self.raw_scales))


class VampPrior(nn.Module):
    """VampPrior (Tomczak & Welling 2018): p(z) = (1/K) sum_k q(z | u_k), the guide's posteriors
    at K learned pseudo-inputs u_k.

    Pseudo-inputs stay in the input range [0, 1] as the sigmoid of unconstrained parameters; they
    start at random training images (``init="data"``) or uniform noise (``"random"``). The
    encoder is the VAE's own, held by reference (not registered twice).
    """

    INITS = ("data", "random")  # the choices of vamp_init

    def __init__(self, latent_dim: int, components: int = 500, init: str = "data", x_dim: int = 784):
        super().__init__()
        if init not in self.INITS:
            raise ConfigError(f"unknown vamp_init {init!r}; choose one of: {', '.join(self.INITS)}")
        self.latent_dim, self.init = latent_dim, init
        self.raw_pseudo_inputs = nn.Parameter(torch.logit(torch.rand(components, x_dim) * 0.9 + 0.05))
        self._encoder: list = []

    def bind(self, vae: nn.Module, train_data: torch.Tensor | None) -> None:
        self._encoder[:] = [vae.encode_top]
        if self.init == "data" and train_data is not None:
            index = torch.randperm(len(train_data))[: len(self.raw_pseudo_inputs)]
            images = train_data[index].to(self.raw_pseudo_inputs)
            noise = 0.05 * torch.randn_like(images)
            with torch.no_grad():
                self.raw_pseudo_inputs[: len(index)] = torch.logit((images + noise).clamp(0.02, 0.98))

    @property
    def pseudo_inputs(self) -> torch.Tensor:
        return torch.sigmoid(self.raw_pseudo_inputs)

    def forward(self) -> dist.TorchDistribution:
        if not self._encoder:
            raise RuntimeError("VampPrior.bind(vae, data) must be called before use")
        loc, scale = self._encoder[0](self.pseudo_inputs)
        return DiagonalNormalMixture(torch.zeros(len(loc), device=loc.device, dtype=loc.dtype), loc, scale)


class FlowPrior(nn.Module):
    """A normalizing flow over N(0, I), from Pyro's invertible coupling transforms.

    Coupling layers invert in one pass, so ``log_prob`` of the guide's samples is as cheap as
    sampling; a fixed permutation between layers lets every dimension be transformed.
    """

    KINDS = {"spline": T.spline_coupling, "affine": T.affine_coupling}

    def __init__(self, latent_dim: int, flow: str = "spline", depth: int = 4, hidden: int = 64):
        super().__init__()
        if flow not in self.KINDS:
            raise ConfigError(f"unknown flow {flow!r}; choose one of: {', '.join(self.KINDS)}")
        if latent_dim < 2:
            raise ConfigError("a coupling flow prior needs latent_dim >= 2")
        self.latent_dim = latent_dim
        self.register_buffer("loc", torch.zeros(latent_dim))
        self.register_buffer("scale", torch.ones(latent_dim))
        self.layers = nn.ModuleList(self.KINDS[flow](latent_dim, hidden_dims=[hidden, hidden])
                                    for _ in range(depth))
        self._start_at_identity()
        for i in range(depth - 1):  # buffers, so that .to(device) moves them
            self.register_buffer(f"permutation{i}", torch.randperm(latent_dim))

    @torch.no_grad()
    def _start_at_identity(self) -> None:
        """Start at exactly N(0, I), as Glow starts its couplings at the identity: Pyro's random
        initialisation makes spline priors jagged densities with sharp spikes. Zero output layers
        give uniform bins and zero shifts; a spline's knot slopes are 1e-3 + softplus(u), so
        u = log(expm1(1 - 1e-3)) makes every slope 1 (the boundary slopes are 1 already)."""
        unit_slope = math.log(math.expm1(1 - 1e-3))
        for module in self.layers.modules():
            if isinstance(module, DenseNN):
                nn.init.zeros_(module.layers[-1].weight)
                nn.init.zeros_(module.layers[-1].bias)
            elif isinstance(module, T.Spline):
                for parameter in module.parameters(recurse=False):
                    nn.init.zeros_(parameter)
                module.unnormalized_derivatives.fill_(unit_slope)
        for module in self.layers.modules():
            if isinstance(module, T.ConditionalSpline):  # outputs: widths, heights, slopes, lambdas
                module.nn.layers[-1].bias[module.nn.param_slices[2]] = unit_slope

    def forward(self) -> dist.TorchDistribution:
        transforms = []
        for i, layer in enumerate(self.layers):
            transforms.append(layer)
            if i < len(self.layers) - 1:
                transforms.append(T.Permute(getattr(self, f"permutation{i}")))
        base = dist.Normal(self.loc, self.scale).to_event(1)
        return dist.TransformedDistribution(base, transforms)


class StudentTPrior(nn.Module):
    """Independent Student-t(df, 0, 1) coordinates: heavier tails than the Normal."""

    def __init__(self, latent_dim: int, df: float = 3.0):
        super().__init__()
        self.latent_dim = latent_dim
        self.register_buffer("df", torch.full((latent_dim,), float(df)))
        self.register_buffer("loc", torch.zeros(latent_dim))

    def forward(self) -> dist.TorchDistribution:
        return dist.StudentT(self.df, self.loc, torch.ones_like(self.loc)).to_event(1)


class LaplacePrior(nn.Module):
    """Independent Laplace(0, 1) coordinates: a sparsity-inducing, heavy-tailed prior."""

    def __init__(self, latent_dim: int):
        super().__init__()
        self.latent_dim = latent_dim
        self.register_buffer("loc", torch.zeros(latent_dim))

    def forward(self) -> dist.TorchDistribution:
        return dist.Laplace(self.loc, torch.ones_like(self.loc)).to_event(1)


# A prior's builder takes ``(prior, latent_dim, x_dim)``: the config's prior section (for its own
# knobs, such as ``prior.components``), the size of the top latent layer, and the pixels per image.
PRIORS = Registry(
    "prior",
    options=False,  # reads the section's options (prior_options; else they are refused, as unread)
    reads=(),  # the section's knobs it reads (flat keys); set under another prior, they are refused
    min_latent=1,  # the smallest top latent layer it can be built for
)
publish("prior", PRIORS)
publish("vamp_init", VampPrior.INITS)
publish("flow", tuple(FlowPrior.KINDS))


def register_prior(name: str, *, description: str = "", replace: bool = False,
                   **capabilities) -> Callable[[Callable], Callable]:
    """A decorator registering ``builder(prior, latent_dim, x_dim) -> nn.Module`` as
    ``--prior name`` (``prior``: the config's prior section): a prior of a new file, usable by
    name like the shipped ones. ``capabilities``: those of :data:`PRIORS`."""
    return PRIORS.register(name, description=description, replace=replace, **capabilities)


@register_prior("normal", description="N(0, I): the classic VAE prior")
def _normal(prior, latent_dim: int, x_dim: int) -> nn.Module:
    return StandardNormalPrior(latent_dim)


@register_prior("learned-normal", description="a diagonal Normal with learned mean and scale")
def _learned_normal(prior, latent_dim: int, x_dim: int) -> nn.Module:
    return LearnedNormalPrior(latent_dim)


@register_prior("mog", reads=("prior_components",),
                description="a learned mixture of prior_components (10) diagonal Gaussians")
def _mog(prior, latent_dim: int, x_dim: int) -> nn.Module:
    return MixtureOfGaussiansPrior(latent_dim, prior.components or 10)


@register_prior("vamp", reads=("prior_components", "vamp_init"),
                description="VampPrior: the guide's posteriors at prior_components (500) learned "
                            "pseudo-inputs")
def _vamp(prior, latent_dim: int, x_dim: int) -> nn.Module:
    return VampPrior(latent_dim, prior.components or 500, prior.vamp_init, x_dim)


@register_prior("flow", reads=("flow", "flow_depth", "flow_hidden"), min_latent=2,
                description="a spline or affine coupling flow over N(0, I)")
def _flow(prior, latent_dim: int, x_dim: int) -> nn.Module:
    return FlowPrior(latent_dim, prior.flow, prior.flow_depth, prior.flow_hidden)


@register_prior("student-t", reads=("prior_df",), description="independent Student-t(prior_df) coordinates")
def _student_t(prior, latent_dim: int, x_dim: int) -> nn.Module:
    return StudentTPrior(latent_dim, prior.df)


@register_prior("laplace", description="independent Laplace(0, 1) coordinates")
def _laplace(prior, latent_dim: int, x_dim: int) -> nn.Module:
    return LaplacePrior(latent_dim)


def import_prior(path: str) -> type:
    """``"package.module:ClassName"`` -> the class, or a ConfigError that says what failed."""
    return import_path(path, "prior", PRIORS.names())


@add_rule("prior")
def _importable(cfg) -> None:
    """A user prior's import path imports: checked with the config, before any data is loaded."""
    if cfg.prior.name not in PRIORS:
        import_prior(cfg.prior.name)


def build_prior(prior: PriorSection, latent_dim: int, x_dim: int = 784) -> nn.Module:
    """The prior module that a config's prior section (:class:`~pyro_vae.config.PriorSection`)
    names (a registered name or an import path), over a top latent layer of ``latent_dim``.
    An unknown name is refused with the registered ones."""
    if prior.name in PRIORS:
        return PRIORS.get(prior.name).factory(prior, latent_dim, x_dim)
    cls = import_prior(prior.name)
    try:
        module = cls(latent_dim=latent_dim, **(prior.options or {}))
    except Exception as e:  # the user's constructor: any error is a configuration problem
        raise ConfigError(f"prior {prior.name!r} could not be built with latent_dim and "
                          f"prior_options {prior.options}: {e}") from None
    if not isinstance(module, nn.Module):
        raise ConfigError(f"prior {prior.name!r} must be a torch.nn.Module, got {type(module).__name__}")
    return module


def check_prior(prior: nn.Module, latent_dim: int, name: str) -> None:
    """Refuse a prior that fails or returns the wrong thing, before any training."""
    try:
        d = prior()
    except Exception as e:
        raise ConfigError(f"prior {name!r}: forward() failed ({type(e).__name__}: {e}); it must take "
                          "no arguments and return a distribution over z") from None
    if not isinstance(d, torch.distributions.Distribution):
        raise ConfigError(f"prior {name!r}: forward() returned {type(d).__name__}, not a distribution")
    if tuple(d.event_shape) != (latent_dim,) or tuple(d.batch_shape) != ():
        raise ConfigError(f"prior {name!r} returned a distribution with batch_shape "
                          f"{tuple(d.batch_shape)} and event_shape {tuple(d.event_shape)}; it must "
                          f"be batch_shape () and event_shape ({latent_dim},) (use .to_event(1))")


def kl_description(q: Any, p: Any) -> str:
    """How TraceMeanField_ELBO treats KL(q || p) for a guide site's q and the model site's p:
    analytic where ``kl_divergence`` is registered for the pair, else a Monte Carlo estimate
    (silently, in Pyro)."""
    try:
        kl_divergence(q, p)
        return f"analytic (kl_divergence knows {_describe(q)} vs {_describe(p)})"
    except NotImplementedError:
        return f"Monte Carlo (no kl_divergence registered for {_describe(q)} vs {_describe(p)})"


def _describe(d) -> str:
    base = getattr(d, "base_dist", None)
    return f"{type(d).__name__}({type(base).__name__})" if base is not None else type(d).__name__
