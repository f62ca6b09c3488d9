"""Pareto-smoothed importance sampling (PSIS): how far an importance-weighted estimate can be trusted.

PSIS (ArviZ's ``psislw``) fits a generalized Pareto distribution to each data point's largest
weights. Its shape k-hat says how heavy their tail is: below 0.5 the estimate converges fast, up
to 0.7 slowly, above 0.7 the weights' variance is effectively infinite and log p^(x) can be far
below log p(x) (Vehtari et al. 2024). The thresholds are here with the fit, since what a k-hat
means belongs with how it is computed; the sentences that say it to the user are
:mod:`.diagnostics`'. ArviZ has two lines with different ``psislw`` signatures (0.x and 1.x):
this module is the one place that knows.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

# PSIS k-hat (Vehtari et al.): up to 0.5 converged, up to 0.7 converging slowly, above 0.7 not
# converged in K. KHAT_SEVERE is ours, measured with AIS (docs/evaluation.md, "Can it be trusted?"): on trained
# MNIST VAEs, IWAE at K = 5000 fell 0.3-0.5 nats per image short of AIS whatever k-hat was up to
# 1.5, and several nats short above it.
KHAT_GOOD, KHAT_BAD, KHAT_SEVERE = 0.5, 0.7, 1.5
PSIS_MIN_SAMPLES = 21  # ArviZ fits the Pareto tail to ceil(min(K/5, 3 sqrt(K))) >= 5 weights


# ArviZ 0.x announces its 1.x refactor with a multi-line FutureWarning once a day, in the middle of
# an evaluation's output. It is about ArviZ's own API, which _arviz_psislw already handles in
# both lines: nothing a user of pyro-vae can act on. Only that message is filtered; every other
# warning from ArviZ (a bad k-hat fit, say) still shows.
warnings.filterwarnings("ignore", message=r"\s*ArviZ is undergoing a major refactor", category=FutureWarning)


def _arviz_psislw(log_w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ArviZ's PSIS of ``(B, K)`` log importance ratios: (smoothed log-weights normalized over K,
    k-hat per row), with either line of ArviZ. ArviZ 0.x has ``arviz.psislw(log_ratios)``; ArviZ
    1.x (what pip resolves on Python 3.12+) moved it to ``arviz_stats``, whose ``psislw`` takes a
    log-likelihood and negates it (the LOO convention), so the ratios go in negated. On the same
    log-weights (light, heavy and Gumbel-tailed rows, K = 5000) the two lines agree to 0.011 in
    k-hat and 0.016 in the smoothed log-weights; passed un-negated, 1.x gave k-hat -0.03 where
    the truth is 1."""
    try:
        from arviz_stats.base import array_stats
    except ImportError:  # ArviZ 0.x
        import arviz as az

        return az.psislw(log_w, reff=1.0)
    return array_stats.psislw(-log_w, r_eff=1.0, axis=-1)


def repeated_tail(log_w: np.ndarray) -> np.ndarray:
    """Rows whose Pareto tail (the largest ceil(min(K/5, 3 sqrt(K))) + 1 log-weights, what ArviZ
    fits) holds fewer distinct values than half its length: a discrete guide drawing the same
    codes again. A generalized Pareto fit to such a tail is degenerate (k-hat inf, or any
    number), so k-hat says nothing there. Equal: within 4 float32 spacings (the log-weights are
    float32; the same code's weight, computed at another position of a batch, may differ in
    its last bits)."""
    k = log_w.shape[-1]
    tail = np.sort(log_w, axis=-1)[:, -(math.ceil(min(0.2 * k, 3 * math.sqrt(k))) + 1):]
    spacing = np.spacing(np.abs(tail[:, 1:]).astype(np.float32)).astype(np.float64)
    steps = np.diff(tail, axis=-1) > 4 * spacing
    return 1 + steps.sum(-1) < tail.shape[-1] / 2


def psis(log_w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """k-hat and effective sample size of each row of ``(B, K)`` log-weights (ArviZ's PSIS).
    k-hat is NaN where the tail repeats (:func:`repeated_tail`); the ESS there is Kish's, of the
    raw weights."""
    log_w = log_w.astype(np.float64)
    # Equal weights (the guide is the exact posterior) leave no tail to fit: ArviZ 0.x returns
    # inf or fits float32 rounding noise, 1.x raises. The estimate is then exact and nothing is
    # heavy-tailed: k-hat 0 and ESS K. "Equal" is up to float32 precision of the log-weights.
    equal = np.ptp(log_w, axis=-1) <= 1e-5 * (1 + np.abs(log_w).max(-1))
    khat = np.zeros(len(log_w))
    ess = np.full(len(log_w), float(log_w.shape[-1]))
    repeated = repeated_tail(log_w) & ~equal
    if repeated.any():
        weights = np.exp(log_w[repeated] - log_w[repeated].max(-1, keepdims=True))
        khat[repeated] = np.nan
        ess[repeated] = weights.sum(-1) ** 2 / (weights ** 2).sum(-1)
    fit = ~equal & ~repeated
    if fit.any():
        smoothed, fitted = _arviz_psislw(log_w[fit])
        khat[fit] = np.asarray(fitted)
        ess[fit] = 1.0 / np.exp(2 * smoothed).sum(-1)
    return khat, ess

