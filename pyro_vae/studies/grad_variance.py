"""How noisy is each gradient estimator? Variance and signal-to-noise ratio at fixed parameters.

For each estimator, the same network (same weights) draws R independent gradients on the same
minibatch. Per parameter element we estimate the mean and variance of the gradient, and report
for the encoder's (the guide's) and the decoder's (the generative model's, prior included)
parameters separately, for any model (:func:`~.gradient_moments.parameter_groups` reads them
off its traces):

- ``variance``: the per-element gradient variance, averaged over elements;
- ``snr``: |mean| / standard deviation per element, averaged over elements (Rainforth et al.
  2018 use this to show that tighter bounds can starve the encoder of signal);
- ``ms_per_gradient``: the median wall time of one gradient.

Moments are accumulated in float64 running sums, so memory does not grow with R.

What it compares and which settings it reads: :mod:`.grad_variance_settings`; the measurement:
:mod:`.gradient_moments`; the figure: :func:`~pyro_vae.viz.plot_grad_variance`. This module
runs the diagnostic at a run's checkpoint or at initialisation and writes its report.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Iterable, Optional

import pyro
import torch

from pyro_vae.config import Config, check_path, make_config
from pyro_vae.core.atomic import atomic_write, make_directory
from pyro_vae.core.console import log_line
from pyro_vae.core.distributed import resolve_device
from pyro_vae.core.errors import ConfigError
from pyro_vae.data import load_dataset
from pyro_vae.models import build_model
from pyro_vae.runs import RunLock, load_run, load_weights
from pyro_vae.studies.grad_variance_settings import (
    DEFAULT_BASELINE_WARMUP,
    DEFAULT_PARTICLES,
    ESTIMATOR_SPECS,
    GROUPS,
    check_arguments,
)
from pyro_vae.studies.gradient_moments import measure
from pyro_vae.viz import plot_grad_variance


def markdown_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| estimator | objective | K | encoder variance | encoder SNR | decoder variance | "
             "decoder SNR | ms / gradient |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['estimator']} | {r['elbo']} | {r['num_particles']} | "
                     f"{r['encoder_variance']:.3g} | {r['encoder_snr']:.3f} | "
                     f"{r['decoder_variance']:.3g} | {r['decoder_snr']:.3f} | {r['ms_per_gradient']:.1f} |")
    return "\n".join(lines) + "\n"


def write_report(rows: list[dict[str, Any]], out_dir: Path, meta: dict[str, Any]) -> dict[str, Path]:
    paths = {"json": out_dir / "grad_variance.json", "markdown": out_dir / "grad_variance.md",
             "figure": out_dir / "grad_variance.png"}
    atomic_write(paths["json"], json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    heading = (f"Gradient variance at fixed parameters ({meta['source']}): {meta['repeats']} draws "
               f"on one minibatch of {meta['batch_size']} images.\n\n")
    atomic_write(paths["markdown"], heading + markdown_table(rows))
    plot_grad_variance(rows, paths["figure"], f"Gradient estimators at {meta['source']} "
                       f"({meta['repeats']} draws, batch {meta['batch_size']})", GROUPS)
    return paths


def run_diagnostic(run_dir: Optional[str], overrides: dict[str, Any], config_file: Optional[str] = None,
                   estimators: Optional[list[str]] = None, repeats: int = 100,
                   baseline_warmup: Optional[int] = None, log=log_line,
                   trusted_imports: Iterable[str] = ()) -> dict[str, Path]:
    """Measure at a run's checkpoint (``run_dir``) or at initialisation (``run_dir`` None).

    ``overrides`` are config keys: ``batch_size`` is the minibatch, ``num_particles`` the K of
    the multi-sample estimators (default 5), ``baseline_beta`` the decay of the baselines, ``out``
    where the report goes (default: the run directory, or ``runs/grad-variance-<timestamp>`` at
    initialisation), locked while the diagnostic runs; at initialisation, also the model's keys
    (INIT_KEYS). A key it would not read is refused (:func:`check_arguments`).
    ``baseline_warmup``: draws before measuring a baseline (None: 100). ``trusted_imports`` as
    for :func:`~pyro_vae.runs.opening.load_run`.
    """
    estimators = estimators or list(ESTIMATOR_SPECS)
    if repeats < 2 or (baseline_warmup is not None and baseline_warmup < 0):
        raise ConfigError(f"repeats must be at least 2 and baseline_warmup at least 0, got "
                          f"{repeats} and {baseline_warmup}")
    check_arguments(run_dir is not None, overrides, estimators, config_file, baseline_warmup)
    if overrides.get("out") is not None:  # at a run, not checked with the run's config
        check_path("out", overrides["out"])
    overrides = dict(overrides)
    k = overrides.pop("num_particles", DEFAULT_PARTICLES)
    beta = overrides.pop("baseline_beta", None)
    if baseline_warmup is None:
        baseline_warmup = DEFAULT_BASELINE_WARMUP
    if run_dir is not None:
        local = {key: overrides[key] for key in ("batch_size", "seed", "device", "data_dir")
                 if key in overrides}
        state, base = load_run(run_dir, local, trusted_imports)
        weights, out, source = state["model"], Path(overrides.get("out") or run_dir), \
            f"{run_dir} (epoch {state['epoch']})"
    else:
        base = make_config(overrides, config_file)
        weights, source = None, "initialisation"
        out = Path(base.run.out or Path("runs") / time.strftime("grad-variance-%Y%m%d-%H%M%S"))
    with RunLock(make_directory(out)):
        device = resolve_device(base.run.device)
        pyro.set_rng_seed(base.run.seed)
        data = load_dataset(base.data.dataset, base.data.data_dir, device, limit_test=1)
        x = data.split("train")[:base.optim.batch_size]

        def batches() -> torch.Tensor:
            return data.train_batch(torch.randint(len(data.train), (len(x),), device=device))

        template = build_model(base, data.image_shape, data.train, dequantized=data.dequantized).to(device)
        if weights is not None:
            load_weights(template, weights, run_dir)
        elif hasattr(template, "init_from_data"):
            template.init_from_data(data.mean_pixel)
        weights = template.state_dict()

        def model_factory(cfg: Config):
            """The model for ``cfg`` at the shared weights (and the run's trained baseline network,
            if it had one and ``cfg`` uses one)."""
            model = build_model(cfg, data.image_shape, dequantized=data.dequantized).to(device)
            own = model.state_dict()
            model.load_state_dict({n: t for n, t in weights.items() if n in own}, strict=False)
            return model

        log(f"gradient variance at {source}: {repeats} draws on {len(x)} images, K = {k} for "
            "multi-sample bounds")
        rows = measure(model_factory, base, x, estimators, repeats, k, baseline_warmup, batches, log,
                       beta)
        meta = {"source": source, "repeats": repeats, "batch_size": len(x), "num_particles": k,
                "baseline_warmup": baseline_warmup, "device": str(device), "config": base.to_flat()}
        return write_report(rows, out, meta)
