"""Building a VAE from a config, and reopening a trained run: the one place both happen.

Training, evaluation, figures and the gradient diagnostic all build models and reopen runs;
they import this module, which imports none of them (no import cycle). Reopening goes through
:func:`load_run`, which never imports code that the saved config names unless the caller trusts
it (:func:`~pyro_vae.config.check_trusted_imports`).
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Optional

import torch

from .checkpoint import load_checkpoint
from .config import Config, make_config, saved_config
from .errors import CheckpointError, ConfigError
from .model import VAE
from .nets import build_nets
from .priors import build_prior, check_prior
from .rundir import RunDir


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was asked for but PyTorch sees no CUDA GPU; use "
                          "--device cpu (or auto)")
    return torch.device(name)


def build_vae(cfg: Config, image_shape=(1, 28, 28), train_data: Optional[torch.Tensor] = None) -> VAE:
    """The VAE ``cfg`` describes; ``train_data`` initialises priors that start from data (vamp)."""
    encoder, decoder = build_nets(cfg.arch, image_shape, cfg.hidden, cfg.latent_dim, cfg.activation)
    prior = build_prior(cfg, math.prod(image_shape))
    vae = VAE(encoder, decoder, prior, cfg.estimator, cfg.baseline, cfg.baseline_beta,
              x_dim=math.prod(image_shape))
    if hasattr(prior, "bind"):
        prior.bind(vae, train_data)
    check_prior(prior, cfg.latent_dim, cfg.prior)
    return vae


def load_run(run_dir, overrides: Optional[dict[str, Any]] = None,
             trusted_imports: Iterable[str] = ()) -> tuple[dict[str, Any], Config]:
    """A run's checkpoint and its saved config, with ``overrides`` (e.g. device, data_dir) applied.

    Import paths in the saved config are imported only if ``trusted_imports`` names them
    (:func:`~pyro_vae.config.check_trusted_imports`): opening a run runs no code of its author's.
    """
    state = load_checkpoint(RunDir(run_dir).checkpoint_path)
    values = saved_config(state["config"], trusted_imports, f"the checkpoint in {run_dir}")
    return state, make_config({**values, **(overrides or {})})


def load_weights(module: torch.nn.Module | torch.optim.Optimizer, weights: dict, run_dir) -> None:
    """``module.load_state_dict(weights)``, or a CheckpointError that names the run."""
    try:
        module.load_state_dict(weights)
    except (RuntimeError, KeyError, ValueError) as e:
        raise CheckpointError(f"the checkpoint in {run_dir} does not fit the model its config "
                              f"describes ({e})") from None
