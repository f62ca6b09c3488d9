"""The model section: the model family and everything its constructor receives (networks,
latent sizes, the guide's gradient estimator). The family's own defaults fill what is not
given (``pyro_vae.models`` publishes the families; see :meth:`ModelSection.family_defaults`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Optional

from pyro_vae.config.sections.base import Section, setting
from pyro_vae.config.values import flag, option_list, shown
from pyro_vae.core.choices import choices
from pyro_vae.core.errors import ConfigError
from pyro_vae.core.options import option

FAMILY = "the model family's default (see pyro_vae.models)"


@dataclass
class ModelSection(Section):
    """The model family and what its constructor receives: networks, latent sizes, the guide's
    gradient estimator. Where none is given, the family's default (``pyro_vae.models``)."""

    section: ClassVar[str] = "model"
    # What every family (and a user model) starts from, before its own defaults.
    COMMON_DEFAULTS: ClassVar[dict[str, Any]] = {
        "hidden": [400, 400], "latent_dim": [50], "activation": "relu", "upper_hidden": [100, 100],
        "estimator": "reparam", "discrete_prior": "uniform"}

    name: str = setting(
        "vae", key="model", choices="model", import_path=True,
        help="{names} | package.module:Class (a model of your own)",
        doc="`vae`, `hvae`, a registered family, or `package.module:Class` (see "
            "[Models](models.md#models))")
    options: dict[str, Any] = setting(
        key="model_options", factory=dict,
        help="keyword options for a user-defined model, as JSON on the command line",
        doc="keyword options for a user-defined model: a YAML mapping, or JSON on the command line")
    arch: str = setting(
        "mlp", choices="arch", help="{names} (the networks next to x)",
        doc="`mlp` or `conv`: the networks next to x (see [Models](models.md#models))")
    hidden: Optional[list[int]] = setting(
        None, shown=FAMILY,
        help="hidden layer sizes between x and the first latent layer, e.g. --hidden 200 200 "
             "(default: vae 400 400, hvae 200 200, sbn 200 200, categorical 512 256)",
        doc="hidden layer sizes between x and the first latent layer, encoder order "
            "(`--hidden 200 200`); the decoder mirrors them")
    upper_hidden: Optional[list[int]] = setting(
        None, shown=FAMILY,
        help="hvae: hidden layer sizes between consecutive latent layers (default 100 100)",
        doc="`hvae`: hidden layer sizes between consecutive latent layers, mirrored in the "
            "generative path")
    activation: Optional[str] = setting(
        None, choices="activation", shown=FAMILY,
        help="relu | tanh | softplus | elu | leaky_relu | gated (GatedDense layers; default: "
             "vae relu, hvae tanh, categorical relu)",
        doc="`relu`, `tanh`, `softplus`, `elu`, `leaky_relu`, or `gated` (GatedDense hidden "
            "layers; `mlp` only)")
    latent_dim: Optional[list[int]] = setting(
        None, aliases=("latent_dims",), shown=FAMILY,
        help="latent sizes, bottom layer first: one for vae (default 50), one per layer for "
             "hvae (default 100 50) and sbn (200), for categorical how many categorical latents "
             "(20); --latent-dims is the same flag",
        doc="latent sizes, bottom layer first: one for `vae`, one per layer for `hvae` and `sbn`, "
            "the number of categorical latents for `categorical` "
            "(`--latent-dim 100 50`; `--latent-dims` and the YAML key `latent_dims` mean the "
            "same); the prior is over the last")
    logvar_range: Optional[list[float]] = setting(
        None, shown="none",
        help="clamp the guide's log-variance to [LOW, HIGH] (hardtanh), e.g. -6 2 as in the "
             "VampPrior code (default: softplus scale, no clamp)",
        doc="`LOW HIGH`: the guide's scale is exp(v / 2) with its log-variance v clamped to "
            "[LOW, HIGH] (the VampPrior code: `-6 2`); none: a softplus scale")
    estimator: Optional[str] = setting(
        None, choices="estimator", shown=FAMILY,
        help="{names}: the gradient estimator of the guide's latent sites (default: score for the "
             "discrete models sbn and categorical, else reparam; arm and disarm: Bernoulli sites, "
             "e.g. --model sbn; rebar and relax: one Bernoulli layer)",
        doc="gradient estimator for the guide's latent sites: `reparam` (reparameterization), "
            "`score` (score function, REINFORCE; the default of the discrete models, whose sites "
            "cannot be reparameterized), `arm` / `disarm` (antithetic, for Bernoulli sites) or "
            "`rebar` / `relax` (a tuned control variate, for one Bernoulli layer; `sbn` builds it): "
            "each of these four trains with its own `--elbo`")
    baseline: str = setting(
        "none", choices="baseline",
        help="none | avg | nn | nn-only (score-function baselines, with --elbo tracegraph)",
        doc="baseline for `--estimator score` under `--elbo tracegraph`: `none`, `avg` (decaying "
            "average of the cost, per position in the batch), `nn` (that average plus a network on "
            "x fitted to the rest, trained jointly; Pyro's two baselines together) or `nn-only` "
            "(the network alone, as the REBAR code's NVIL: no state outside the model, so the step "
            "compiles; pair it with `--baseline-lr-scale 10` as that code does)")
    baseline_beta: float = setting(
        0.9, help="decay of the avg baseline's moving average",
        doc="decay of the moving average in the `avg` and `nn` baselines")

    likelihood: str = setting(
        "bernoulli", choices="likelihood",
        help="{names}: p(x | z), the observation model (bernoulli for binary pixels; "
             "logistic or logistic-mixture for 8-bit grey levels, with --binarize none)",
        doc="the observation model p(x | z): `bernoulli` (binary pixels), `continuous-bernoulli` "
            "or `gaussian` (densities on [0, 1]: 8-bit data are dequantized), `logistic` or "
            "`logistic-mixture` (masses of the 256 levels of 8-bit data); the decoder's outputs "
            "per pixel are the likelihood's (see [Likelihoods](models.md#likelihoods-and-data))")
    likelihood_options: dict[str, Any] = setting(
        key="likelihood_options", factory=dict,
        help="options of the likelihood, as JSON, e.g. '{\"variance\": \"image\"}' for gaussian",
        doc="options of the likelihood: `gaussian` reads `variance`, `pixel` (a learned scale "
            "per value, from the decoder; the default), `image` (one per image) or `shared` (one "
            "per pixel position, not amortized)")
    mixtures: int = setting(
        10, minimum=1, help="logistic-mixture: components M per pixel location (PixelCNN++: 10)",
        doc="`logistic-mixture`: the components M of the mixture per pixel location (PixelCNN++ "
            "and NVAE use 10); the decoder emits 3 M values per location for grey images, 10 M "
            "for colour ones")

    sbn_mapping: str = setting(
        "linear", choices=("linear", "nonlinear"),
        help="sbn: linear (each conditional's logits affine in the layer below) | nonlinear (two "
             "tanh layers of --hidden sizes, then linear)",
        doc="`sbn`: the map between consecutive layers, `linear` (affine logits) or `nonlinear` "
            "(`hidden` tanh layers, 200 200 by default, then affine), as in REBAR and RELAX")
    quadrants: int = setting(
        1, choices=(1, 2, 3), help="cvae: quadrants of each digit given (1: bottom-left; 2: left half; "
                                   "3: all but the bottom-right); the model predicts the rest",
        doc="`cvae`: how many quadrants of each image are given, 1 (the bottom-left), 2 (the left "
            "half) or 3 (all but the bottom-right), as in Pyro's CVAE example; the model predicts "
            "the other pixels")
    categories: int = setting(
        10, minimum=2, help="categorical: classes of each categorical latent (--latent-dim is how "
                            "many latents)",
        doc="`categorical`: classes C of each of the `latent_dim` categorical latents (Jang et "
            "al.: 20 latents of 10 classes)")
    discrete_prior: Optional[str] = setting(
        None, choices=("uniform", "learned"), shown=FAMILY,
        help="sbn, categorical: the prior over the top discrete layer, uniform (fixed) | learned "
             "(logits trained from 0; default: sbn learned, categorical uniform)",
        doc="`sbn`, `categorical`: p(z_top) of the discrete latents, `uniform` (fixed logits 0) "
            "or `learned` (logits trained, from 0)")

    def __post_init__(self):
        """A single latent size may be given as a number; what is not given is the family's."""
        if isinstance(self.latent_dim, int) and not isinstance(self.latent_dim, bool):
            self.latent_dim = [self.latent_dim]
        defaults = self.family_defaults(self.name)
        for key, value in (defaults or {}).items():
            if getattr(self, key) is None:
                setattr(self, key, list(value) if isinstance(value, list) else value)

    def filled(self) -> ModelSection:
        """A copy with the family's defaults where none are given (made before the families
        were published, this one may still hold None)."""
        return dataclasses.replace(self)

    @classmethod
    def family_defaults(cls, name: str) -> Optional[dict[str, Any]]:
        """The values ``model: name`` implies where none are given: COMMON_DEFAULTS, updated by
        the registered family's ``defaults`` capability. None while no model registry is
        published (``pyro_vae.models`` not imported): the fields then stay None until then."""
        families = choices("model")
        if families is None and ":" not in name:
            return None
        own = families.get(name).capabilities["defaults"] if families and name in families else {}
        return {**cls.COMMON_DEFAULTS, **own}

    def family(self) -> Optional[dict[str, Any]]:
        """The registered family's capabilities (None: a user model, or no registry published)."""
        families = choices("model")
        return dict(families.get(self.name).capabilities) if families and self.name in families else None

    def rules(self) -> None:
        for key in ("hidden", "upper_hidden", "latent_dim"):
            sizes = getattr(self, key)
            if sizes is not None and any(size < 1 for size in sizes):
                raise ConfigError(f"{key} sizes must be positive, got {shown(sizes)}")
        if self.logvar_range is not None and (len(self.logvar_range) != 2 or
                                              not self.logvar_range[0] < self.logvar_range[1]):
            raise ConfigError(f"logvar_range must be two numbers LOW HIGH with LOW < HIGH, e.g. -6 2; "
                              f"got {shown(self.logvar_range)}")
        if not 0 <= self.baseline_beta < 1:
            raise ConfigError(f"baseline_beta must be in [0, 1), got {self.baseline_beta}")
        self._family_rules()
        self._network_rules()

    def _family_rules(self) -> None:
        family = self.family()
        if family is None:
            return
        if self.options and not family.get("options"):
            raise ConfigError(f"model_options are for user-defined models; model {self.name!r} takes "
                              "its own keys (hidden, upper_hidden, latent_dim, activation, arch)")
        low, high = family["layers"]
        layers = len(self.latent_dim)
        if layers < low or (high is not None and layers > high):
            wanted = f"{low}" if low == high else f"at least {low}"
            example = [100, 50][-low:] if low > 1 else [50]
            raise ConfigError(f"model {self.name!r} has {wanted} latent layer(s) but latent_dim "
                              f"gives {layers} sizes ({self.latent_dim}); e.g. "
                              f"{option_list('latent_dim', example)}")

    def _network_rules(self) -> None:
        """What the chosen networks need (the ``arch`` and ``activation`` capabilities)."""
        archs, activations = choices("arch"), choices("activation")
        if archs is None or self.arch not in archs:
            return
        needs = archs.get(self.arch).capabilities
        if (activations is not None and self.activation in activations and needs["pointwise_only"]
                and not activations.get(self.activation).capabilities["pointwise"]):
            others = [a for a in archs if not archs.get(a).capabilities["pointwise_only"]]
            raise ConfigError(f"activation {self.activation!r} is not a pointwise nonlinearity, and "
                              f"arch {self.arch!r} needs one (e.g. {option('activation', 'relu')})"
                              + (f", or use {option('arch', others[0])}" if others else ""))
        if self.hidden is not None and len(self.hidden) < needs["min_hidden"]:
            count = "one hidden layer size" if needs["min_hidden"] == 1 else \
                f"{needs['min_hidden']} hidden layer sizes"
            raise ConfigError(f"arch {self.arch!r} needs at least {count} ({flag('hidden')})")
