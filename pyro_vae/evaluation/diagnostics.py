"""What the per-point estimates say, in numbers and in words: active units, whether to trust the
estimate, the summary that ``eval.json`` holds and the report the scripts print.

Apart from the estimator (:mod:`.iwae`) because it reads only its results: a summary can be
remade from saved per-point arrays, and AIS (:mod:`.ais`) shares :func:`standard_error`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Optional

import numpy as np

from pyro_vae.core.options import option, uses_flags
from pyro_vae.evaluation.psis import KHAT_BAD, KHAT_GOOD, KHAT_SEVERE, PSIS_MIN_SAMPLES

if TYPE_CHECKING:
    from pyro_vae.evaluation.iwae import PointEstimates

ACTIVE_UNIT_THRESHOLD = 1e-2  # Burda et al.: Cov_x(E_q[z_j]) above this


def active_units(posterior_mean: np.ndarray, threshold: float = ACTIVE_UNIT_THRESHOLD,
                 classes: int = 1) -> int:
    """Latent units whose posterior mean varies across data points: Var_x(E_q[z_j | x]) above
    ``threshold`` (Burda et al. 2016). For a Bernoulli unit E_q[z_j] is its probability. With
    ``classes`` C > 1 the columns are C-class categorical latents' class probabilities, C
    consecutive columns per latent, and a latent counts as active where the variances of its
    classes' probabilities sum above ``threshold`` (the total variance of its one-hot code's
    mean)."""
    variance = np.var(posterior_mean, axis=0, ddof=1)
    return int((variance.reshape(-1, classes).sum(-1) > threshold).sum())


def latent_units(posterior_mean: np.ndarray, classes: int = 1) -> int:
    """How many latent units the columns of a site's posterior means hold (see :func:`active_units`)."""
    return int(posterior_mean.shape[1]) // classes


def trust_sentence(khat: np.ndarray, num_samples: int) -> Optional[str]:
    """None when the estimate can be trusted, else what is wrong and what to do. A NaN k-hat
    with K large enough marks a repeating tail (:func:`~pyro_vae.evaluation.psis.repeated_tail`)."""
    defined = ~np.isnan(khat)
    if not defined.any() and num_samples < PSIS_MIN_SAMPLES:
        return (f"No PSIS diagnostics: they need K >= {PSIS_MIN_SAMPLES} samples, so nothing can "
                f"be said about how reliable the estimate with K = {num_samples} is.")
    if not defined.all():
        share = f"{100 * (1 - defined.mean()):.1f}% of the data points" if defined.any() else "every data point"
        repeated = (f"PSIS k-hat is undefined for {share}: their largest log-weights repeat (a discrete "
                    "guide drawing the same codes again), which leaves no tail to fit, so PSIS cannot "
                    "judge the estimate there.")
        rest = trust_sentence(khat[defined], num_samples) if defined.any() else None
        return repeated if rest is None else f"{rest} {repeated}"
    bad = float(np.mean(khat > KHAT_BAD))
    if bad > 0.01:
        severe = float(np.mean(khat > KHAT_SEVERE))
        return (f"Not converged in K = {num_samples}: PSIS k-hat exceeds {KHAT_BAD} for {100 * bad:.1f}% "
                f"of the data points ({100 * severe:.1f}% above {KHAT_SEVERE}), so log p^(x) is a lower "
                "bound still rising with K, short of log p(x) by an amount k-hat does not tell (against "
                "AIS, trained MNIST VAEs at K = 5000 were 0.3-0.5 nats per image short, several nats "
                f"where k-hat > {KHAT_SEVERE}). To measure it, {_ais_advice()} on a few hundred images.")
    if float(np.median(khat)) > KHAT_GOOD:
        return (f"Converging slowly: the median PSIS k-hat is above {KHAT_GOOD}; the estimate is "
                "usable but a larger K would still raise it.")
    return None


def standard_error(values: np.ndarray) -> float:
    """The standard error of the mean of ``values`` (NaN for fewer than two)."""
    n = len(values)
    return float(np.std(values, ddof=1) / math.sqrt(n)) if n > 1 else float("nan")


def summarize(points: PointEstimates, num_samples: int) -> dict:
    """The numbers of ``eval.json`` (besides where and how long)."""
    n = len(points.log_px)
    ll, elbo = points.log_px.astype(np.float64), points.elbo.astype(np.float64)
    summary = {
        "log_likelihood": float(ll.mean()),
        "stderr": standard_error(ll),
        "nll": float(-ll.mean()),
        "elbo": float(elbo.mean()),
        "elbo_stderr": standard_error(elbo),
        "gap": float((ll - elbo).mean()),
        "num_samples": num_samples,
        "num_points": n,
    }
    if points.posterior_mean and n > 1:
        classes = getattr(points, "classes", {})
        per_site = {name: active_units(mean, classes=classes.get(name, 1))
                    for name, mean in points.posterior_mean.items()}
        sizes = {name: latent_units(mean, classes.get(name, 1)) for name, mean in points.posterior_mean.items()}
        summary["active_units"] = sum(per_site.values())
        summary["latent_dim"] = sum(sizes.values())
        summary["active_units_per_site"] = per_site
        summary["latent_dim_per_site"] = sizes
    khat = points.khat[~np.isnan(points.khat)]
    if len(khat):
        summary["psis"] = {
            "khat_median": float(np.median(khat)),
            "khat_q90": float(np.quantile(khat, 0.9)),
            "khat_max": float(khat.max()),
            "share_khat_above_0.5": float(np.mean(khat > KHAT_GOOD)),
            "share_khat_above_0.7": float(np.mean(khat > KHAT_BAD)),
            "share_khat_above_1.5": float(np.mean(khat > KHAT_SEVERE)),
            "ess_median": float(np.median(points.ess)),
            "ess_min": float(points.ess.min()),
        }
        if len(khat) < n:
            summary["psis"]["share_khat_undefined"] = 1 - len(khat) / n
    summary["trust"] = trust_sentence(points.khat, num_samples)
    return summary


def describe_active_units(summary: dict) -> str:
    """"12 of 50", or per site as Burda et al. write it: "16+5 of 100+50 (z1+z2)"."""
    per_site = summary.get("active_units_per_site") or {}
    if len(per_site) < 2:
        return f"{summary['active_units']} of {summary['latent_dim']}"
    sizes = summary["latent_dim_per_site"]
    return (f"{'+'.join(str(v) for v in per_site.values())} of "
            f"{'+'.join(str(sizes[k]) for k in per_site)} ({'+'.join(per_site)})")


def describe(summary: dict) -> str:
    """The human-readable report that scripts print."""
    lines = [f"log p(x) = {summary['log_likelihood']:.3f} +- {summary['stderr']:.3f} nats "
             f"(NLL {summary['nll']:.3f}) on {summary['num_points']} {summary.get('split', '')} "
             f"images, K = {summary['num_samples']}",
             f"ELBO     = {summary['elbo']:.3f} +- {summary['elbo_stderr']:.3f}; gap (mean KL(q || "
             f"p(z|x))) = {summary['gap']:.3f}"]
    if "bits_per_dim" in summary:
        lines.append(f"bits/dim = {summary['bits_per_dim']:.4f} +- {summary['bits_per_dim_stderr']:.4f} "
                     f"(ELBO {summary['elbo_bits_per_dim']:.4f}): -log p(x) / (D ln 2) of the 8-bit data")
    if "conditional" in summary:
        lines.append(f"conditional: log p(x) is log p(target | given) of the {summary['conditional']} "
                     "pixels the model predicts from the others")
    if "active_units" in summary:
        lines.append(f"active units: {describe_active_units(summary)}")
    if "accuracy" in summary:
        lines.append(f"classification accuracy of q(y | x): {summary['accuracy']:.4f} "
                     f"({summary['classified']} of {summary['num_points']})")
    if summary.get("summed_exactly"):
        sites = ", ".join(summary["summed_exactly"])
        lines.append(f"summed exactly over every value of {sites}: log p(x) is exact, not an estimate "
                     "(K = 1 would do)" if summary.get("exact") else
                     f"summed exactly over every value of {sites} inside each weight; the other sites sampled")
    if "psis" in summary:
        p = summary["psis"]
        lines.append(f"PSIS k-hat: median {p['khat_median']:.3f}, 90% {p['khat_q90']:.3f}, max "
                     f"{p['khat_max']:.3f}; {100 * p['share_khat_above_0.7']:.1f}% above 0.7; "
                     f"ESS median {p['ess_median']:.1f} of {summary['num_samples']}")
    lines.append(summary["trust"] or "The estimate can be trusted: PSIS k-hat is below 0.5 for "
                                      "most points and below 0.7 for at least 99% of them.")
    lines.append(f"{summary['seconds']:.1f} s on {summary['device']}")
    return "\n".join(lines)


def _ais_advice() -> str:
    """How the reader measures the shortfall with AIS: the command inside a command, else the
    function."""
    if uses_flags():
        return f"run evaluate.py {option('method', 'ais')}"
    return "run AIS (pyro_vae.evaluation.estimate_ais)"
