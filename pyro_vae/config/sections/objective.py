"""The objective section: what training maximizes. Which objectives exist, and which guides and
options each can serve, is ``pyro_vae.infer.objectives``' business (its registry's
capabilities, checked against the model section by :func:`pyro_vae.config.validate`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Optional

from pyro_vae.config.sections.base import Section, setting
from pyro_vae.core.errors import ConfigError


def default_objective(estimator: str) -> str:
    """What ``elbo`` means when not given: Rao-Blackwellized TraceGraph_ELBO for a score-function
    guide (the only one of Pyro's objectives that applies baselines), the estimator's own
    objective for ``arm`` and ``disarm``, Trace_ELBO otherwise."""
    if estimator in ("arm", "disarm"):
        return estimator
    return "tracegraph" if estimator == "score" else "trace"


@dataclass
class ObjectiveSection(Section):
    """What training maximizes, and its options. Which objective serves which guide and options is
    checked against the model section (``pyro_vae.infer.objectives``)."""

    section: ClassVar[str] = "objective"

    elbo: Optional[str] = setting(
        None, names="elbo", shown="`trace`; `tracegraph` with `--estimator score`; `disarm` with "
        "`--estimator disarm` (`arm` likewise)",
        help="{names} (default: trace, or tracegraph with --estimator score, disarm with "
             "--estimator disarm, arm with --estimator arm)",
        doc="training objective: `trace`, `tracegraph`, `meanfield`, `iwae`, `renyi`, `dreg`, `stl`, "
            "`vimco`, `arm`, `disarm` or `traceenum` (see "
            "[Objectives](objectives.md#objectives-and-gradient-estimators))")
    num_particles: int = setting(
        1, minimum=1, help="K: samples of z per data point and step",
        doc="K, samples of z per data point and step: averaged by `trace`/`tracegraph`/`meanfield`"
            "/`stl`/`traceenum` (its continuous sites), combined into the bound by "
            "`iwae`/`renyi`/`dreg`/`vimco` (which need K >= 2); `arm`/`disarm`: K independent "
            "antithetic groups, averaged")
    alpha: Optional[float] = setting(
        None, shown="none", help="Renyi alpha (--elbo renyi)",
        doc="the Renyi alpha of `--elbo renyi`, in [0, 1] (required there, refused elsewhere; "
            "alpha < 0 would give an upper bound)")
    kl_warmup: float = setting(
        0.0, help="epochs E of KL warm-up: latent terms weighted by min(1, epochs done / E) "
                  "(trace, tracegraph, meanfield, traceenum; 0: none)",
        doc="E > 0: KL warm-up (Sonderby et al. 2016). The latent sites' log-densities, in model "
            "and guide, are weighted by beta = min(1, epochs done / E), rising every step. Only "
            "for `trace`, `tracegraph`, `meanfield` and `traceenum` (sums of site terms); the K-sample bounds "
            "and `stl` refuse it. `train_loss` is the warmed-up objective's; `test_elbo` and "
            "`valid_elbo` are the true ELBO; `metrics.jsonl` records `beta`")

    def rules(self) -> None:
        if self.kl_warmup < 0:
            raise ConfigError(f"kl_warmup must be 0 (none) or a positive number of epochs, got "
                              f"{self.kl_warmup}")
