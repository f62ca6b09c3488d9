"""The optim section: the optimizer (Adam), its learning-rate schedule, and how long and in what
batches it trains. Schedules are ``pyro_vae.training.schedule``'s registry."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Optional

from pyro_vae.config.sections.base import Section, setting
from pyro_vae.config.values import shown
from pyro_vae.core.errors import ConfigError


@dataclass
class OptimSection(Section):
    """Adam, its learning-rate schedule, and how long and in what batches it trains."""

    section: ClassVar[str] = "optim"

    epochs: int = setting(10, minimum=1, help="total number of epochs (a resumed run stops at this epoch)",
                          doc="the epoch to train up to; on resume, raise it to train longer")
    batch_size: int = setting(
        128, minimum=1, help="minibatch size",
        doc="minibatch size, at most the number of training images; each epoch takes "
            "floor(N / batch) batches of a fresh shuffle")
    lr: float = setting(1e-3, positive=True, help="Adam learning rate",
                        doc="Adam learning rate (may be changed on resume, e.g. after divergence)")
    adam_eps: float = setting(1e-8, positive=True, help="Adam epsilon",
                              doc="Adam's epsilon (the IWAE paper used 1e-4)")
    adam_betas: list[float] = setting(
        factory=lambda: [0.9, 0.999], help="Adam's beta1 beta2, e.g. --adam-betas 0.9 0.999",
        doc="Adam's beta1 and beta2 (`--adam-betas 0.99 0.999`: the IWAE paper's code used "
            "beta1 = 0.99, its text 0.9)")
    baseline_lr_scale: float = setting(
        1.0, positive=True,
        help="with --baseline nn: the baseline network's learning rate as a multiple of --lr "
             "(the REBAR code's NVIL: 10)",
        doc="with `baseline: nn`: the learning rate of NVIL's baseline networks, as a multiple of "
            "`lr` (Tucker et al.'s REBAR code trains them at 10 x lr, so that the baseline keeps up "
            "with the cost it centres); 1 keeps one parameter group")
    lr_schedule: str = setting(
        "constant", choices="lr_schedule", help="{names} (iwae: Burda et al.'s staged decay)",
        doc="`constant`, or `iwae`: Burda et al.'s 3^i epochs at lr * 10^(-i/7), i = 0..7")
    lr_schedule_scale: float = setting(
        1.0, positive=True,
        help="iwae schedule: stage i lasts 3^i x this many epochs (0.1: 328 epochs in all)",
        doc="`iwae`: stage i lasts 3^i x this many epochs (`0.1`: the whole schedule in 328 "
            "epochs); an epoch takes the stage that holds its midpoint")
    labelled_batch_size: Optional[int] = setting(
        None, minimum=1, shown="the labelled share of `batch_size`, at least 1",
        help="with --labels: labelled images in every step, beside --batch-size unlabelled ones "
             "(default: their share of the training data, at least 1)",
        doc="with `labels`: how many labelled images every step adds to its `batch_size` unlabelled "
            "ones, drawn in turn from a fresh shuffle of the labelled set (default: "
            "ceil(batch_size x labels / unlabelled images), so an epoch sees each labelled image "
            "about once, as Pyro's tutorial does)")
    early_stopping: Optional[int] = setting(
        None, minimum=1, shown="none",
        help="stop after P epochs without a better validation ELBO (needs a validation split); "
             "the best epoch is kept as best.pt",
        doc="P: stop after P epochs without a better validation ELBO (needs a validation split: "
            "`valid_size`, or `binarized-mnist`); the best epoch is in `best.pt`")

    max_minutes: Optional[float] = setting(
        None, positive=True, shown="none",
        help="stop after the epoch at which training has taken M minutes (evaluation not counted); "
             "--epochs still bounds the run",
        doc="M: stop at the end of the first epoch at which the training steps have taken M "
            "minutes in all (`train_seconds` summed over epochs, across resumes; end-of-epoch "
            "evaluation not counted), so runs of different objectives get the same training time; "
            "`epochs` still bounds the run. May change on resume")

    def rules(self) -> None:
        if len(self.adam_betas) != 2 or not all(0 <= b < 1 for b in self.adam_betas):
            raise ConfigError(f"adam_betas must be two numbers in [0, 1), e.g. 0.9 0.999; got "
                              f"{shown(self.adam_betas)}")
