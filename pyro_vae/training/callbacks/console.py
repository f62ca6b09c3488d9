"""What a run says while it trains: a description of the run, one line per epoch, a progress bar.

Lines go through the trainer's ``log`` callable (the console by default; in a torchrun job rank 0
alone prints). The bar is ``tqdm.auto``'s: a terminal's bar, or a notebook's widget.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, Optional

import torch
from pyro.infer import TraceMeanField_ELBO
from tqdm.auto import tqdm

from pyro_vae.core.options import option
from pyro_vae.models.discrete_settings import prior_label
from pyro_vae.models.priors import kl_description
from pyro_vae.models.sites import trace_once
from pyro_vae.training.callbacks import Callback

if TYPE_CHECKING:
    from pyro_vae.training.trainer import Trainer


def show_progress() -> bool:
    """Whether a progress bar helps by default: on a terminal, or in a notebook (whose
    ``tqdm.auto`` bar is a widget, while its stderr is no terminal)."""
    if sys.stderr.isatty():
        return True
    shell = getattr(sys.modules.get("IPython"), "get_ipython", lambda: None)()
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def discrete_description(cfg, x_dim: int) -> str:
    """"sbn linear 784-(z1 200) Bernoulli", "categorical 784-512-256-(z 20x10) relu"."""
    if cfg.model.name == "categorical":
        sizes = [str(x_dim), *map(str, cfg.model.hidden), f"(z {cfg.model.latent_dim[0]}x{cfg.model.categories})"]
        return f"categorical {'-'.join(sizes)} {cfg.model.activation}"
    widths = list(map(str, cfg.model.hidden)) if cfg.model.sbn_mapping == "nonlinear" else []
    parts = [str(x_dim)]
    for layer, size in enumerate(cfg.model.latent_dim, start=1):
        parts += [*widths, f"(z{layer} {size})"]
    return f"sbn {cfg.model.sbn_mapping} {'-'.join(parts)} Bernoulli" + (" tanh" if widths else "")


def network_description(trainer: "Trainer") -> str:
    """"mlp 784-400-400-50 relu" (vae), "hvae mlp 784-200-200-(z1 100)-100-100-(z2 50) tanh",
    or a user model's name and latent sites."""
    cfg, x_dim = trainer.cfg, trainer.data.train.shape[1]
    if cfg.model.name == "vae" and not trainer.given["model"]:
        sizes = "-".join(str(s) for s in [x_dim, *cfg.model.hidden, cfg.model.latent_dim[0]])
        if cfg.model.arch == "conv":
            sizes = f"conv(32, 64 channels)-{sizes.split('-', 1)[1]}"
        return f"{cfg.model.arch} {sizes} {cfg.model.activation}"
    if cfg.model.name == "hvae" and not trainer.given["model"]:
        parts = [str(x_dim), *map(str, cfg.model.hidden), f"(z1 {cfg.model.latent_dim[0]})"]
        for layer, size in enumerate(cfg.model.latent_dim[1:], start=2):
            parts += [*map(str, cfg.model.upper_hidden), f"(z{layer} {size})"]
        return f"hvae {cfg.model.arch} {'-'.join(parts)} {cfg.model.activation}"
    if cfg.model.name in ("sbn", "categorical") and not trainer.given["model"]:
        return discrete_description(cfg, x_dim)
    order = trainer.structure.guide_order
    latents = ", ".join(f"{s.name} {'x'.join(map(str, s.event_shape)) or 1}"
                        for s in sorted(trainer.structure.latents, key=lambda s: order.index(s.name)))
    name = type(trainer.model).__name__ if trainer.given["model"] else cfg.model.name
    return f"{name} (latent sites {latents})"


def describe(trainer: "Trainer") -> str:
    """The run in four lines: data and device, model, objective and optimizer, where it is saved."""
    t, cfg, data = trainer, trainer.cfg, trainer.data
    n_params = sum(p.numel() for p in t.model.parameters())
    likelihood = "" if cfg.model.likelihood == "bernoulli" else f", likelihood {cfg.model.likelihood}" + (
        f" ({cfg.model.mixtures} components)" if cfg.model.likelihood == "logistic-mixture" else "")
    values = ("dynamic binarization" if data.dynamic_binarization else
              "dequantized 8-bit levels" if data.dequantized else
              {"binary": "static binarization", "levels": "8-bit levels"}.get(data.kind, "values in [0, 1]"))
    elbo = type(t.step.elbo).__name__
    objective = f"{elbo} (an instance)" if t.given["elbo"] else f"{cfg.objective.elbo} ({elbo})"
    prior = prior_label(cfg)
    if t.given["prior"] or t.given["model"]:
        prior = type(getattr(t.model, "prior", None)).__name__ if hasattr(t.model, "prior") else "its own"
    action = "resuming at epoch %d" % (t.state.epoch + 1) if t.state.epoch else "training"
    valid = f" / {len(data.valid)} validation" if data.valid is not None else ""
    schedule = "" if cfg.optim.lr_schedule == "constant" else (
        f", {cfg.optim.lr_schedule} schedule" + (f" x{cfg.optim.lr_schedule_scale:g}" if cfg.optim.lr_schedule_scale != 1 else ""))
    extras = [f"KL warm-up over {cfg.objective.kl_warmup:g} epochs"] if cfg.objective.kl_warmup else []
    if cfg.objective.relax != "none":
        extras.append(relaxation_description(cfg.objective))
    if cfg.optim.early_stopping:
        extras.append(f"early stopping after {cfg.optim.early_stopping} epochs without improvement")
    where = str(t.device)
    if t.ranks.distributed:
        base, extra = divmod(cfg.optim.batch_size, t.ranks.world_size)
        where += (f", data-parallel over {t.ranks.describe()}: each rank takes "
                  f"{f'{base} or {base + 1}' if extra else base} of every batch of {cfg.optim.batch_size}")
    dataset = data.name if t.given["data"] else cfg.data.dataset
    train = f"{len(data.train)} train" if data.labelled is None else \
        f"{len(data.train)} unlabelled + {len(data.labelled)} labelled train"
    return (f"pyro-vae: {action} on {dataset} ({train}{valid} / {len(data.test)} "
            f"test images, {values}) on {where}\n"
            f"  model: {network_description(t)}, prior {prior}{likelihood}, {n_params:,} parameters\n"
            f"  objective: {objective}, Adam lr {cfg.optim.lr:g}{schedule}, betas "
            f"{cfg.optim.adam_betas[0]:g}/{cfg.optim.adam_betas[1]:g}, batch {cfg.optim.batch_size}"
            f"{''.join(', ' + e for e in extras)}\n"
            f"  run directory: {t.run.path if t.run is not None else 'none (in memory)'}")


def relaxation_description(objective) -> str:
    """The relaxation of a run, for its description: temperature, schedule, straight-through."""
    schedule = (f" annealed by exp(-{objective.temperature_anneal:g} step) to at least "
                f"{objective.temperature_min:g}" if objective.temperature_anneal else "")
    through = ", straight-through" if objective.straight_through else ""
    return (f"{objective.relax} relaxation of the discrete sites at temperature "
            f"{objective.temperature:.3g}{schedule}{through} (evaluated discrete)")


def kl_kinds(trainer: "Trainer") -> list[str]:
    """Analytic or Monte Carlo KL for each latent site's guide/model pair (traced in isolation,
    so that a resumed run's random stream stays the uninterrupted one's)."""
    model = trainer.model
    with torch.no_grad():
        model_trace, guide_trace = trace_once(model.model, model.guide, trainer.data.test[:2])
    return [f"KL term of site {s.name!r}: "
            f"{kl_description(guide_trace.nodes[s.name]['fn'], model_trace.nodes[s.name]['fn'])}"
            for s in trainer.structure.latents]


def _selected_by(trainer: "Trainer") -> str:
    """What picks the best epoch: the validation accuracy of a semi-supervised run with validation
    labels, else the validation ELBO."""
    labelled = trainer.data.labelled is not None and trainer.data.valid_labels is not None
    return "accuracy" if labelled else "ELBO"


def _accuracy_legend(trainer: "Trainer") -> str:
    if trainer.data.labelled is None:
        return ""
    aux = trainer.cfg.objective.aux_loss
    return (f"; the training objective adds {len(trainer.data.labelled)} labelled images' ELBO"
            + (f" and {aux:g} x log q(y | x)" if aux else "") +
            "; test/valid acc = accuracy of q(y | x)'s most probable class")


def _best_pt(trainer: "Trainer") -> str:
    return " (best.pt)" if trainer.run is not None else ""


class ConsoleReport(Callback):
    """The run's description, a line per epoch, the progress bar within an epoch (if
    ``progress``), and how the run ended."""

    def __init__(self, progress: bool):
        self.progress = progress
        self._bar: Optional[tqdm] = None
        self._shown = 0  # the step whose loss the bar shows

    def on_fit_start(self, trainer: "Trainer") -> None:
        trainer.log(describe(trainer))
        if trainer.rng_note:
            trainer.log(f"  note: {trainer.rng_note}")
        if isinstance(trainer.step.elbo, TraceMeanField_ELBO):
            label = type(trainer.step.elbo).__name__ if trainer.given["elbo"] else option("elbo", "meanfield")
            for line in kl_kinds(trainer):
                trainer.log(f"  {label}: {line}")

    def on_train_start(self, trainer: "Trainer") -> None:
        for note in trainer.loop.notes:
            trainer.log(f"  {note}")
        trainer.log("train loss = -ELBO of the training objective" +
                    (" (with the warm-up's beta)" if trainer.cfg.objective.kl_warmup else "") +
                    (" (relaxed: Concrete sites)" if trainer.cfg.objective.relax != "none" else "") +
                    "; test/valid" + ("/train" if trainer.cfg.run.train_elbo else "") +
                    " ELBO = one-sample ELBO on the test/validation" +
                    ("/training" if trainer.cfg.run.train_elbo else "") + " split (higher is "
                    "better); all in nats per image" + _accuracy_legend(trainer) +
                    (f"; * marks a new best validation {_selected_by(trainer)}" + _best_pt(trainer)
                     if trainer.data.valid is not None else ""))

    def on_epoch_start(self, trainer: "Trainer", epoch: int) -> None:
        if self.progress:
            self._bar = tqdm(total=trainer.loop.batches_per_epoch(), desc=f"epoch {epoch}", unit="batch",
                             leave=False, file=sys.stderr)
            self._shown = 0

    def on_steps(self, trainer: "Trainer", done: int, total: int, loss: float) -> None:
        bar = self._bar
        if bar is None:
            return
        bar.update(done - bar.n)
        if done == 1 or done - self._shown >= 20:
            bar.set_postfix(loss=f"{loss:.2f}")
            self._shown = done
        if done == total:
            self._close()

    def on_epoch_end(self, trainer: "Trainer", record: dict[str, Any]) -> None:
        self._close()
        epoch, improved = record["epoch"], trainer.state.is_best(record["epoch"])
        by_accuracy = "valid_accuracy" in record  # the best epoch is chosen by it
        valid = (f"  valid ELBO {record['valid_elbo']:9.3f}{'*' if improved and not by_accuracy else ' '}"
                 if "valid_elbo" in record else "")
        valid += f"  train ELBO {record['train_elbo']:9.3f}" if "train_elbo" in record else ""
        valid += f"  test acc {record['test_accuracy']:.4f}" if "test_accuracy" in record else ""
        valid += f"  valid acc {record['valid_accuracy']:.4f}{'*' if improved else ' '}" if by_accuracy else ""
        bits = f" ({record['test_bits_per_dim']:.4f} bits/dim)" if "test_bits_per_dim" in record else ""
        trainer.log(f"epoch {epoch:>3}/{trainer.cfg.optim.epochs}  train loss {record['train_loss']:9.3f}  "
                    f"test ELBO {record['test_elbo']:9.3f}{bits}{valid}  ({record['epoch_seconds']:.1f} s)")

    def on_fit_end(self, trainer: "Trainer") -> None:
        state = trainer.state
        if state.stop_reason:
            trainer.log(f"stopped: {state.stop_reason}")
        where = f"; run directory {trainer.run.path}" if trainer.run is not None else " (in memory)"
        trainer.log(f"done: test ELBO {state.history[-1]['test_elbo']:.3f} nats/image after "
                    f"{state.epoch} epochs{where}" +
                    (f"; best {state.best_text()} at epoch "
                     f"{state.best['epoch']}{_best_pt(trainer)}" if state.best else ""))

    def on_fit_exit(self, trainer: "Trainer") -> None:
        self._close()

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
