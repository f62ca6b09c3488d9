"""What a command would cost, multiplied out before anything starts: the absurd is refused.

A count typed with a few zeros too many (``--num-samples 1000000000``, ``--ais-steps 1000000``,
``--hidden 1000000000000``) would otherwise load the run and the data, then run for months or
die of memory hours later; an evaluation cannot be resumed. So the cost is counted up front,
from the settings alone, and compared with generous limits:

- **time**: model evaluations (IWAE: images x K; AIS: images x chains x steps x leapfrog
  gradient evaluations, twice for BDMC) against what the device could do in
  :data:`MAX_HOURS` at a deliberately fast rate (:data:`FAST_RATE`). A count, never a timing,
  so the decision is the same on every run; only what is absurd for the machine is refused,
  and ``--allow-long`` (``allow_long=True``) goes ahead anyway.
- **memory**: what is certainly held at once (a lower bound: the log-weights PSIS needs, one
  image's AIS chains, the networks' parameters with Adam's state) against the machine's
  physical memory. No setting overrides that: the command would fail anyway.

Messages name settings as the reader types them (:func:`~pyro_vae.core.options.option`).

Training time is not limited: a long training run is checkpointed every epoch and can be
stopped and resumed at any point.
"""

from __future__ import annotations

import math
import os
from typing import Optional, Sequence

from pyro_vae.core.errors import ConfigError
from pyro_vae.core.options import option, uses_flags

# Longest a command runs without --allow-long, at FAST_RATE (so in practice longer still).
MAX_HOURS = 24
# Model evaluations per second assumed for the estimate, on the fast side on purpose. Measured on
# the development machine (docs/performance.md), for the default network: IWAE K = 5000 on 1,000
# images (5e6 evaluations) in 79 s on 2 CPU cores, AIS 160 gradient evaluations per 2.5 ms on one
# core: about 60,000 per second either way. cpu: 1e6, 16 times that (a many-core CPU, a smaller
# network). cuda: not measured; 1e9 per second would be about 1 PFLOP/s for the default network
# (about 1 MFLOP per evaluation), beyond any single GPU's float32 rate.
FAST_RATE = {"cpu": 1e6, "cuda": 1e9}
# The images of each split (the largest dataset's: MNIST and Fashion-MNIST have 60,000 training
# images, binarized MNIST 50,000 and a 10,000-image validation split).
SPLIT_IMAGES = {"test": 10_000, "valid": 10_000, "train": 60_000}
IMAGE_SHAPE = (1, 28, 28)  # every dataset's images (pyro_vae.data.IMAGE_SHAPE)
IMAGE_PIXELS = math.prod(IMAGE_SHAPE)
# Bytes per log-weight that IWAE certainly holds until its batch is done: the float32 weights,
# their packed float32 copy and PSIS's float64 copy.
LOG_WEIGHT_BYTES = 16
# Bytes per AIS chain of one image, at least: the pixel probabilities of one particle (float32),
# doubled for temporaries and three times over for the gradient's graph and the carried
# gradients, as pyro_vae.evaluation.ais.images_per_batch counts (the real per-particle size is larger).
CHAIN_BYTES = 3 * 2 * 4 * IMAGE_PIXELS
# Bytes per network parameter in training: the float32 value, its gradient and Adam's two moments.
TRAINING_PARAMETER_BYTES = 4 * 4


def machine_memory() -> int:
    """Physical memory of this machine in bytes (an optimistic 1 TiB where it cannot be read)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 2**40


def resolve_device_name(device: Optional[str]) -> str:
    """"cpu" or "cuda": the device a command will run on, as far as it is known before the run is
    opened (an unknown "auto", or the run's own setting, counts as cuda where one is present:
    the faster guess, so that less is refused)."""
    if device == "cpu":
        return "cpu"
    if device == "cuda":
        return "cuda"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def show_count(n: float) -> str:
    """12,345 or 1.2e13: counts people can read at a glance."""
    if n < 1e7:
        return f"{int(n):,}"
    mantissa, exponent = f"{n:.1e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def show_bytes(n: float) -> str:
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            value = n / size
            return f"{value:.3g} {unit}" if value < 1000 else f"{show_count(value)} {unit}"
    return f"{int(n)} bytes"


def show_duration(seconds: float) -> str:
    for unit, size in (("years", 365 * 86400), ("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= size:
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds:.3g} seconds"


def go_ahead_anyway() -> str:
    """How to run work refused as too long all the same: ``--allow-long`` or ``allow_long=True``."""
    return f"add {option('allow_long')}" if uses_flags() else "pass allow_long=True"


def check_duration(evaluations: float, what: str, device: str, lower: str,
                   allow_long: bool = False, processes: int = 1,
                   go_ahead: Optional[str] = None) -> None:
    """Refuse ``evaluations`` that would take more than MAX_HOURS at FAST_RATE on ``device``
    (shared by ``processes`` torchrun ranks), unless ``allow_long``. ``what`` describes the
    work, ``lower`` the settings that make it smaller, ``go_ahead`` how to run it all the same
    (default: :func:`go_ahead_anyway`)."""
    go_ahead = go_ahead or go_ahead_anyway()
    rate = FAST_RATE.get(device, FAST_RATE["cpu"]) * max(1, processes)
    seconds = evaluations / rate
    if allow_long or seconds <= MAX_HOURS * 3600:
        return
    where = f"{processes} x {device}" if processes > 1 else device
    raise ConfigError(f"{what} is {show_count(evaluations)} model evaluations: at least "
                      f"{show_duration(seconds)} on {where} even at an optimistic "
                      f"{show_count(rate)} per second, more than the {MAX_HOURS} hours pyro-vae "
                      f"starts without asking. If you mean it, {go_ahead}; else lower {lower}")


def check_memory(needed: float, what: str, advice: str) -> None:
    """Refuse work that certainly needs more than this machine's physical memory."""
    available = machine_memory()
    if needed > available:
        raise ConfigError(f"{what} needs at least {show_bytes(needed)} of memory at once, more than "
                          f"this machine's {show_bytes(available)}; {advice}")


def evaluation_images(split: str, limit: Optional[int]) -> int:
    """How many images an evaluation of ``split`` with ``--limit`` covers (at most)."""
    total = SPLIT_IMAGES.get(split, SPLIT_IMAGES["train"])
    return total if limit is None else min(limit, total)


def check_iwae(num_samples: int, images: int, batch_size: int, device: str,
               allow_long: bool = False, processes: int = 1, go_ahead: Optional[str] = None,
               lower: Optional[str] = None) -> None:
    """IWAE with K = ``num_samples`` on ``images`` images: time (images x K model evaluations)
    and the K log-weights per image that PSIS needs, held for a whole batch. ``lower``: the
    settings that make it smaller, the first of them K's (default: num_samples or limit)."""
    lower = lower or f"{option('num_samples')} or {option('limit')}"
    k_flag = lower.split()[0]
    check_duration(images * num_samples, f"{k_flag} {num_samples} on {images:,} images", device,
                   lower, allow_long, processes, go_ahead)
    per_image = num_samples * LOG_WEIGHT_BYTES
    batch = min(batch_size, images)
    fits = machine_memory() // per_image
    advice = (f"use {option('batch_size', fits)} or less" if fits >= 1 and k_flag == option("num_samples")
              else f"lower {k_flag}")
    check_memory(batch * per_image, f"{k_flag} {num_samples} keeps {show_count(num_samples)} "
                 f"log-weights per image for a batch of {batch} image{'s' * (batch != 1)}, which",
                 advice)


# The AIS settings' flags -> their keyword arguments (pyro_vae.ais, estimate_ais).
AIS_SETTINGS = {"ais_steps": "num_steps", "ais_chains": "num_chains", "leapfrog": "num_leapfrog"}


def check_ais(method: str, images: int, steps: int, chains: int, leapfrog: int, device: str,
              allow_long: bool = False, processes: int = 1) -> None:
    """AIS (``method`` "ais") or BDMC ("bdmc": AIS both ways) on ``images`` images: time
    (images x chains x steps x leapfrog gradient evaluations) and one image's chains in memory."""
    directions = 2 if method == "bdmc" else 1
    what = (f"{option('method', method)} on {images:,} images with {steps} steps, {chains} chains and "
            f"{leapfrog} leapfrog steps" + (" each way" if directions == 2 else ""))
    steps_, chains_, leapfrog_ = (option(key, python=name) for key, name in AIS_SETTINGS.items())
    check_duration(directions * images * chains * steps * leapfrog, what, device,
                   f"{steps_}, {chains_}, {leapfrog_} or {option('limit')}", allow_long, processes)
    check_memory(chains * CHAIN_BYTES, f"{option('ais_chains', chains, python='num_chains')}: one image's chains, which",
                 f"lower {chains_}")
    if method == "bdmc":  # the simulated images are drawn at once and kept until they are saved
        check_memory(images * IMAGE_PIXELS * 4, f"{option('limit', images)}: the simulated images, which",
                     f"lower {option('limit')}")



def _linear(sizes: Sequence[int], gated: bool = False) -> int:
    """Weights and biases of an MLP through ``sizes`` (:func:`pyro_vae.nn.nets.mlp`): linear maps
    between consecutive sizes, two for each hidden layer if ``gated``, the last one plain."""
    pairs = list(zip(sizes[:-1], sizes[1:]))
    return sum((a + 1) * b * (2 if gated and i < len(pairs) - 1 else 1) for i, (a, b) in enumerate(pairs))


def _outputs_per_location(cfg, channels: int) -> int:
    """The decoder's outputs per pixel location that the shipped likelihood of ``cfg`` asks for
    (pyro_vae.models.likelihoods; core cannot import it: the shapes are repeated here)."""
    likelihood = cfg.model.likelihood
    if likelihood == "logistic-mixture":
        return cfg.model.mixtures * (1 + 2 * channels + channels * (channels - 1) // 2)
    pairs = likelihood == "logistic" or (likelihood == "gaussian" and
                                         cfg.model.likelihood_options.get("variance", "pixel") != "shared")
    return 2 * channels if pairs else channels


def _networks(cfg, image_shape: Sequence[int], z: int) -> int:
    """The encoder and decoder of :func:`pyro_vae.nn.nets.build_nets` (conv: at most 2 x 32 x 64 x
    16 weights per convolution pair, the MLP from the 64 x 7 x 7 features; resnet: its two
    residual stages besides), the decoder's outputs as many as the likelihood asks for (a
    shared Gaussian scale per value besides)."""
    c, h, w = image_shape
    x = c * h * w
    out = _outputs_per_location(cfg, c)
    if cfg.model.arch == "conv":
        x_out = x = 64 * math.ceil(h / 4) * math.ceil(w / 4)
        convolutions = 2 * ((max(c, out) + 1) * 32 * 16 + 33 * 64 * 16)
    elif cfg.model.arch == "resnet":  # pyro_vae.nn.resnet: 3 x 3 residual blocks, 4 x 4 strided maps
        x_out = x = 64 * math.ceil(h / 4) * math.ceil(w / 4)
        block = {32: 2 * (32 * 32 * 9 + 32), 64: 2 * (64 * 64 * 9 + 64)}
        encoder_maps = (c * 32 * 9 + 32) + block[32] + (32 * 64 * 16 + 64) + block[64] + (64 * 64 * 16 + 64)
        decoder_maps = 2 * block[64] + (64 * 64 * 16 + 64) + (64 * 32 * 16 + 32) + (32 * out * 9 + out)
        convolutions = encoder_maps + decoder_maps
    else:
        convolutions, x_out = 0, out * h * w
    hidden, gated = list(cfg.model.hidden), cfg.model.activation == "gated"  # pyro_vae.nn.nets.GATED
    encoder = _linear([x, *hidden, 2 * z], gated)
    decoder = _linear([z, *reversed(hidden), x_out], gated)
    shared = x if cfg.model.likelihood_options.get("variance") == "shared" else 0
    return convolutions + encoder + decoder + shared


def _prior(cfg, x: int) -> int:
    """The shipped prior's parameters and buffers over the top latent layer (0 for a user's:
    its size is its own)."""
    d = cfg.model.latent_dim[-1]
    if cfg.prior.name == "mog":
        return (cfg.prior.components or 10) * (2 * d + 1)
    if cfg.prior.name == "vamp":
        return (cfg.prior.components or 500) * x
    if cfg.prior.name == "flow":  # each coupling: an MLP to at most 32 spline numbers per dimension
        width = cfg.prior.flow_hidden
        return cfg.prior.flow_depth * (_linear([d, width, width, 32 * d]) + 33 * d)
    return 2 * d if ":" not in cfg.prior.name else 0


def parameter_estimate(cfg, image_shape: Sequence[int] = IMAGE_SHAPE) -> int:
    """An upper estimate of the number of parameters (and buffers) of the model ``cfg``
    describes, from the shapes in :mod:`pyro_vae.nn.nets`, :mod:`pyro_vae.models` and
    :mod:`pyro_vae.models.priors`, without building anything. A user model counts only its shipped
    prior: its own size is its constructor's business."""
    x = math.prod(image_shape)
    count = _prior(cfg, x)
    if cfg.model.name in ("vae", "hvae"):
        count += _networks(cfg, image_shape, cfg.model.latent_dim[0])
        gated = cfg.model.activation == "gated"
        for lower, upper in zip(cfg.model.latent_dim[:-1], cfg.model.latent_dim[1:]):  # hvae's upper layers
            count += _linear([lower, *cfg.model.upper_hidden, 2 * upper], gated)
            count += _linear([upper, *reversed(cfg.model.upper_hidden), 2 * lower], gated)
    elif cfg.model.name in ("sbn", "categorical"):
        count += _discrete_networks(cfg, x)
    if cfg.model.name in ("vae", "hvae", "sbn", "categorical") and cfg.model.baseline in ("nn", "nn-only"):
        count += len(cfg.model.latent_dim) * _linear([x, 100, 1])
    return count


def _discrete_networks(cfg, x: int) -> int:
    """The maps of :mod:`pyro_vae.models.sbn` (both ways between consecutive layers) or the
    networks of :mod:`pyro_vae.models.categorical`, with their prior's logits."""
    latent, hidden = list(cfg.model.latent_dim), list(cfg.model.hidden)
    if cfg.model.name == "sbn":
        widths = hidden if cfg.model.sbn_mapping == "nonlinear" else []
        sizes = [x, *latent]
        return x + latent[-1] + sum(_linear([a, *widths, b]) + _linear([b, *reversed(widths), a])
                                    for a, b in zip(sizes[:-1], sizes[1:]))
    codes = latent[0] * cfg.model.categories
    return codes + _linear([x, *hidden, codes]) + _linear([codes, *reversed(hidden), x])


def check_model_size(cfg, image_shape: Sequence[int] = IMAGE_SHAPE) -> None:
    """Refuse networks whose parameters, with their gradients and Adam's moments, would need
    more memory than the machine has: checked when a config is validated (before any data is
    loaded) and again where every model is built (before any tensor is allocated)."""
    count = parameter_estimate(cfg, image_shape)
    sizes = {"hidden": cfg.model.hidden, "latent_dim": cfg.model.latent_dim}
    if len(cfg.model.latent_dim) > 1:
        sizes["upper_hidden"] = cfg.model.upper_hidden
    if cfg.prior.name in ("mog", "vamp"):
        sizes["prior_components"] = cfg.prior.components
    if cfg.prior.name == "flow":
        sizes.update(flow_depth=cfg.prior.flow_depth, flow_hidden=cfg.prior.flow_hidden)
    shown = _short(", ".join(f"{k} {v}" for k, v in sizes.items()))
    check_memory(count * TRAINING_PARAMETER_BYTES,
                 f"a model with about {show_count(count)} parameters ({shown}) with its gradients "
                 "and Adam's moments", f"use smaller {option('hidden')}, {option('latent_dim')} or prior sizes")


def check_training_memory(cfg) -> None:
    """Refuse a training step whose activations certainly exceed the machine's memory: K
    particles x the batch x the layer widths, float32, kept for the backward pass."""
    if ":" in cfg.model.name:
        return
    widths = IMAGE_PIXELS * 2 + sum(cfg.model.hidden) * 2 + sum(cfg.model.latent_dim) * 3
    needed = cfg.objective.num_particles * cfg.optim.batch_size * widths * 4 * 2
    check_memory(needed, f"a training step with {option('num_particles', cfg.objective.num_particles)} and "
                 f"{option('batch_size', cfg.optim.batch_size)}",
                 f"lower {option('num_particles')} or {option('batch_size')}")


def _short(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."

