"""The observation models p(x | z), registered by name (``--likelihood``; see
:mod:`.base` for what a likelihood is and how decoders are sized from it).

=======================  ==========  ==============================================================
name                     scores      outputs per channel and pixel location
=======================  ==========  ==============================================================
``bernoulli``            binary      1 logit
``continuous-bernoulli`` continuous  1 logit (the normalizing constant included)
``gaussian``             continuous  2 (location, log-scale); ``variance``: pixel | image | shared
``logistic``             levels      2 (location, log-scale), discretized to 256 levels
``logistic-mixture``     levels      per location 3 M (grey) or 10 M (RGB): PixelCNN++'s mixture
=======================  ==========  ==============================================================

A new likelihood is a subclass of :class:`Likelihood` in a new file plus a
:func:`register_likelihood` (its factory is called as ``factory(image_shape, options)``, options
the config's ``likelihood_options`` mapping and ``mixtures``).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

from pyro_vae.core.choices import publish
from pyro_vae.core.errors import ConfigError
from pyro_vae.core.registry import Registry
from pyro_vae.data.dequantize import bits_per_dim, dequantize, dequantize_fixed, log_jacobian
from pyro_vae.models.likelihoods.base import DATA_KINDS, Likelihood
from pyro_vae.models.likelihoods.bernoulli import Bernoulli, BernoulliPixels
from pyro_vae.models.likelihoods.continuous_bernoulli import ContinuousBernoulli
from pyro_vae.models.likelihoods.gaussian import Gaussian
from pyro_vae.models.likelihoods.logistic import (
    DiscretizedLogistic,
    DiscretizedLogisticMixture,
    Logistic,
    LogisticMixture,
)

LIKELIHOODS = Registry(
    "likelihood",
    data="binary",  # what it scores: binary | levels | continuous (see .base)
    options=(),  # the likelihood_options keys it reads
    mixtures=False,  # reads the model section's mixtures (--mixtures M)
)
publish("likelihood", LIKELIHOODS)


def register_likelihood(name: str, *, description: str = "", replace: bool = False,
                        **capabilities: Any) -> Callable[[Callable], Callable]:
    """Register ``factory(image_shape, options) -> Likelihood`` as ``--likelihood name``.
    Capabilities: ``data`` (binary | levels | continuous: what it scores), ``options`` (the
    ``likelihood_options`` keys it reads), ``mixtures`` (it reads ``--mixtures``, passed in
    ``options``)."""
    if capabilities.get("data", "binary") not in DATA_KINDS:
        raise ConfigError(f"likelihood {name!r}: data must be one of {', '.join(DATA_KINDS)}")
    return LIKELIHOODS.register(name, description=description, replace=replace, **capabilities)


def _options(name: str, options: Mapping[str, Any], allowed: Sequence[str]) -> dict[str, Any]:
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ConfigError(f"likelihood {name!r} takes no option {', '.join(map(repr, unknown))}; "
                          f"its options: {', '.join(allowed) or 'none'}")
    return dict(options)


register_likelihood("bernoulli", data="binary", description="Bernoulli pixels on logits (binary data)")(
    lambda image_shape, options: Bernoulli(image_shape))
register_likelihood("continuous-bernoulli", data="continuous",
                    description="continuous Bernoulli on [0, 1], normalized (Loaiza-Ganem & Cunningham 2019)")(
    lambda image_shape, options: ContinuousBernoulli(image_shape))
register_likelihood("gaussian", data="continuous", options=("variance",),
                    description="Normal per value with a learned variance (pixel | image | shared), "
                                "on dequantized data")(
    lambda image_shape, options: Gaussian(image_shape, **options))
register_likelihood("logistic", data="levels", description="discretized logistic on 256 levels")(
    lambda image_shape, options: Logistic(image_shape))
register_likelihood("logistic-mixture", data="levels", mixtures=True,
                    description="PixelCNN++'s mixture of discretized logistics, channels coupled (--mixtures M)")(
    lambda image_shape, options: LogisticMixture(image_shape, **options))


def reports_bits_per_dim(model) -> bool:
    """Whether ``model`` scores 8-bit data (see :attr:`Likelihood.of_8bit_data`): its reports add
    bits/dim beside nats."""
    likelihood = getattr(model, "likelihood", None)
    return isinstance(likelihood, Likelihood) and likelihood.of_8bit_data


def build_likelihood(name: str, image_shape: Sequence[int], options: Mapping[str, Any] | None = None) -> Likelihood:
    """The registered likelihood ``name`` for images of ``image_shape``, with ``options`` (keys
    it does not read are refused)."""
    entry = LIKELIHOODS.get(name)
    allowed = (*entry.capabilities["options"], *(("mixtures",) if entry.capabilities["mixtures"] else ()))
    return entry.factory(tuple(image_shape), _options(name, options or {}, allowed))


__all__ = ["LIKELIHOODS", "Bernoulli", "BernoulliPixels", "ContinuousBernoulli", "DiscretizedLogistic",
           "DiscretizedLogisticMixture", "Gaussian", "Likelihood", "Logistic", "LogisticMixture", "bits_per_dim",
           "build_likelihood", "dequantize", "reports_bits_per_dim", "dequantize_fixed", "log_jacobian", "register_likelihood"]
