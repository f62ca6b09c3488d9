"""After the last epoch: log p(x) on the test split (``eval_samples``) and the run's figures
(``plots``). A failure to write them does not undo the training: the message says so."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Optional

from pyro_vae.config import import_paths
from pyro_vae.core.distributed import on_main
from pyro_vae.core.errors import WriteError
from pyro_vae.evaluation import describe, evaluate_model, save_results
from pyro_vae.runs.checkpoint import checkpoint_sha256, load_checkpoint
from pyro_vae.runs.opening import load_weights
from pyro_vae.training.callbacks import Callback
from pyro_vae.viz import plot_run

if TYPE_CHECKING:
    from pyro_vae.training.trainer import Trainer


def finished(error: WriteError, trainer: "Trainer") -> WriteError:
    return WriteError(f"{error}. Training itself finished: {trainer.kept()}", error.errno)


class FinalEvaluation(Callback):
    """log p(x) on the test split with ``num_samples`` importance samples, written to eval.json:
    of the best epoch's weights where the run keeps them (best.pt), read back from the file as
    ``evaluate.py`` would read it. In memory: of the model as it ends (the best epoch's weights
    under early stopping), reported and kept in :attr:`summary`, not written."""

    every_rank = True  # the ranks share the work (evaluate_model)

    def __init__(self, num_samples: int):
        self.num_samples = num_samples
        self.summary: Optional[dict] = None

    def on_fit_end(self, trainer: "Trainer") -> None:
        try:
            self.summary = self._evaluate(trainer)
        except WriteError as e:
            raise finished(e, trainer) from None

    def _evaluate(self, trainer: "Trainer") -> dict:
        run, state = trainer.run, trainer.state
        model, epoch, which, checksum = trainer.model, state.epoch, "last", None
        if run is not None:
            which = "best" if state.best is not None else "last"
            path = run.best_path if which == "best" else run.checkpoint_path

            def read() -> tuple[dict, str]:  # the file evaluated, as evaluate.py would open it
                saved = load_checkpoint(path)
                return saved["model"], checkpoint_sha256(saved)
            weights, checksum = on_main(read)
            if which == "best":
                model, epoch = copy.deepcopy(trainer.model), state.best["epoch"]
                load_weights(model, weights, run.path)
        elif state.model_epoch is not None:  # the best epoch's weights, put back
            which, epoch = "best", state.model_epoch
        what = f"{which} checkpoint" if run is not None else f"{which} epoch, in memory"
        trainer.log(f"estimating log p(x) on {len(trainer.data.test)} test images with K = {self.num_samples} "
                    f"({what}, epoch {epoch})")
        summary, points = evaluate_model(model, trainer.data.test, self.num_samples, seed=trainer.cfg.run.seed,
                                         log=trainer.log, progress=trainer.progress,
                                         labels=trainer.data.test_labels)
        summary.update(split="test", epoch=epoch, checkpoint=which)
        if checksum is not None:
            summary["checkpoint_sha256"] = checksum

        def report() -> None:
            trainer.log(describe(summary))
            if run is not None:
                save_results(run.path, summary, points)
        on_main(report)
        return summary


class Figures(Callback):
    """The run's figures into ``RUN_DIR/figures/`` (:func:`pyro_vae.viz.plot_run`)."""

    def on_fit_end(self, trainer: "Trainer") -> None:
        try:
            figures = plot_run(trainer.run.path, trainer.cfg.data.data_dir,
                               trusted_imports=import_paths(trainer.cfg.to_flat()).values(),
                               log=trainer.log)
        except WriteError as e:
            raise finished(e, trainer) from None
        trainer.log(f"figures: {', '.join(str(p) for p in figures)}")
