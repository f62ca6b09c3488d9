"""log p(x) of a model in memory: importance sampling with PSIS diagnostics (:func:`log_likelihood`)
and annealed importance sampling (:func:`ais`), each a summary plus per-image arrays.

Both evaluate in :func:`~pyro_vae.evaluation.evaluation_context`: the model in eval mode with
frozen weights, a private param store and a forked random stream seeded with ``seed``, so the
same seed gives the same numbers and the caller's random state is left as it was. The cost is
counted before anything runs (:mod:`pyro_vae.core.workload`): work that would take more than a
day even at a fast rate is refused unless ``allow_long=True``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch import nn

from pyro_vae.api.arguments import model_object, positive
from pyro_vae.api.data import scored_images
from pyro_vae.api.runs import Run
from pyro_vae.core.console import log_line
from pyro_vae.core.distributed import resolve_device
from pyro_vae.core.errors import ConfigError
from pyro_vae.core.options import option
from pyro_vae.core.workload import check_ais, check_iwae
from pyro_vae.evaluation import DEFAULT_BATCH, STARTS, default_steps, describe, estimate_ais, evaluate_model
from pyro_vae.evaluation import accuracy as classification_accuracy
from pyro_vae.evaluation.classification import has_label_site
from pyro_vae.evaluation.context import evaluation_context
from pyro_vae.evaluation.evaluate_ais import describe_ais
from pyro_vae.models.likelihoods import Likelihood
from pyro_vae.models.sites import probe

GIVEN = "given"  # the summaries' split: the images x= holds ("on 100 given images")


@dataclass(repr=False)
class LogLikelihood:
    """An importance-sampled log p(x) estimate: ``summary`` (what ``eval.json`` holds: the mean
    ``log_likelihood``, its ``stderr``, ``elbo``, ``gap``, active units, ``psis`` k-hat
    diagnostics and the ``trust`` sentence) and ``points``, the per-image arrays (``log_px``,
    ``elbo``, ``khat``, ``ess``). ``str()`` is the report the scripts print."""

    summary: dict[str, Any]
    points: Any  # pyro_vae.evaluation.PointEstimates

    log_likelihood = property(lambda self: self.summary["log_likelihood"], doc="mean log p(x), nats per image")
    stderr = property(lambda self: self.summary["stderr"], doc="its standard error")
    psis = property(lambda self: self.summary.get("psis"), doc="PSIS k-hat and ESS summary (K >= 21)")
    trust = property(lambda self: self.summary["trust"],
                     doc="None when the estimate can be trusted, else what is wrong and what to do")
    log_px = property(lambda self: self.points.log_px, doc="per image: log p(x)")
    khat = property(lambda self: self.points.khat, doc="per image: PSIS k-hat (NaN for K < 21)")
    ess = property(lambda self: self.points.ess, doc="per image: effective sample size")

    def __str__(self) -> str:
        return describe(self.summary)

    def __repr__(self) -> str:
        s = self.summary
        return (f"LogLikelihood({s['log_likelihood']:.3f} +- {s['stderr']:.3f} nats on {s['num_points']} "
                f"images, K = {s['num_samples']})")


@dataclass(repr=False)
class AISEstimate:
    """An AIS log p(x) estimate: ``summary`` (the mean ``log_likelihood``, its ``stderr``, the
    settings, HMC's acceptance rate) and ``points``, the per-image arrays (``log_px``,
    ``acceptance``, ``step_size``). ``str()`` is the report the scripts print."""

    summary: dict[str, Any]
    points: Any  # pyro_vae.evaluation.ais.AISPoints

    log_likelihood = property(lambda self: self.summary["log_likelihood"], doc="mean log p(x), nats per image")
    stderr = property(lambda self: self.summary["stderr"], doc="its standard error")
    log_px = property(lambda self: self.points.log_px, doc="per image: the AIS estimate of log p(x)")

    def __str__(self) -> str:
        return describe_ais(self.summary)

    def __repr__(self) -> str:
        s = self.summary
        return f"AISEstimate({s['log_likelihood']:.3f} +- {s['stderr']:.3f} nats on {s['num_points']} images)"


def log_likelihood(model: nn.Module | Run, x: Any, num_samples: int = 5000, *, batch_size: int = 100,
                   seed: int = 0, device: Optional[str | torch.device] = None, max_memory: int | str = "auto",
                   allow_long: bool = False, progress: bool = False, exact_discrete: bool = True,
                   labels: Any = None) -> LogLikelihood:
    """log p(x) of each image of ``x`` (binary, ``(N, D)`` or image-shaped) under ``model`` (or a
    :class:`Run`'s model), by importance sampling from its guide with ``num_samples`` samples per
    image, ``batch_size`` images at a time; with PSIS diagnostics that say whether to trust it.
    ``device``: where to evaluate (the model is moved there; default: where the model is).
    Discrete latent sites small enough to enumerate are summed exactly inside each weight (log
    p(x) is exact where that is every site); ``exact_discrete=False`` samples them instead.
    ``labels``: the class of each image; for a model that takes labels (a label site ``"y"``),
    the result adds the accuracy of q(y | x)."""
    model, x, device = _prepared(model, x, device)
    labels = None if labels is None else class_labels(labels, len(x)).to(device)
    num_samples, batch_size = positive("num_samples", num_samples), positive("batch_size", batch_size)
    check_iwae(num_samples, len(x), batch_size, device.type, allow_long,
               lower=f"{option('num_samples')} or the images in x")
    summary, points = evaluate_model(model, x, num_samples, batch_size, max_memory, seed, log_line, progress,
                                     exact_discrete, labels)
    summary["split"] = GIVEN
    return LogLikelihood(summary, points)


def accuracy(model: nn.Module | Run, x: Any, labels: Any, *, batch_size: int = 1000, seed: int = 0,
             device: Optional[str | torch.device] = None) -> float:
    """The fraction of images of ``x`` whose most probable class under the model's q(y | x) (the
    guide's label site ``"y"``) is their label (``labels``: class indices, one per image)."""
    model, x, device = _prepared(model, x, device)
    labels = class_labels(labels, len(x)).to(device)
    if not has_label_site(model.guide, x):
        raise ConfigError(f"model {type(model).__name__} has no label site 'y' in its guide: it does not "
                          "classify (see docs/models.md, \"Labels\")")
    with evaluation_context(model, device, seed):
        return classification_accuracy(model.guide, x, labels, batch_size=positive("batch_size", batch_size))


def class_labels(value: Any, count: int) -> torch.Tensor:
    """``value`` as ``(count,)`` class indices, or a one-line ConfigError naming ``labels=``."""
    labels = torch.as_tensor(value)
    if labels.shape != (count,) or labels.is_floating_point() and not torch.equal(labels, labels.round()):
        raise ConfigError(f"labels= must hold one class index per image ({count}), got shape "
                          f"{tuple(labels.shape)}")
    return labels.long()


def ais(model: nn.Module | Run, x: Any, num_steps: Optional[int] = None, *, num_chains: int = 16,
        num_leapfrog: int = 10, start: str = "guide", batch_size: Optional[int] = None, seed: int = 0,
        device: Optional[str | torch.device] = None, max_memory: int | str = "auto",
        allow_long: bool = False, progress: bool = False) -> AISEstimate:
    """log p(x) of each image of ``x`` under ``model`` by annealed importance sampling from the
    guide (``start="guide"``) or the prior, with ``num_steps`` intermediate distributions
    (default 500 on the CPU, 5000 on a GPU), ``num_chains`` chains per image and HMC with
    ``num_leapfrog`` leapfrog steps: the gold standard that importance sampling approaches from
    below. ``batch_size``: images at a time (default: the device's)."""
    model, x, device = _prepared(model, x, device)
    num_steps = positive("num_steps", num_steps, optional=True) or default_steps(device.type)
    num_chains, num_leapfrog = positive("num_chains", num_chains), positive("num_leapfrog", num_leapfrog)
    batch_size = positive("batch_size", batch_size, optional=True) or DEFAULT_BATCH.get(device.type, DEFAULT_BATCH["cpu"])
    if start not in STARTS:
        raise ConfigError(f"start= must be one of {', '.join(map(repr, STARTS))}, got {start!r}")
    check_ais("ais", len(x), num_steps, num_chains, num_leapfrog, device.type, allow_long)
    summary, points = estimate_ais(model, x, num_steps, num_chains, num_leapfrog, start, batch_size, seed,
                                   max_memory, log_line, progress)
    summary["split"] = GIVEN
    return AISEstimate(summary, points)


def _prepared(model: Any, x: Any, device: Any) -> tuple[nn.Module, torch.Tensor, torch.device]:
    """The model (a Run's, checked), ``x`` as ``(N, D)`` images its likelihood scores (binary for a
    Bernoulli) on the evaluation device,
    and that device; the model and ``x`` must agree (probed on two images)."""
    model = model_object(model.model if isinstance(model, Run) else model)
    likelihood = getattr(model, "likelihood", None)
    x = scored_images(x, likelihood.data if isinstance(likelihood, Likelihood) else "binary", "x")
    if device is not None:
        device = resolve_device(device) if device == "auto" else torch.device(device)
        model.to(device)
    else:
        parameter = next(model.parameters(), None)
        device = parameter.device if parameter is not None else torch.device("cpu")
    x = x.to(device)
    try:
        probe(model.model, model.guide, x, type(model).__name__)
    except ConfigError as e:
        raise ConfigError(f"model= and x= (shape {tuple(x.shape)}) do not fit: {e}") from None
    return model, x, device

