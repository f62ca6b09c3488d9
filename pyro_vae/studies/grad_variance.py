"""How noisy is each gradient estimator? Variance and signal-to-noise ratio at fixed parameters.

For each estimator, the same network (same weights) draws R independent gradients on the same
minibatch. Per parameter element we estimate the mean and variance of the gradient, and report
for the encoder's (the guide's) and the decoder's (the generative model's, prior included)
parameters separately, for any model (:func:`parameter_groups` reads them off its traces):

- ``variance``: the per-element gradient variance, averaged over elements;
- ``snr``: |mean| / standard deviation per element, averaged over elements (Rainforth et al.
  2018 use this to show that tighter bounds can starve the encoder of signal);
- ``ms_per_gradient``: the median wall time of one gradient.

Moments are accumulated in float64 running sums, so memory does not grow with R.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any, Iterable, Optional

import pyro
import torch

from pyro_vae.config import Config, check_path, make_config, replaced
from pyro_vae.core.atomic import atomic_write, make_directory, save_figure
from pyro_vae.core.console import log_line
from pyro_vae.core.distributed import resolve_device
from pyro_vae.core.errors import ConfigError
from pyro_vae.data import load_dataset
from pyro_vae.infer.objectives import build_objective, check_structure
from pyro_vae.models import build_model
from pyro_vae.models.sites import probe, trace_once
from pyro_vae.runs.lock import RunLock
from pyro_vae.runs.opening import load_run, load_weights
from pyro_vae.training.trainer import non_module_params

# Estimators compared by default: name -> config overrides.
ESTIMATOR_SPECS: dict[str, dict[str, Any]] = {
    "reparam": {"estimator": "reparam", "elbo": "trace"},
    "meanfield": {"estimator": "reparam", "elbo": "meanfield"},
    "stl": {"estimator": "reparam", "elbo": "stl"},
    "score": {"estimator": "score", "elbo": "tracegraph", "baseline": "none"},
    "score+avg": {"estimator": "score", "elbo": "tracegraph", "baseline": "avg"},
    "score+nn": {"estimator": "score", "elbo": "tracegraph", "baseline": "nn"},
    "iwae": {"estimator": "reparam", "elbo": "iwae", "multi_sample": True},
    "dreg": {"estimator": "reparam", "elbo": "dreg", "multi_sample": True},
}
GROUPS = ("encoder", "decoder")
MULTI_SAMPLE = tuple(name for name, spec in ESTIMATOR_SPECS.items() if spec.get("multi_sample"))
WITH_BASELINE = tuple(name for name, spec in ESTIMATOR_SPECS.items() if spec.get("baseline", "none") != "none")
DEFAULT_PARTICLES, DEFAULT_BASELINE_WARMUP = 5, 100

# Config keys the diagnostic reads. At a run's checkpoint: where and how to measure (the model is
# the run's own, from its checkpoint). At initialisation (run_dir None), also what to build.
# Every other key given is refused (check_arguments): the estimator keys are what it varies
# (--estimators), and training keys are never read.
RUN_KEYS = ("batch_size", "seed", "device", "data_dir", "out", "num_particles", "baseline_beta")
INIT_KEYS = (*RUN_KEYS, "dataset", "model", "model_options", "arch", "hidden", "upper_hidden",
             "activation", "latent_dim", "logvar_range", "prior", "prior_components", "vamp_init",
             "flow", "flow_depth", "flow_hidden", "prior_df", "prior_options")
VARIED_KEYS = ("estimator", "elbo", "baseline", "alpha")


def check_arguments(at_run: bool, overrides: dict[str, Any], estimators: list[str],
                    config_file: Optional[str] = None,
                    baseline_warmup: Optional[int] = None) -> None:
    """Refuse, in one line, every setting given to the diagnostic that it would not read: the
    keys of ``overrides`` outside RUN_KEYS (at a run, ``at_run``) or INIT_KEYS, a config file at
    a run, K (``num_particles``) without a multi-sample estimator or below 2, and a baseline
    setting (``baseline_beta``, ``baseline_warmup``) without an estimator that has a baseline."""
    from pyro_vae.config import flag

    if at_run and config_file is not None:
        raise ConfigError("--config is for --init: at a run's checkpoint the model is the run's own "
                          "(its config.yaml); drop --config")
    for key in overrides:
        if key in (RUN_KEYS if at_run else INIT_KEYS):
            continue
        if key in VARIED_KEYS:
            why = "it measures each estimator of --estimators in turn (choose them there)"
        elif at_run and key in INIT_KEYS:
            why = "it builds the model from it at --init, but at a run's checkpoint the model is the run's own"
        else:
            why = "it measures gradients on one minibatch of training images and trains nothing"
        raise ConfigError(f"grad_variance does not read {flag(key)}: {why}; drop it")
    if "num_particles" in overrides:
        if not set(estimators) & set(MULTI_SAMPLE):
            raise ConfigError(f"--num-particles is the K of {' and '.join(MULTI_SAMPLE)}, and "
                              "--estimators includes neither; drop it or add one of them")
        if overrides["num_particles"] < 2:
            raise ConfigError(f"--num-particles must be at least 2 (the K of a multi-sample bound), "
                              f"got {overrides['num_particles']}")
    for key, given in (("baseline_beta", "baseline_beta" in overrides),
                       ("baseline_warmup", baseline_warmup is not None)):
        if given and not set(estimators) & set(WITH_BASELINE):
            raise ConfigError(f"{flag(key)} is for the estimators with a baseline "
                              f"({', '.join(WITH_BASELINE)}), and --estimators includes none; drop it")


class _Moments:
    """Running sums of x and x^2 per element (float64)."""

    def __init__(self):
        self.n, self.s, self.sq = 0, None, None

    def add(self, x: torch.Tensor) -> None:
        x = x.detach().double()
        self.s = x.clone() if self.s is None else self.s + x
        self.sq = x * x if self.sq is None else self.sq + x * x
        self.n += 1

    def summary(self) -> dict[str, float]:
        mean = self.s / self.n
        var = ((self.sq - self.n * mean * mean) / (self.n - 1)).clamp_min(0)
        informative = var > 0
        snr = mean[informative].abs() / var[informative].sqrt()
        return {"variance": var.mean().item(), "snr": snr.mean().item(),
                "mean_grad_norm": mean.norm().item()}


def spec_config(base: Config, name: str, num_particles: int,
                baseline_beta: Optional[float] = None) -> Config:
    """The run's config with estimator ``name`` swapped in (and ``baseline_beta``, if given, for
    an estimator with a baseline; the default decay for one without, which does not read it)."""
    overrides = dict(ESTIMATOR_SPECS[name])
    multi_sample = overrides.pop("multi_sample", False)
    overrides.update(num_particles=num_particles if multi_sample else 1, alpha=None)
    overrides.setdefault("baseline", "none")
    if overrides["baseline"] != "none" and baseline_beta is not None:
        overrides["baseline_beta"] = baseline_beta
    return replaced(base, **overrides)


def parameter_groups(model, x: torch.Tensor) -> dict[str, list[torch.Tensor]]:
    """The model's parameters by the program that registers them, read off one trace of each:
    "encoder" (the guide's), "decoder" (the generative model's, the prior's included) and
    "baseline" (the networks of score-function baselines, named in the guide sites' ``infer``).
    A parameter the guide and the model share (VampPrior's encoder) counts as the guide's."""
    model_trace, guide_trace = trace_once(model.model, model.guide, x)
    baseline = {id(p): p for site in guide_trace.nodes.values() if site["type"] == "sample"
                for net in [site["infer"].get("baseline", {}).get("nn_baseline")] if net is not None
                for p in net.parameters()}
    groups: dict[str, dict[int, torch.Tensor]] = {"encoder": {}, "decoder": {}}
    for group, trace in (("encoder", guide_trace), ("decoder", model_trace)):
        for site in trace.nodes.values():
            if site["type"] != "param":
                continue
            value = site["value"]
            if id(value) not in baseline and all(id(value) not in g for g in groups.values()):
                groups[group][id(value)] = value
    return {**{g: list(params.values()) for g, params in groups.items()}, "baseline": list(baseline.values())}


def _warm_up_baseline(model, elbo, batches, steps: int, baseline_params: list[torch.Tensor]) -> None:
    """Let a baseline learn at the fixed model and guide parameters, on random training
    minibatches as in training: the decaying average settles, the baseline network is fitted by
    its own Adam (only its parameters move)."""
    optimizer = torch.optim.Adam(baseline_params, lr=1e-3) if baseline_params else None
    for _ in range(steps):
        elbo.loss_and_grads(model.model, model.guide, batches())
        if optimizer:
            optimizer.step()
        model.zero_grad(set_to_none=True)


def measure(model_factory, base: Config, x: torch.Tensor, estimators: list[str], repeats: int,
            num_particles: int = DEFAULT_PARTICLES, baseline_warmup: int = DEFAULT_BASELINE_WARMUP,
            batches=None, log=log_line, baseline_beta: Optional[float] = None) -> list[dict[str, Any]]:
    """One row per estimator. ``model_factory(cfg)`` returns the model at the shared weights;
    ``batches()`` returns a random training minibatch for the baselines' warm-up.

    Pyro keeps the decaying-average baseline per batch position, so on one fixed minibatch it
    would become a per-image baseline, far stronger than in training. Baselines are therefore
    warmed up on random minibatches and their state is restored before every measured draw.
    """
    rows = []
    for name in estimators:
        try:
            cfg = spec_config(base, name, num_particles, baseline_beta)
            vae = model_factory(cfg)
            check_structure(cfg, probe(vae.model, vae.guide, x, cfg.model.name))
        except ConfigError as e:  # e.g. meanfield on a hierarchical guide
            log(f"  {name:<10} skipped: {e}")
            continue
        elbo = build_objective(cfg)
        groups = parameter_groups(vae, x)
        moments = {g: _Moments() for g in GROUPS}
        seconds = []
        with pyro.get_param_store().scope():
            if cfg.model.baseline != "none":
                _warm_up_baseline(vae, elbo, batches or (lambda: x), baseline_warmup, groups["baseline"])
            frozen = non_module_params()
            for _ in range(repeats):
                for n, value in frozen.items():
                    pyro.get_param_store()[n] = value.clone()
                vae.zero_grad(set_to_none=True)
                start = time.perf_counter()
                elbo.loss_and_grads(vae.model, vae.guide, x)
                if x.is_cuda:
                    torch.cuda.synchronize()
                seconds.append(time.perf_counter() - start)
                for g in GROUPS:
                    moments[g].add(torch.cat([_grad(p) for p in groups[g]]))
        row = {"estimator": name, "elbo": cfg.objective.elbo, "num_particles": cfg.objective.num_particles,
               "ms_per_gradient": 1e3 * statistics.median(seconds)}
        for g in GROUPS:
            row.update({f"{g}_{k}": v for k, v in moments[g].summary().items()})
        rows.append(row)
        log(f"  {name:<10} encoder variance {row['encoder_variance']:.3e} SNR {row['encoder_snr']:.3f} | "
            f"decoder variance {row['decoder_variance']:.3e} SNR {row['decoder_snr']:.3f} | "
            f"{row['ms_per_gradient']:.1f} ms")
    return rows


def _grad(p: torch.Tensor) -> torch.Tensor:
    """The flattened gradient; zeros for a parameter this estimator's loss does not reach."""
    return (p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1)


def markdown_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| estimator | objective | K | encoder variance | encoder SNR | decoder variance | "
             "decoder SNR | ms / gradient |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['estimator']} | {r['elbo']} | {r['num_particles']} | "
                     f"{r['encoder_variance']:.3g} | {r['encoder_snr']:.3f} | "
                     f"{r['decoder_variance']:.3g} | {r['decoder_snr']:.3f} | {r['ms_per_gradient']:.1f} |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["estimator"] for r in rows]
    pos = range(len(rows))
    width = 0.38
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    for ax, key, label in ((axes[0], "variance", "gradient variance per parameter (log scale)"),
                           (axes[1], "snr", "signal-to-noise ratio |mean| / sd (log scale)")):
        for i, g in enumerate(GROUPS):
            ax.bar([p + (i - 0.5) * width for p in pos], [r[f"{g}_{key}"] for r in rows], width,
                   label=g)
        ax.set_yscale("log")
        ax.set_ylabel(label)
    axes[2].bar(list(pos), [r["ms_per_gradient"] for r in rows], color="grey")
    axes[2].set_ylabel("wall time per gradient (ms)")
    for ax in axes:
        ax.set_xticks(list(pos), names, rotation=35, ha="right")
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(title)
    fig.legend(*axes[0].get_legend_handles_labels(), loc="upper right", ncol=2)
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    try:
        save_figure(fig, path, dpi=90)
    finally:
        plt.close(fig)


def write_report(rows: list[dict[str, Any]], out_dir: Path, meta: dict[str, Any]) -> dict[str, Path]:
    paths = {"json": out_dir / "grad_variance.json", "markdown": out_dir / "grad_variance.md",
             "figure": out_dir / "grad_variance.png"}
    atomic_write(paths["json"], json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    heading = (f"Gradient variance at fixed parameters ({meta['source']}): {meta['repeats']} draws "
               f"on one minibatch of {meta['batch_size']} images.\n\n")
    atomic_write(paths["markdown"], heading + markdown_table(rows))
    plot(rows, paths["figure"], f"Gradient estimators at {meta['source']} ({meta['repeats']} "
                                f"draws, batch {meta['batch_size']})")
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

        template = build_model(base, data.image_shape, data.train).to(device)
        if weights is not None:
            load_weights(template, weights, run_dir)
        elif hasattr(template, "init_from_data"):
            template.init_from_data(data.mean_pixel)
        weights = template.state_dict()

        def model_factory(cfg: Config):
            """The model for ``cfg`` at the shared weights (and the run's trained baseline network,
            if it had one and ``cfg`` uses one)."""
            model = build_model(cfg, data.image_shape).to(device)
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
