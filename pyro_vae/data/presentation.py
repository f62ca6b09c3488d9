"""How a dataset's values reach the model: the data as stored, and as the likelihood scores them.

A loader returns a dataset as it is: ``kind`` ``binary`` (0/1 pixels, e.g. binarized-mnist),
``levels`` (8-bit images as floats k / 255: MNIST, CIFAR-10, your own uint8 arrays) or
``continuous`` (other values in [0, 1]). :func:`present` turns that into what the run's likelihood
scores (its ``data`` kind, see :mod:`pyro_vae.models.likelihoods`), following ``binarize``:

=========  ==========  ==========================================================================
data       likelihood  training batches / evaluation splits (test, validation)
=========  ==========  ==========================================================================
binary     binary      as they are
levels     binary      ``binarize: dynamic``: Bernoulli(grey level) afresh per batch / once, fixed
                       seed; ``fixed``: one fixed draw for every split
levels     levels      the 8-bit levels themselves (``binarize: none``)
levels     continuous  dequantized, (k + u) / 256, afresh per batch / once, fixed seed
continuous continuous  as they are (``binarize: none``), or binarized as levels are
=========  ==========  ==========================================================================

Anything else is refused in one line that says what would work (a Bernoulli on grey levels is not
a likelihood; a discretized likelihood on binary data is meaningless). Presenting is idempotent:
presented data are presented again unchanged, so data a user made with :func:`present` (or loaded
with :func:`~pyro_vae.data.load_dataset`) pass through the trainer as they are.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

from pyro_vae.core.errors import ConfigError
from pyro_vae.core.options import option
from pyro_vae.data.binarize import binarize_fixed
from pyro_vae.data.dequantize import dequantize_fixed
from pyro_vae.data.vaedata import VAEData

BINARIZE = ("dynamic", "fixed", "none")
KINDS = ("binary", "levels", "continuous")
SCORES = {"binary": "binary pixels (0 or 1)", "levels": "the 256 levels of 8-bit data",
          "continuous": "values in [0, 1] by a density"}
HAS = {"binary": "binary pixels", "levels": "8-bit grey levels", "continuous": "values in [0, 1] that are not 8-bit levels"}


def default_binarize(wanted: str) -> str:
    """``binarize`` where none is given: ``dynamic`` for a likelihood of binary pixels, else ``none``."""
    return "dynamic" if wanted == "binary" else "none"


def check_presentation(kind: str, binarize: Optional[str], wanted: str, dataset: str,
                       likelihood: str = "the likelihood", presented: bool = False) -> str:
    """What :func:`present` does with data of ``kind`` (``dataset``: its name, for messages):
    ``as-is``, ``binarize-dynamic``, ``binarize-fixed`` or ``dequantize``; or a one-line
    ConfigError saying what would work. ``presented``: the data are binarized or dequantized
    per batch already."""
    binarize = binarize or default_binarize(wanted)
    if binarize not in BINARIZE or wanted not in KINDS or kind not in KINDS:
        raise ValueError(f"binarize {binarize!r}, likelihood data {wanted!r}, data kind {kind!r}")
    if kind == "binary":
        if wanted != "binary":
            raise ConfigError(f"{likelihood} scores {SCORES[wanted]}, and {dataset} holds binary pixels; "
                              f"use {option('likelihood', 'bernoulli')}, or grey-level data with "
                              f"{option('binarize', 'none')}")
        return "as-is"
    if presented:
        return "as-is"
    if binarize != "none":
        if wanted != "binary":
            raise ConfigError(f"{likelihood} scores {SCORES[wanted]}, and {option('binarize', binarize)} "
                              f"makes {dataset}'s pixels binary; use {option('binarize', 'none')} (or drop "
                              f"binarize: it is none for {likelihood})")
        return f"binarize-{binarize}"
    if wanted == "binary":
        raise ConfigError(f"{likelihood} scores binary pixels, and {option('binarize', 'none')} keeps "
                          f"{dataset}'s {HAS[kind]}: a Bernoulli of grey levels is not a likelihood; "
                          f"use {option('binarize', 'dynamic')}, or a likelihood of grey levels "
                          f"({option('likelihood', 'logistic')}, logistic-mixture, gaussian, continuous-bernoulli)")
    if wanted == "levels" and kind != "levels":
        raise ConfigError(f"{likelihood} scores {SCORES['levels']}, and {dataset} holds {HAS[kind]}; "
                          f"use {option('likelihood', 'gaussian')} or continuous-bernoulli (densities on "
                          "[0, 1]), or binarize them")
    return "dequantize" if wanted == "continuous" and kind == "levels" else "as-is"


def present(data: VAEData, binarize: Optional[str] = None, wanted: str = "binary",
            likelihood: str = "the likelihood") -> VAEData:
    """``data`` as a likelihood of data kind ``wanted`` scores it (see the module docstring);
    ``likelihood``: its name, for messages. ``binarize`` None: :func:`default_binarize`."""
    how = check_presentation(data.kind, binarize, wanted, data.name, likelihood,
                             presented=data.dequantized or data.dynamic_binarization)
    if how == "binarize-fixed":
        return data.mapped(lambda name, t: binarize_fixed(t) if _pixels(name) else t).with_kind("binary")
    if how == "binarize-dynamic":
        return dataclasses.replace(_evaluation_splits(data, binarize_fixed), kind="binary",
                                   dynamic_binarization=True)
    if how == "dequantize":
        return dataclasses.replace(_evaluation_splits(data, dequantize_fixed), kind="continuous", dequantized=True)
    return data


def _pixels(name: str) -> bool:
    return name in ("train", "test", "valid", "labelled_x")


def _evaluation_splits(data: VAEData, transform) -> VAEData:
    """``data`` with its test and validation splits transformed once (the training images stay
    as they are: they are transformed afresh per batch)."""
    return data.mapped(lambda name, t: transform(t) if name in ("test", "valid") else t)
