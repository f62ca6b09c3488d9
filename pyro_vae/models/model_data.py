"""A config's dataset as its model scores it: loaded by name and presented (binarized, kept as
8-bit levels, or dequantized) for the data kind of the config's likelihood. The one place where
the data section meets the likelihood, for training, evaluation and opening a run alike."""

from __future__ import annotations

from typing import Optional

import torch

from pyro_vae.config import flag
from pyro_vae.core.choices import add_rule, add_unread
from pyro_vae.core.errors import ConfigError
from pyro_vae.core.options import option
from pyro_vae.data import DATASETS, VAEData, load_dataset, present
from pyro_vae.data.presentation import check_presentation
from pyro_vae.models.likelihoods import LIKELIHOODS


def likelihood_data(cfg) -> str:
    """The data kind (binary | levels | continuous) that the config's likelihood scores."""
    return LIKELIHOODS.get(cfg.model.likelihood).capabilities["data"]


def dequantized_by_config(cfg) -> bool:
    """Whether the config's data reach its likelihood dequantized (a density likelihood on a
    registered dataset of 8-bit levels), known before loading; False where the dataset's values
    are not registered (data given in Python say it themselves: ``VAEData.dequantized``)."""
    if likelihood_data(cfg) != "continuous" or cfg.data.dataset not in DATASETS:
        return False
    return DATASETS.get(cfg.data.dataset).capabilities["values"] == "levels"


def load_model_data(cfg, device: str | torch.device = "cpu", limit_train: Optional[int] = None,
                    limit_test: Optional[int] = None) -> VAEData:
    """The config's dataset on ``device`` (``limit_*``: those of the data section unless given),
    presented for its likelihood (:func:`~pyro_vae.data.presentation.present`)."""
    data = cfg.data
    return load_dataset(data.dataset, data.data_dir, device,
                        data.limit_train if limit_train is None else limit_train,
                        data.limit_test if limit_test is None else limit_test,
                        valid_size=data.valid_size, binarize=data.binarize,
                        likelihood_data=likelihood_data(cfg), likelihood=option("likelihood", cfg.model.likelihood),
                        image_size=data.image_size, channels=data.channels)


def present_for(cfg, data: VAEData) -> VAEData:
    """Data given in Python (a VAEData, tensors) presented for the config's likelihood as a loaded
    dataset would be (unchanged if presented already)."""
    return present(data, cfg.data.binarize, likelihood_data(cfg), option("likelihood", cfg.model.likelihood))


@add_rule("likelihood-data")
def check_data_for_likelihood(cfg) -> None:
    """A registered dataset whose values are known (its ``kind``) and a likelihood that cannot
    score them as ``binarize`` presents them are refused with the config, before loading."""
    data = cfg.data
    if data.dataset not in DATASETS or cfg.model.likelihood not in LIKELIHOODS:
        return
    kind = DATASETS.get(data.dataset).capabilities["values"]
    if kind is not None:
        check_presentation(kind, data.binarize, likelihood_data(cfg), data.dataset,
                           option("likelihood", cfg.model.likelihood))


@add_rule("likelihood")
def check_likelihood(cfg) -> None:
    """The likelihood's options are its own, and the model family can score x with it."""
    model = cfg.model
    if model.likelihood not in LIKELIHOODS:
        return
    entry = LIKELIHOODS.get(model.likelihood)
    unknown = sorted(set(model.likelihood_options) - set(entry.capabilities["options"]))
    if unknown:
        own = entry.capabilities["options"]
        raise ConfigError(f"{option('likelihood', model.likelihood)} takes no likelihood_options "
                          f"{', '.join(map(repr, unknown))}; its options: {', '.join(own) or 'none'}")
    family = model.family()
    allowed = family.get("likelihoods") if family else None
    if allowed is not None and model.likelihood not in allowed:
        raise ConfigError(f"{option('model', model.name)} scores x with {' or '.join(allowed)} only; "
                          f"drop {flag('likelihood')}, or use {option('model', 'vae')} (any likelihood)")


def _unread(cfg, defaults) -> dict[str, str]:
    """``mixtures`` without logistic-mixture; ``binarize`` on data that are binary already."""
    out = {}
    if cfg.model.likelihood in LIKELIHOODS and not LIKELIHOODS.get(cfg.model.likelihood).capabilities["mixtures"] \
            and cfg.model.mixtures != defaults.model.mixtures:
        out["mixtures"] = (f"{flag('mixtures')} applies only with {option('likelihood', 'logistic-mixture')}, "
                           f"and likelihood is {cfg.model.likelihood!r}; drop it")
    if cfg.data.dataset in DATASETS and DATASETS.get(cfg.data.dataset).capabilities["values"] == "binary" \
            and cfg.data.binarize is not None and cfg.data.binarize != "none":
        out["binarize"] = (f"{cfg.data.dataset} holds binary pixels already, so {flag('binarize')} "
                           f"{cfg.data.binarize} would do nothing while config.yaml records it; drop it")
    return out


add_unread("likelihood", _unread)
