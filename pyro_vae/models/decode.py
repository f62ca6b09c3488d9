"""What a model generates, read off its traces: samples, reconstructions, posterior means.

Works for any model that follows the site rules (:mod:`pyro_vae.models.sites`): the pixel
probabilities are the ``mean`` of the observed site ``"x"``'s distribution, whatever the model
computes before it. Tracing the model needs an ``x`` to observe; its value does not change the
distribution of ``"x"``, so zeros serve. Everything runs without gradients, in a throwaway param
store, so a live training run's store is untouched.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Optional

import pyro
import torch
from pyro import poutine
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import site_is_subsample

from pyro_vae.models.discrete import expected_value, most_probable
from pyro_vae.models.sites import OBSERVED_SITE, latent_sites


class use_means(Messenger):
    """Latent sites take the mean of their distribution instead of a sample (a sample where the
    distribution has no mean, e.g. a flow); observed sites are left alone. Under a guide this
    walks the mean path: q(z2 | z1) at z1 = E[z1 | x]. A discrete site takes a most probable
    value instead (:func:`~pyro_vae.models.discrete.most_probable`): its mean is no value the
    networks were trained on (a categorical index's mean is NaN)."""

    def _pyro_sample(self, msg):
        if msg["is_observed"] or msg["value"] is not None or site_is_subsample(msg):
            return
        fn = msg["fn"]
        try:
            msg["value"] = most_probable(fn) if fn.support.is_discrete else fn.mean
        except NotImplementedError:
            pass


@contextmanager
def _quiet():
    with torch.no_grad(), pyro.get_param_store().scope(), pyro.validation_enabled(False):
        yield


def _pixels(trace: poutine.Trace) -> torch.Tensor:
    return trace.nodes[OBSERVED_SITE]["fn"].mean


def _generative_trace(model, n: int, x_dim: int, device: Optional[torch.device]) -> poutine.Trace:
    """The model's trace for ``n`` images, every latent layer drawn from the generative model."""
    with _quiet():
        return poutine.trace(model.model).get_trace(torch.zeros(n, x_dim, device=device))


def sample_images(model, n: int, x_dim: int, device: Optional[torch.device] = None) -> torch.Tensor:
    """``(n, x_dim)`` pixel probabilities of images drawn from the model: every latent layer
    sampled from the generative model (ancestral sampling), then the mean of p(x | z)."""
    return _pixels(_generative_trace(model, n, x_dim, device))


def sample_images_and_draws(model, n: int, x_dim: int,
                            device: Optional[torch.device] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(means, draws)``, each ``(n, x_dim)``: for the same latents drawn from the generative
    model, the mean of p(x | z) and one draw from it (binary pixels for a Bernoulli, 8-bit levels
    for a discretized likelihood: an image of the data's own kind)."""
    fn = _generative_trace(model, n, x_dim, device).nodes[OBSERVED_SITE]["fn"]
    with torch.no_grad():
        return fn.mean, fn.sample()


def posterior_mean_trace(model, x: torch.Tensor) -> poutine.Trace:
    """The guide's trace along its mean path at ``x``."""
    with _quiet():
        return poutine.trace(use_means()(model.guide)).get_trace(x)


def posterior_means(model, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """E_q[z | x] of every latent site of the guide along its mean path, ``{name: (B, D)}``
    (event dimensions flattened): the probabilities of a discrete site
    (:func:`~pyro_vae.models.discrete.expected_value`), never a NaN mean; a sample where the
    distribution has no mean."""
    trace = posterior_mean_trace(model, x)
    means = {}
    for site in latent_sites(trace):
        try:
            mean = expected_value(site["fn"])
        except NotImplementedError:
            mean = site["value"]
        means[site["name"]] = mean.reshape(len(x), -1)
    return means


def reconstruct(model, x: torch.Tensor) -> torch.Tensor:
    """Pixel probabilities decoded from the guide's mean path at ``x``."""
    guide_trace = posterior_mean_trace(model, x)
    with _quiet():
        trace = poutine.trace(poutine.replay(model.model, trace=guide_trace)).get_trace(x)
    return _pixels(trace)


def prior_samples(model, site: str, n: int, x_dim: int, device: Optional[torch.device] = None) -> torch.Tensor:
    """``(n, D)`` draws of latent ``site`` from the generative model."""
    return _generative_trace(model, n, x_dim, device).nodes[site]["value"]


def decode(model, site: str, values: torch.Tensor, x_dim: int) -> torch.Tensor:
    """Pixel probabilities with latent ``site`` fixed at ``values`` ``(n, D)`` and every layer
    below it at its conditional mean."""
    return decode_sites(model, {site: values}, x_dim)


def decode_sites(model, values: dict[str, torch.Tensor], x_dim: int) -> torch.Tensor:
    """Pixel probabilities with each latent site of ``values`` fixed (``{name: (n, ...)}``) and
    every other latent site at its conditional mean (e.g. M2's style z and class y together)."""
    first = next(iter(values.values()))
    conditioned = poutine.condition(use_means()(model.model), data=values)
    with _quiet():
        trace = poutine.trace(conditioned).get_trace(torch.zeros(len(first), x_dim, device=first.device))
    return _pixels(trace)


def predictions(model, x: torch.Tensor) -> torch.Tensor:
    """Pixel probabilities of one draw from the generative model *given* ``x``: for a model whose
    latent sites depend on part of the image (the CVAE's prior reads the given pixels), what it
    predicts for the rest; the model's trace at ``x``, every latent site drawn from the model."""
    with _quiet():
        return _pixels(poutine.trace(model.model).get_trace(x))
