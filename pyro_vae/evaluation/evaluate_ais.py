"""AIS and BDMC evaluations of a trained run: ``evaluate.py RUN --method ais|bdmc``.

``eval_ais.json`` sits beside the importance-weighted ``eval.json``. When that file is there for
the same checkpoint and split, the per-image difference AIS - IWAE is reported, and set against
each image's PSIS k-hat: the question this answers is whether a k-hat above 0.7 marks images
whose IWAE estimate really falls short, or whether the diagnostic is only alarmed.
``eval_bdmc.json`` holds BDMC's lower and upper bounds on images simulated from the model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable, Optional

import numpy as np

from pyro_vae.core.console import log_line
from pyro_vae.core.distributed import log_on_main, on_main
from pyro_vae.core.errors import RunDirError
from pyro_vae.core.options import option, uses_flags
from pyro_vae.evaluation.ais import estimate_ais
from pyro_vae.evaluation.bdmc import estimate_bdmc
from pyro_vae.evaluation.diagnostics import standard_error
from pyro_vae.evaluation.memory import AUTO_MEMORY
from pyro_vae.evaluation.psis import KHAT_BAD, KHAT_SEVERE
from pyro_vae.evaluation.run_evaluation import open_for_evaluation, show_progress
from pyro_vae.runs import read_result, read_summary, save_result

# Steps of the annealing schedule when none is given. On a CPU, few enough that a few hundred test
# images take minutes: the one-layer MNIST VAE with 16 chains and 10 leapfrog steps costs about
# 2.5 ms per image and step on one core (measured; docs/performance.md), so T = 500 on 200 images
# is about 4 minutes. On the trained one-layer models, T = 300 and T = 1000 agreed to 0.01 nats and
# BDMC's bounds at T = 1000 to 0.01 nats (docs/evaluation.md, "Can it be trusted?"). On a GPU ten times more,
# as in the papers that use AIS as a reference.
DEFAULT_AIS_STEPS = {"cpu": 500, "cuda": 5000}
DEFAULT_BDMC_IMAGES = 100
# Edges of the k-hat bins in which AIS - IWAE is averaged: PSIS's threshold, 1 (the weights' mean
# is infinite above it), and KHAT_SEVERE.
KHAT_BIN_EDGES = (KHAT_BAD, 1.0, KHAT_SEVERE)


def default_steps(device: str) -> int:
    return DEFAULT_AIS_STEPS.get(device, DEFAULT_AIS_STEPS["cpu"])


def _ranks(a: np.ndarray) -> np.ndarray:
    ranks = np.empty(len(a))
    ranks[np.argsort(a, kind="stable")] = np.arange(len(a))
    return ranks


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Rank correlation (ties broken by order: the values here are continuous)."""
    if len(a) < 3:
        return float("nan")
    return float(np.corrcoef(_ranks(a), _ranks(b))[0, 1])


def shortfall_by_khat(khat: np.ndarray, diff: np.ndarray) -> dict[str, dict]:
    """Mean AIS - IWAE of the images in each k-hat bin (``KHAT_BIN_EDGES``), keyed by the bin's
    label: does the diagnostic sort images by how far their IWAE estimate falls short?"""
    edges = (-np.inf, *KHAT_BIN_EDGES, np.inf)
    bins = {}
    for low, high in zip(edges[:-1], edges[1:]):
        label = (f"<= {high:g}" if low == -np.inf else f"> {low:g}" if high == np.inf
                 else f"{low:g}-{high:g}")
        inside = (khat > low) & (khat <= high)
        bins[label] = {"num_points": int(inside.sum()),
                       "ais_minus_iwae": float(diff[inside].mean()) if inside.any() else None}
    return bins


def compare_with_iwae(directory: Path, summary: dict,
                      ais_log_px: np.ndarray) -> Optional[tuple[dict, dict[str, np.ndarray]]]:
    """AIS - IWAE per image against ``eval.json`` / ``eval_points.npz`` in ``directory``, when
    they evaluated the same checkpoint (its SHA-256) and split (on the first images of it, as
    ``--limit`` does): the comparison's summary and IWAE's per-image ``iwae_log_px`` and
    ``khat`` on the common images. None where there is no such eval.json; a RunDirError where
    there is one but it cannot be read with its points."""
    if not (directory / "eval.json").exists():
        return None
    iwae = read_summary(directory / "eval.json")
    if any(iwae.get(k) != summary[k] for k in ("split", "checkpoint_sha256")):
        return None
    iwae, points = read_result(directory, "eval", ("log_px", "khat"), iwae)
    iwae_log_px, khat = points["log_px"], points["khat"]
    n = min(len(ais_log_px), len(iwae_log_px))
    iwae_log_px, khat = iwae_log_px[:n], khat[:n]
    diff = ais_log_px[:n].astype(np.float64) - iwae_log_px
    result = {"num_samples": iwae.get("num_samples"), "num_points": n,
              "iwae_log_likelihood": float(iwae_log_px.mean()),
              "ais_minus_iwae": float(diff.mean()), "ais_minus_iwae_stderr": standard_error(diff),
              "ais_minus_iwae_max": float(diff.max())}
    if not np.isnan(khat).all():
        result["khat"] = {"spearman_khat_vs_shortfall": spearman(khat, diff),
                          "bins": shortfall_by_khat(khat, diff)}
    return result, {"iwae_log_px": iwae_log_px, "khat": khat}


def describe_ais(summary: dict) -> str:
    lines = [f"AIS log p(x) = {summary['log_likelihood']:.3f} +- {summary['stderr']:.3f} nats "
             f"(NLL {summary['nll']:.3f}) on {summary['num_points']} {summary['split']} images",
             f"{summary['ais_steps']} annealing steps, {summary['ais_chains']} chains, "
             f"{summary['leapfrog']} leapfrog steps, from the {summary['start']}; HMC acceptance "
             f"{summary['acceptance_rate']:.2f}, median final step size {summary['step_size_median']:.3g}"]
    iwae = summary.get("iwae")
    if iwae:
        lines.append(f"IWAE (K = {iwae['num_samples']}) on the same {iwae['num_points']} images: "
                     f"{iwae['iwae_log_likelihood']:.3f}; it is {iwae['ais_minus_iwae']:.3f} +- "
                     f"{iwae['ais_minus_iwae_stderr']:.3f} nats below AIS per image on average "
                     f"(at most {iwae['ais_minus_iwae_max']:.3f})")
        k = iwae.get("khat")
        if k:
            parts = [f"{b['ais_minus_iwae']:.3f} ({b['num_points']} images with k-hat {label})"
                     for label, b in k["bins"].items() if b["num_points"]]
            lines.append("AIS - IWAE by k-hat: " + ", ".join(parts) + "; rank correlation of k-hat "
                         f"with AIS - IWAE {k['spearman_khat_vs_shortfall']:.2f}")
    else:
        first = f"run evaluate.py without {option('method')}" if uses_flags() else "evaluate the run with evaluate_run"
        lines.append(f"(no eval.json of the same checkpoint here: {first} first to compare with the "
                     "importance-weighted estimate)")
    lines.append(f"{summary['seconds']:.1f} s on {summary['device']}")
    return "\n".join(lines)


def describe_bdmc(summary: dict) -> str:
    return "\n".join([
        f"BDMC on {summary['num_points']} images simulated from the model: lower bound "
        f"{summary['lower']:.3f} +- {summary['lower_stderr']:.3f}, upper bound {summary['upper']:.3f} "
        f"+- {summary['upper_stderr']:.3f} nats",
        f"gap (upper - lower) {summary['gap']:.3f} +- {summary['gap_stderr']:.3f} nats per image on "
        f"average, at most {summary['gap_max']:.3f}: either bound is that close to log p(x) in "
        "expectation" + ("" if summary['gap'] < 1 else
                         f"; longer chains ({option('ais_steps', python='num_steps')}) would tighten it"),
        f"{summary['ais_steps']} annealing steps each way, {summary['ais_chains']} chains, "
        f"{summary['leapfrog']} leapfrog steps, from the {summary['start']}; HMC acceptance "
        f"{summary['acceptance_rate']:.2f}",
        f"{summary['seconds']:.1f} s on {summary['device']}"])


def ais_run(run_dir: str | Path, num_steps: Optional[int] = None, num_chains: int = 16,
            num_leapfrog: int = 10, start: str = "guide", split: str = "test",
            limit: Optional[int] = None, batch_size: Optional[int] = None,
            max_memory: int | str = AUTO_MEMORY,
            device: Optional[str] = None, seed: Optional[int] = None, data_dir: Optional[str] = None,
            log: Callable[[str], None] = log_line, progress: Optional[bool] = None,
            out_dir: str | Path | None = None, trusted_imports: Iterable[str] = (),
            checkpoint: str = "best") -> dict:
    """AIS log p(x) of a run's checkpoint; writes ``eval_ais.json`` and ``eval_ais_points.npz``
    (per image: the AIS estimate, HMC acceptance, final step size, and AIS - IWAE where an
    ``eval.json`` of the same checkpoint is in ``out_dir`` or else in the run directory).
    ``batch_size`` None: the device's default (:data:`~pyro_vae.evaluation.ais.DEFAULT_BATCH`)."""
    with open_for_evaluation(run_dir, split, limit, device, data_dir, out_dir, trusted_imports,
                             checkpoint) as opened:
        steps = num_steps or default_steps(opened.x.device.type)
        log = log_on_main(log)
        log(f"AIS on {opened.description}: {len(opened.x)} {split} images, {steps} steps, "
            f"{num_chains} chains, {num_leapfrog} leapfrog steps, from the {start}")
        summary, points = estimate_ais(opened.model, opened.x, steps, num_chains, num_leapfrog, start,
                                       batch_size, opened.cfg.run.seed if seed is None else seed,
                                       max_memory, log, show_progress(progress))
        summary.update(split=split, **opened.provenance())

        def report() -> dict:  # rank 0's, in a torchrun job
            arrays = {"log_px": points.log_px, "acceptance": points.acceptance, "step_size": points.step_size}
            # the result is saved before anything reads other files, which may be malformed
            save_result(opened.target, "eval_ais", summary, arrays)
            comparison, problem = None, None
            for directory in dict.fromkeys((opened.target, opened.run.path)):  # --out DIR first
                try:
                    comparison = compare_with_iwae(directory, summary, points.log_px)
                except RunDirError as e:
                    problem = problem or str(e)
                if comparison:
                    break
            if comparison:
                summary["iwae"], iwae_arrays = comparison
                save_result(opened.target, "eval_ais", summary, {**arrays, **iwae_arrays})
            log(describe_ais(summary))
            if problem and not comparison:
                log(f"not compared with the importance-weighted estimate: {problem}")
            return summary
        return on_main(report)


def bdmc_run(run_dir: str | Path, num_points: int = DEFAULT_BDMC_IMAGES,
             num_steps: Optional[int] = None, num_chains: int = 16, num_leapfrog: int = 10,
             start: str = "guide", batch_size: Optional[int] = None,
             max_memory: int | str = AUTO_MEMORY,
             device: Optional[str] = None, seed: Optional[int] = None, data_dir: Optional[str] = None,
             log: Callable[[str], None] = log_line, progress: Optional[bool] = None,
             out_dir: str | Path | None = None, trusted_imports: Iterable[str] = (),
             checkpoint: str = "best") -> dict:
    """BDMC bounds on ``num_points`` images simulated from a run's model; writes
    ``eval_bdmc.json`` and ``eval_bdmc_points.npz`` (per image: lower, upper bound)."""
    with open_for_evaluation(run_dir, "test", 1, device, data_dir, out_dir, trusted_imports,
                             checkpoint) as opened:
        steps = num_steps or default_steps(opened.x.device.type)
        log = log_on_main(log)
        log(f"BDMC on {opened.description}: {num_points} simulated images, {steps} steps each "
            f"way, {num_chains} chains, {num_leapfrog} leapfrog steps, from the {start}")
        summary, points = estimate_bdmc(opened.model, num_points, opened.x.shape[1], opened.x.device,
                                        steps, num_chains, num_leapfrog, start, batch_size,
                                        opened.cfg.run.seed if seed is None else seed, max_memory, log,
                                        show_progress(progress))
        summary.update(**opened.provenance())

        def report() -> None:  # rank 0's, in a torchrun job
            log(describe_bdmc(summary))
            save_result(opened.target, "eval_bdmc", summary,
                         {"lower": points.lower.log_px, "upper": points.upper.log_px,
                          "images": points.x.cpu().numpy()})
        on_main(report)
    return summary
