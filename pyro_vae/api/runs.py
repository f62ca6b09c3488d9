"""A run as Python holds it (:class:`Run`), and opening a run directory (:func:`open_run`).

Opening is safe by default: it reads the checkpoint as data (``weights_only``, every field
checked), imports no code that the caller did not name (``trusted_imports``), checks every tensor's
shape against the model before loading it, and writes nothing (no lock, no repaired file). A run
whose model (or prior) was an object made in Python opens only with that object passed again
(``model=MyVAE(...)``): its config records the class, not how to make it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional

from torch import nn

from pyro_vae.api.arguments import model_object, prior_object
from pyro_vae.api.data import data_argument, on_device
from pyro_vae.config import Config
from pyro_vae.core.console import log_line
from pyro_vae.core.distributed import resolve_device
from pyro_vae.core.errors import ConfigError, RunDirError
from pyro_vae.data import IMAGE_SHAPE, VAEData
from pyro_vae.models import build_model
from pyro_vae.models.model_data import load_model_data, present_for
from pyro_vae.runs.checkpoint import checkpoint_sha256
from pyro_vae.runs.opening import check_objects_given, checkpoint_path, load_run, load_weights, recorded_objects
from pyro_vae.runs.results import read_summary
from pyro_vae.runs.rundir import RunDir


@dataclass(repr=False, eq=False)
class Run:
    """A trained model with what it was trained from and how training went.

    ``model``: the trained ``nn.Module`` (its ``model``/``guide`` are Pyro programs); ``config``:
    the run's :class:`~pyro_vae.config.Config`; ``history``: one dict per epoch (train_loss,
    test_elbo, valid_elbo where there is a validation split, seconds, ...); ``run_dir``: the run
    directory, or None for a run trained in memory; ``evaluation``: the summary of the final log
    p(x) estimate (``eval_samples``), where one was made for these weights; ``best``: the epoch
    with the best validation ELBO; ``checkpoint``: "best" or "last", the weights of an opened run.
    ``data`` is loaded on first use where it was not given.
    """

    model: nn.Module
    config: Config
    history: list[dict[str, Any]]
    run_dir: Optional[Path] = None
    evaluation: Optional[dict[str, Any]] = None
    best: Optional[dict[str, Any]] = None
    checkpoint: Optional[str] = None
    image_shape: tuple[int, ...] = IMAGE_SHAPE
    given_data: Optional[VAEData] = None

    @property
    def data(self) -> VAEData:
        """The run's data: as given or trained on, else its dataset loaded by name."""
        if self.given_data is None:
            cfg = self.config
            check_objects_given(cfg.to_flat(), (), self.run_dir, needed=("dataset",))
            parameter = next(self.model.parameters(), None)
            device = "cpu" if parameter is None else parameter.device
            self.given_data = load_model_data(cfg, device)
        return self.given_data

    @property
    def epoch(self) -> int:
        """The last epoch trained."""
        return self.history[-1]["epoch"] if self.history else 0

    def __repr__(self) -> str:
        elbo = f", test ELBO {self.history[-1]['test_elbo']:.3f}" if self.history else ""
        where = str(self.run_dir) if self.run_dir is not None else "in memory"
        return f"Run({type(self.model).__name__}, epoch {self.epoch}{elbo}, {where})"


def open_run(path: str | os.PathLike, *, model: Optional[nn.Module] = None, prior: Optional[nn.Module] = None,
             data: Any = None, checkpoint: str = "best", device: str = "cpu", data_dir: Optional[str] = None,
             trusted_imports: Iterable[str] = ()) -> Run:
    """The run in ``path`` with the weights of ``checkpoint`` ("best": best.pt, the epoch with the
    best validation ELBO, where the run has one; "last": checkpoint.pt) loaded into its model, on
    ``device``.

    The model is rebuilt from the saved config, or is ``model`` (an instance to load the weights
    into; needed for a run trained from one), or is built with ``prior`` (a prior instance, for a
    run trained with one). ``data``: a VAEData or tensors, for a run trained on such data (else
    its dataset is loaded by name when ``run.data`` is first used). ``trusted_imports``: the
    import paths ("package.module:Class") the saved config may name and that may therefore be
    imported; nothing else is.
    """
    if isinstance(model, str) or isinstance(prior, str):
        which = "model" if isinstance(model, str) else "prior"
        raise ConfigError(f"open_run's {which}= is an object to load the run's weights into; leave it "
                          f"out to rebuild the run's own {which} from its config")
    model = None if model is None else model_object(model)
    if prior is not None and model is not None:
        raise ConfigError("prior= is for a model rebuilt from the run's config; model= holds its own "
                          "prior: drop prior=")
    prior = None if prior is None else prior_object(prior)
    if isinstance(trusted_imports, str):
        raise ConfigError(f"trusted_imports= is a list of import paths: trusted_imports=[{trusted_imports!r}]")
    if isinstance(data, str):
        raise ConfigError("open_run's data= is the data the run was trained on as a VAEData or tensors; "
                          "leave it out to load the run's own dataset by its name")
    data = None if data is None else data_argument(data, {})
    RunDir(path).require("path")
    overrides = {"device": device, **({"data_dir": data_dir} if data_dir is not None else {})}
    objects = {"model"} if model is not None else {"prior"} if prior is not None else set()
    state, cfg = load_run(path, overrides, trusted_imports, checkpoint, objects)
    torch_device = resolve_device(cfg.run.device)
    recorded = recorded_objects(cfg.to_flat())
    if data is not None:  # presented for the run's likelihood, as training presented it
        data = on_device(present_for(cfg, data), torch_device)
    image_shape = data.image_shape if data is not None else IMAGE_SHAPE
    if data is None and "dataset" not in recorded:
        image_shape = load_model_data(cfg, "cpu", limit_train=1, limit_test=1).image_shape
    against = "the model its config describes"
    if model is None:
        model = build_model(cfg, image_shape, prior=prior, dequantized=data.dequantized if data is not None else None)
    else:
        against = f"the model passed as model= ({type(model).__name__})"
        _note_other_class(path, recorded.get("model"), model)
    model = model.to(torch_device)
    load_weights(model, state["model"], path, against)
    model.eval()
    which = "best" if checkpoint_path(path, checkpoint).name == RunDir(path).best_path.name else "last"
    return Run(model, cfg, list(state["metrics"]), Path(path), _evaluation(Path(path), state),
               state.get("best"), which, tuple(image_shape), data)


def _note_other_class(path, recorded: Optional[tuple[str, str]], model: nn.Module) -> None:
    """A line where ``model`` is not of the class the run was trained from (a renamed class in a
    notebook is fine; another model would show in the tensors' shapes, or not at all)."""
    if recorded is not None and recorded != (type(model).__qualname__, type(model).__module__):
        log_line(f"note: {path} was trained from a {recorded[0]} (from module {recorded[1]}); model= is a "
                 f"{type(model).__qualname__} (from module {type(model).__module__}): its weights are "
                 "loaded because every tensor fits")


def _evaluation(run_dir: Path, state: dict[str, Any]) -> Optional[dict[str, Any]]:
    """The run's eval.json, where it is of these very weights (the same checkpoint SHA-256)."""
    path = run_dir / "eval.json"
    if not path.is_file() or path.is_symlink():
        return None
    try:
        summary = read_summary(path)
    except RunDirError:
        return None
    return summary if summary.get("checkpoint_sha256") == checkpoint_sha256(state) else None
