"""The objective section: what training maximizes. Which objectives exist, and which guides and
options each can serve, is ``pyro_vae.infer.objectives``' business (its registry's
capabilities, checked against the model section by :func:`pyro_vae.config.validate`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Optional

from pyro_vae.config.sections.base import Section, setting
from pyro_vae.core.errors import ConfigError

RELAXATIONS = ("none", "concrete", "concrete-mass")


def default_objective(estimator: str, relax: str = "none") -> str:
    """What ``elbo`` means when not given: Rao-Blackwellized TraceGraph_ELBO for a score-function
    guide (the only one of Pyro's objectives that applies baselines), the estimator's own
    objective for ``arm``, ``disarm``, ``rebar`` and ``relax``, Trace_ELBO otherwise and under a relaxation (whose sites
    are reparameterized)."""
    if estimator in ("arm", "disarm", "rebar", "relax"):
        return estimator
    return "tracegraph" if estimator == "score" and relax == "none" else "trace"


@dataclass
class ObjectiveSection(Section):
    """What training maximizes, and its options. Which objective serves which guide and options is
    checked against the model section (``pyro_vae.infer.objectives``)."""

    section: ClassVar[str] = "objective"

    elbo: Optional[str] = setting(
        None, names="elbo", shown="`trace`; `tracegraph` with `--estimator score`; `disarm` with "
        "`--estimator disarm` (`arm`, `rebar`, `relax` likewise)",
        help="{names} (default: trace, or tracegraph with --estimator score, disarm with "
             "--estimator disarm, arm, rebar and relax likewise)",
        doc="training objective: `trace`, `tracegraph`, `meanfield`, `iwae`, `renyi`, `dreg`, `stl`, "
            "`vimco`, `arm`, `disarm`, `rebar`, `relax` or `traceenum` (see "
            "[Objectives](objectives.md#objectives-and-gradient-estimators))")
    num_particles: int = setting(
        1, minimum=1, help="K: samples of z per data point and step",
        doc="K, samples of z per data point and step: averaged by `trace`/`tracegraph`/`meanfield`"
            "/`stl`/`traceenum` (its continuous sites), combined into the bound by "
            "`iwae`/`renyi`/`dreg`/`vimco` (which need K >= 2); `arm`/`disarm`: K independent "
            "antithetic groups, averaged; `rebar`/`relax`: 1 only")
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
    relax: str = setting(
        "none", choices=RELAXATIONS,
        help="none | concrete | concrete-mass: train every discrete latent site as its Concrete "
             "(Gumbel-softmax) relaxation (evaluation stays discrete); concrete-mass scores the "
             "latents by the discrete log-mass at the relaxed value (the REBAR code's objective)",
        doc="`concrete`: during training, every Bernoulli and one-hot categorical latent site of "
            "model and guide is replaced by its Concrete (Gumbel-softmax) relaxation at the "
            "temperature below, reparameterized, under `trace` (the default then: Maddison et "
            "al. 2017's relaxed ELBO), `meanfield` (Jang et al. 2017's: the discrete KL in "
            "closed form, relaxed samples in the likelihood only), `tracegraph`, `iwae`, "
            "`renyi`, `dreg` or `stl`. `concrete-mass`: the same relaxed samples, each latent "
            "scored by its *discrete* distribution's log-mass, linear in the relaxed value z (z log "
            "sigmoid(a) + (1 - z) log sigmoid(-a); sum_k z_k log softmax(a)_k), the Concrete "
            "objective of Tucker et al. 2017's REBAR code, under `trace`, `tracegraph`, `iwae` or "
            "`renyi`. "
            "`train_loss` is the relaxed objective's; `test_elbo`, `valid_elbo`, log p(x) and "
            "the figures use the discrete model; `metrics.jsonl` records `temperature` (see "
            "[Continuous relaxations](objectives.md#continuous-relaxations))")
    temperature: float = setting(
        2 / 3, positive=True,
        help="T of --relax concrete (default 2/3, Maddison et al.'s for binary sites)",
        doc="the relaxation's temperature T (or its start, when annealed): lower is closer to "
            "the discrete model, with noisier gradients. 2/3 is Maddison et al.'s choice for "
            "binary latents; Jang et al. anneal categorical ones from 1 to 0.5")
    temperature_anneal: float = setting(
        0.0, help="R: anneal T as max(temperature_min, T exp(-R step)) (0: fixed T)",
        doc="R >= 0: the temperature of step s is max(`temperature_min`, T exp(-R s)) (Jang et "
            "al. 2017, who used R = 1e-5 or 1e-4); 0 keeps T fixed. Resuming continues the "
            "schedule from the saved step")
    temperature_min: float = setting(
        0.5, positive=True, help="floor of the annealed temperature (with --temperature-anneal)",
        doc="the floor of the annealed temperature (Jang et al.'s 0.5); read only with "
            "`temperature_anneal` > 0")
    straight_through: bool = setting(
        False, help="relaxed sites hand the model their discrete value, with the relaxed one's "
                    "gradient (straight-through)",
        doc="straight-through (Jang et al. 2017; Bengio et al. 2013): the program sees the "
            "discrete value the relaxed sample rounds to (0/1, or one-hot at its largest "
            "entry), the gradient is the relaxed sample's; the log-densities stay the relaxed "
            "ones (as Pyro's `Relaxed*StraightThrough` distributions)")
    relax_shift: bool = setting(
        False, help="draw the relaxed sample as sigmoid((a + logit u) / T + T / (T + 1) a) (the REBAR "
                    "code's muprop_relaxation)",
        doc="Tucker et al. 2017's shifted relaxation (their code's `muprop_relaxation`, on there by "
            "default): the relaxed logit is (a + noise) / T + T / (T + 1) a, the Concrete of the "
            "logits scaled by 1 + T^2 / (T + 1), sharper towards the likelier value; the "
            "discrete KL (`meanfield`) and log-mass (`concrete-mass`) keep the unscaled logits")

    aux_loss: float = setting(
        0.0, help="with --labels: weight A of the classification term A * log q(y | x) per labelled "
                  "image (Pyro's aux_loss_multiplier; Kingma et al.'s alpha)",
        doc="with `labels`: the weight A of the auxiliary classification term, A x log q(y | x) per "
            "labelled image added to the step's ELBO (Pyro's `aux_loss_multiplier`, 46 in its "
            "tutorial; Kingma et al. 2014 use alpha = 0.1 N for their whole-dataset objective)")

    def rules(self) -> None:
        if self.aux_loss < 0:
            raise ConfigError(f"aux_loss must be 0 (none) or positive, got {self.aux_loss:g}")
        if self.kl_warmup < 0:
            raise ConfigError(f"kl_warmup must be 0 (none) or a positive number of epochs, got "
                              f"{self.kl_warmup}")
        if self.temperature_anneal < 0:
            raise ConfigError(f"temperature_anneal must be 0 (a fixed temperature) or a positive rate "
                              f"per step, got {self.temperature_anneal}")
        if self.temperature_anneal and self.temperature_min > self.temperature:
            raise ConfigError(f"temperature_min {self.temperature_min:g} is above temperature "
                              f"{self.temperature:g}, where annealing starts: lower the floor")
