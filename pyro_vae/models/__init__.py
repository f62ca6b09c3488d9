"""Model families: a registry from ``--model`` names to builders, and users' own models.

A model is an ``nn.Module`` with two Pyro methods, ``model(x)`` and ``guide(x)``, that follow the
site rules of :mod:`pyro_vae.models.sites`. Nothing else about it is assumed: training, evaluation and
figures read its traces. Two hooks are optional and looked up by name: ``init_from_data(mean_pixel)``
(called once when a new run starts) and ``fixed_prior()`` (a context manager entered while
evaluating, for a prior that is costly to build).

A user model is named by import path (``--model my_pkg.my_mod:MyVAE``) and built as
``MyVAE(**arguments, **model_options)``, where ``arguments`` are those of :data:`MODEL_ARGUMENTS`
that its constructor declares by name (all of them if it takes ``**kwargs``). A model-shaping key
set in the config that the constructor does not declare (``--hidden`` for a model without a
``hidden`` parameter) is refused: the model would ignore it while config.yaml records it::

    class MyVAE(nn.Module):
        def __init__(self, x_dim, latent_dim, prior, scale=1.0):  # scale from model_options
            ...

Shipped families register the same way as objectives do; a builder takes the config's model
section (:class:`~pyro_vae.config.ModelSection`), the image shape and the built prior::

    @register_model("my-family", defaults={"hidden": [500], "latent_dim": [20], "activation": "relu"})
    def _my_family(model, image_shape, prior):
        return MyFamily(model.hidden, model.latent_dim, prior, ...)
"""

from __future__ import annotations

import inspect
import math
from typing import Any, Callable, Optional

import torch
from torch import nn

from pyro_vae.config import ModelSection, PriorSection, flag, shown
from pyro_vae.core.choices import add_rule, add_unread, publish
from pyro_vae.core.errors import ConfigError
from pyro_vae.core.imports import import_path
from pyro_vae.core.options import option
from pyro_vae.core.registry import Registry
from pyro_vae.core.workload import check_model_size
from pyro_vae.models import (
    discrete_settings,  # noqa: F401  (the discrete families' config rules)
    model_data,  # noqa: F401  (the likelihood's config rules)
)
from pyro_vae.models.categorical import CategoricalVAE
from pyro_vae.models.cvae import ConditionalVAE, given_mask
from pyro_vae.models.hvae import HierarchicalVAE
from pyro_vae.models.likelihoods import LIKELIHOODS, Likelihood, build_likelihood
from pyro_vae.models.model_data import dequantized_by_config
from pyro_vae.models.priors import build_prior, check_prior
from pyro_vae.models.sbn import SigmoidBeliefNet
from pyro_vae.models.ssvae import SemiSupervisedVAE
from pyro_vae.models.vae import VAE
from pyro_vae.nn.nets import build_nets

# Constructor arguments a user model may declare, and what they hold.
MODEL_ARGUMENTS = {
    "x_dim": "pixels per image (784 for MNIST)",
    "image_shape": "(channels, height, width)",
    "latent_dim": "the latent sizes, a list (one per layer, bottom first)",
    "hidden": "hidden layer sizes of the networks next to x",
    "upper_hidden": "hidden layer sizes between consecutive latent layers",
    "activation": "the activation's name (relu, tanh, ...)",
    "arch": "mlp or conv: the kind of networks next to x",
    "logvar_range": "None, or [low, high]: where to clamp the guide's log-variance",
    "prior": "the prior module over the top latent layer (--prior), built for latent_dim[-1]",
    "estimator": "reparam or score: how the guide's sites should be differentiated",
    "baseline": "none, avg or nn: a baseline for score-function sites",
    "baseline_beta": "the decay of the avg baseline",
    "categories": "classes of each categorical latent (--categories)",
    "discrete_prior": "uniform or learned: the prior over discrete latents (--discrete-prior)",
    "likelihood": "the likelihood module (--likelihood): likelihood(decoder_output) is p(x | z), "
                  "and likelihood.out_features is the size the decoder must emit",
}


# Config keys that shape a model -> the constructor arguments of a user model through which it
# receives them (declaring any one is enough: the prior is built for latent_dim[-1]).
MODEL_KEYS = {
    "prior": ("prior",), "prior_options": ("prior",), "latent_dim": ("latent_dim", "prior"),
    "hidden": ("hidden",), "upper_hidden": ("upper_hidden",), "activation": ("activation",),
    "arch": ("arch",), "logvar_range": ("logvar_range",), "estimator": ("estimator",),
    "baseline": ("baseline",), "baseline_beta": ("baseline_beta",), "categories": ("categories",),
    "discrete_prior": ("discrete_prior",), "likelihood": ("likelihood",),
    "likelihood_options": ("likelihood",), "mixtures": ("likelihood",),
}


MODELS = Registry(
    "model",
    defaults={},  # config values it changes (over the model section's COMMON_DEFAULTS)
    layers=(1, 1),  # (min, max) latent layers; max None: any
    ignores={},  # config keys it does not read -> why
    options=False,  # reads the model section's options (model_options; else they are refused)
    discrete=False,  # its latents are discrete: its prior is its own (discrete_prior), not --prior
    likelihoods=None,  # the likelihoods it can score x with (None: any registered one)
)
publish("model", MODELS)


def register_model(name: str, *, description: str = "", replace: bool = False,
                   **options) -> Callable[[Callable], Callable]:
    """A decorator registering ``builder(model, image_shape, prior) -> nn.Module`` as
    ``--model name`` (``model``: the config's model section); ``options`` are the capabilities
    of :data:`MODELS` (defaults, layers, ignores, options)."""
    return MODELS.register(name, description=description, replace=replace, **options)


def family(name: str) -> dict[str, Any]:
    """The capabilities of the registered family ``name`` ({} for a user model's import path)."""
    return dict(MODELS.get(name).capabilities) if name in MODELS else {}


# Why a continuous model does not read the discrete models' keys, and a discrete one the
# continuous models' (the ``ignores`` of each family).
CONTINUOUS = {"categories": "its latents are Normal; categories sizes the latents of model categorical",
              "discrete_prior": "its latents are Normal; their prior is the prior key's"}


def _discrete_ignores(kind: str, **more: str) -> dict[str, str]:
    return {"prior": f"its latents are {kind}, and prior chooses p(z) over a Normal latent; its prior "
                     "over the top layer is discrete_prior's (uniform or learned)",
            "arch": "its networks are MLPs", "logvar_range": f"its latents are {kind}, with no variance",
            "upper_hidden": "hidden sizes its maps" if kind == "Bernoulli" else "it has one latent layer",
            **more}


@register_model("vae", description="one stochastic layer; mlp or conv networks (--arch)",
                ignores={"upper_hidden": "it has one latent layer (upper_hidden sizes the "
                                                "layers between the latent layers of model hvae)",
                         **CONTINUOUS})
def _vae(model, image_shape, prior) -> nn.Module:
    likelihood = likelihood_of(model, image_shape)
    encoder, decoder = build_nets(model, image_shape, likelihood.out_channels)
    return VAE(encoder, decoder, prior, model.estimator, model.baseline, model.baseline_beta,
               x_dim=math.prod(image_shape), likelihood=likelihood)


@register_model("hvae", layers=(2, None), description="two or more stochastic layers (Burda et al. 2016)",
                defaults={"hidden": [200, 200], "latent_dim": [100, 50], "activation": "tanh"},
                ignores=CONTINUOUS)
def _hvae(model, image_shape, prior) -> nn.Module:
    return HierarchicalVAE(image_shape, model.latent_dim, model.hidden, model.upper_hidden, model.activation,
                           prior, model.arch, model.estimator, model.baseline, model.baseline_beta,
                           model.logvar_range, likelihood_of(model, image_shape))


@register_model("sbn", layers=(1, None), discrete=True, likelihoods=("bernoulli",),
                description="sigmoid belief net: layers of Bernoulli latents (REBAR/RELAX benchmark)",
                defaults={"latent_dim": [200], "hidden": [200, 200], "activation": "tanh",
                          "estimator": "score", "discrete_prior": "learned"},
                ignores=_discrete_ignores("Bernoulli", activation="its nonlinear maps use tanh, as "
                                          "in REBAR and RELAX", categories="its latents are Bernoulli"))
def _sbn(model, image_shape, prior) -> nn.Module:
    return SigmoidBeliefNet(math.prod(image_shape), model.latent_dim, model.sbn_mapping, model.hidden,
                            model.discrete_prior == "learned", model.baseline, model.baseline_beta,
                            model.estimator)


@register_model("categorical", discrete=True,
                description="N categorical latents of C classes as one-hot codes (Jang et al. 2017)",
                defaults={"latent_dim": [20], "hidden": [512, 256], "estimator": "score",
                          "discrete_prior": "uniform"},
                ignores=_discrete_ignores("categorical"))
def _categorical(model, image_shape, prior) -> nn.Module:
    return CategoricalVAE(math.prod(image_shape), model.latent_dim[0], model.categories, model.hidden,
                          model.activation, model.discrete_prior == "learned", model.baseline,
                          model.baseline_beta, likelihood_of(model, image_shape))


@register_model("ssvae", description="M2: a class label y and a style z (Kingma et al. 2014; Pyro's ss-vae)",
                defaults={"latent_dim": [50], "hidden": [500], "activation": "softplus"},
                ignores={"upper_hidden": "it has one latent layer z beside the label y",
                         "arch": "its networks are the tutorial's MLPs",
                         "logvar_range": "its encoder's scale is a softplus, as the tutorial's",
                         "baseline": "its score-function site is the label y, which traceenum sums exactly",
                         "baseline_beta": "it takes no baseline",
                         "discrete_prior": "p(y) is uniform over the classes (categories)"})
def _ssvae(model, image_shape, prior) -> nn.Module:
    return SemiSupervisedVAE(math.prod(image_shape), model.latent_dim[0], model.categories, prior,
                             model.hidden, model.activation, model.estimator, likelihood_of(model, image_shape))


@register_model("cvae", likelihoods=("bernoulli",), description="conditional VAE: the rest of a digit from its given quadrants (Pyro's CVAE)",
                defaults={"latent_dim": [200], "hidden": [500, 500], "activation": "relu"},
                ignores={"upper_hidden": "it has one latent layer", "arch": "its networks are the example's MLPs",
                         "logvar_range": "its encoders' scales are softplus outputs",
                         "estimator": "its z is reparameterized", "baseline": "its z is reparameterized",
                         "baseline_beta": "it takes no baseline",
                         "prior": "its prior p(z | given quadrants) is a network of the model",
                         "prior_options": "its prior is a network of the model", **CONTINUOUS})
def _cvae(model, image_shape, prior) -> nn.Module:
    return ConditionalVAE(math.prod(image_shape), model.latent_dim[0], given_mask(image_shape, model.quadrants),
                          model.hidden, model.activation)


def likelihood_of(model: ModelSection, image_shape) -> Likelihood:
    """The likelihood the config's model section names, for images of ``image_shape``."""
    options = dict(model.likelihood_options)
    if LIKELIHOODS.get(model.likelihood).capabilities["mixtures"]:
        options["mixtures"] = model.mixtures
    return build_likelihood(model.likelihood, image_shape, options)


def import_model(path: str) -> type:
    return import_path(path, "model", MODELS.names())


def declared_arguments(cls: type) -> Optional[set[str]]:
    """The constructor's named parameters, or None if it takes ``**kwargs`` (gets everything)."""
    try:
        parameters = inspect.signature(cls).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return {p.name for p in parameters}


def signature_text(cls: type, limit: int = 100) -> str:
    """``module:Name(x_dim, latent_dim, width=256)``-style text of a constructor, for messages."""
    try:
        text = str(inspect.signature(cls))
    except (TypeError, ValueError):
        text = "(...)"
    return text if len(text) <= limit else text[:limit - 4] + "...)"


def ignored_model_settings(cfg, defaults) -> dict[str, str]:
    """key -> a one-line message, for every model-shaping key set in ``cfg`` (different from its
    value in ``defaults``, the config's defaults) that the model never reads: a key a shipped
    family ignores (its ``ignores`` capability), or one of :data:`MODEL_KEYS` that a user model's
    constructor does not declare. See :func:`pyro_vae.config.ignored_settings`."""
    def is_set(key: str) -> bool:
        return cfg.value(key) != defaults.value(key)

    name = cfg.model.name
    if name in MODELS:
        return {key: f"{flag(key)} is not read by {option('model', name)}: {why}; drop it"
                for key, why in family(name)["ignores"].items() if is_set(key)}
    cls = import_model(name)
    declared = declared_arguments(cls)
    if declared is None:  # **kwargs: it is given everything
        return {}
    out = {}
    for key, arguments in MODEL_KEYS.items():
        if is_set(key) and not declared & set(arguments):
            out[key] = (f"{flag(key)} {shown(cfg.value(key), 40)} is not a parameter of "
                        f"{name}{signature_text(cls)}: the model would ignore it while "
                        f"config.yaml records it; drop it or add the parameter {arguments[0]!r}")
    return out


add_unread("model", ignored_model_settings)


@add_rule("model")
def check_user_model(cfg) -> None:
    """A user model's import path imports, and its ``model_options`` repeat no argument that
    the config sets: checked with the config, before any data is loaded."""
    if cfg.model.name in MODELS:
        return
    cls = import_model(cfg.model.name)
    declared = declared_arguments(cls)
    _check_option_clash(cfg.model.options,
                        set(MODEL_ARGUMENTS) if declared is None else declared & set(MODEL_ARGUMENTS))


def _check_option_clash(options: dict[str, Any], arguments) -> None:
    clash = sorted(set(arguments) & set(options))
    if clash:
        source = {"x_dim": "the dataset", "image_shape": "the dataset"}
        where = ", ".join(f"{key} from {source.get(key, 'the config')}" for key in clash)
        raise ConfigError(f"model_options {clash} are set from the config already ({where}); "
                          "drop them from model_options")


def _build_user_model(model: ModelSection, prior: PriorSection, image_shape,
                      prior_module: Optional[nn.Module] = None) -> nn.Module:
    name = model.name
    cls = import_model(name)
    declared = declared_arguments(cls)
    available = {"x_dim": lambda: math.prod(image_shape), "image_shape": lambda: tuple(image_shape),
                 "latent_dim": lambda: list(model.latent_dim), "hidden": lambda: list(model.hidden),
                 "upper_hidden": lambda: list(model.upper_hidden), "activation": lambda: model.activation,
                 "arch": lambda: model.arch,
                 "logvar_range": lambda: None if model.logvar_range is None else list(model.logvar_range),
                 "prior": lambda: prior_module if prior_module is not None else
                 build_prior(prior, model.latent_dim[-1], math.prod(image_shape)),
                 "estimator": lambda: model.estimator, "baseline": lambda: model.baseline,
                 "baseline_beta": lambda: model.baseline_beta, "categories": lambda: model.categories,
                 "discrete_prior": lambda: model.discrete_prior,
                 "likelihood": lambda: likelihood_of(model, image_shape)}
    arguments = {k: make() for k, make in available.items() if declared is None or k in declared}
    _check_option_clash(model.options, arguments)
    try:
        built = cls(**arguments, **model.options)
    except Exception as e:  # the user's constructor: any error is a configuration problem
        raise ConfigError(f"model {name!r} could not be built with {sorted(arguments)} and "
                          f"model_options {shown(model.options)}: {type(e).__name__}: "
                          f"{str(e)[:200]}") from None
    if not isinstance(built, nn.Module):
        raise ConfigError(f"model {name!r} must be a torch.nn.Module, got {type(built).__name__}")
    for method in ("model", "guide"):
        if not callable(getattr(built, method, None)):
            raise ConfigError(f"model {name!r} has no {method}(x) method")
    return built


def build_model(cfg, image_shape=(1, 28, 28), train_data: Optional[torch.Tensor] = None,
                prior: Optional[nn.Module] = None, dequantized: Optional[bool] = None) -> nn.Module:
    """The model ``cfg`` describes (its model and prior sections); ``train_data`` initialises
    priors that start from data (vamp); ``prior``: a prior module made in Python, used instead of
    the one the prior section names. Sizes whose parameters the machine could not hold are
    refused first (:func:`~pyro_vae.core.workload.check_model_size`): a config or a shared
    checkpoint asking for layers of 10^12 units gets one line, not an allocation that the kernel
    kills. ``dequantized``: whether the data are dequantized 8-bit levels (the run's
    ``VAEData.dequantized``; None: from the config, for a registered dataset), so that a density
    likelihood reports log-likelihoods of the 8-bit data (:meth:`Likelihood.on_levels`)."""
    check_model_size(cfg, image_shape)
    model = _build(cfg, image_shape, train_data, prior)
    likelihood = getattr(model, "likelihood", None)
    if isinstance(likelihood, Likelihood):
        likelihood.on_levels(dequantized_by_config(cfg) if dequantized is None else dequantized)
    return model


def _build(cfg, image_shape, train_data: Optional[torch.Tensor], prior: Optional[nn.Module]) -> nn.Module:
    name, latent = cfg.model.name, cfg.model.latent_dim[-1]
    if name in MODELS and family(name)["discrete"]:  # its prior is its own (discrete_prior)
        if prior is not None:
            raise ConfigError(f"model {name!r} has discrete latents with a prior of its own "
                              f"({flag('discrete_prior')}); it takes no prior module")
        return MODELS.get(name).factory(cfg.model, image_shape, None)
    if name in MODELS:
        prior = prior if prior is not None else build_prior(cfg.prior, latent, math.prod(image_shape))
        model = MODELS.get(name).factory(cfg.model, image_shape, prior)
    else:
        model = _build_user_model(cfg.model, cfg.prior, image_shape, prior)
    prior = getattr(model, "prior", None)
    if isinstance(prior, nn.Module):
        if hasattr(prior, "bind"):
            try:
                prior.bind(model, train_data)
            except AttributeError as e:  # e.g. VampPrior with a user model that has no encode_top
                raise ConfigError(f"prior {cfg.prior.name!r} cannot be used with model {name!r}: "
                                  f"{e}") from None
        check_prior(prior, latent, cfg.prior.name)
    return model
