"""What a model generates, as images: samples (:func:`sample`) and reconstructions
(:func:`reconstruct`), read off its traces (:mod:`pyro_vae.models.decode`) without gradients, in a
throwaway param store and a forked random stream: the caller's random state is left as it was.
"""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import torch
from torch import nn

from pyro_vae.api.arguments import model_object, positive
from pyro_vae.api.data import images
from pyro_vae.api.runs import Run
from pyro_vae.core.errors import ConfigError
from pyro_vae.data import IMAGE_SHAPE
from pyro_vae.models.decode import reconstruct as decode_reconstruction
from pyro_vae.models.decode import sample_images


def _model_and_shape(model: Any, image_shape: Optional[Sequence[int]]) -> tuple[nn.Module, tuple[int, ...]]:
    if isinstance(model, Run):
        return model_object(model.model), tuple(image_shape or model.image_shape)
    shape = tuple(image_shape or IMAGE_SHAPE)
    if not shape or not all(isinstance(s, int) and s >= 1 for s in shape):
        raise ConfigError(f"image_shape= must be positive sizes such as (1, 28, 28), got {image_shape!r}")
    return model_object(model), shape


def _device(model: nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def sample(model: nn.Module | Run, n: int, *, seed: int = 0,
           image_shape: Optional[Sequence[int]] = None) -> torch.Tensor:
    """``n`` images drawn from ``model`` (or a :class:`Run`'s), as ``(n, *image_shape)`` pixel
    probabilities: every latent layer sampled from the generative model, then the mean of
    p(x | z). ``image_shape``: the images' shape (a Run knows its own; default (1, 28, 28))."""
    n = positive("n", n)
    model, shape = _model_and_shape(model, image_shape)
    device = _device(model)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        try:
            pixels = sample_images(model, n, math.prod(shape), device)
            return pixels.reshape(n, *shape)
        except RuntimeError as e:
            raise ConfigError(f"model= did not generate images of image_shape={shape} "
                              f"({type(e).__name__}: {str(e).splitlines()[0]})") from None


def reconstruct(model: nn.Module | Run, x: Any) -> torch.Tensor:
    """The images ``x`` decoded from the guide's mean path (pixel probabilities, ``x``'s shape)."""
    model = model_object(model.model if isinstance(model, Run) else model)
    flat, _ = images(x, "x")
    device = _device(model)
    pixels = decode_reconstruction(model, flat.to(device))
    return pixels.reshape(tuple(x.shape))
