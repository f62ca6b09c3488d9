"""Training from Python: :func:`train` starts a run, :func:`resume` continues one.

Both drive the same :class:`~pyro_vae.training.trainer.Trainer` as ``scripts/svi_train.py``:
with ``out=`` a run writes the run directory the script writes; without, it trains in memory
and writes nothing. The run's lines go to the ``pyro_vae`` logger; ``verbose=True`` (the default)
shows them on standard output for the call where logging shows nothing else
(:func:`~pyro_vae.core.console.lines_shown`), and a progress bar (``tqdm.auto``: a widget in a
notebook).

A run whose model, prior or data were objects made in Python cannot be rebuilt from its
directory, so its figures are drawn here from the objects in memory rather than by the trainer
(whose figures reopen the run from disk): its saved config records ``plots: false``.
"""

from __future__ import annotations

import os
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Iterable, Optional

from torch import nn

from pyro_vae.api.arguments import (
    check_keywords,
    config_keys,
    elbo_argument,
    elbo_object,
    model_argument,
    model_object,
    prior_argument,
    prior_object,
)
from pyro_vae.api.data import data_argument, on_device
from pyro_vae.api.figures import draw_figures
from pyro_vae.api.runs import Run
from pyro_vae.config import RESUME_OVERRIDABLE, Config, coerce_overrides, merge_values, validate
from pyro_vae.core.console import lines_shown, log_line
from pyro_vae.core.distributed import resolve_device
from pyro_vae.core.errors import ConfigError
from pyro_vae.evaluation import describe, evaluate_model
from pyro_vae.runs.opening import check_objects_given, recorded_objects
from pyro_vae.runs.results import read_summary
from pyro_vae.runs.rundir import RunDir
from pyro_vae.training.trainer import Trainer

TRAIN_PARAMETERS = ("model", "prior", "elbo", "data", "out", "seed", "config_file", "verbose", "progress")
RESUME_PARAMETERS = ("model", "prior", "elbo", "data", "trusted_imports", "verbose", "progress")


def train(model: Any = None, *, prior: Any = None, elbo: Any = None, data: Any = None,
          out: Optional[str | os.PathLike] = None, seed: Optional[int] = None,
          config_file: Optional[str | os.PathLike] = None,
          verbose: bool = True, progress: Optional[bool] = None, **config: Any) -> Run:
    """Train a new run and return it (:class:`~pyro_vae.api.runs.Run`).

    ``model``: a model name ("vae", "hvae", a registered one), an import path
    ("package.module:Class", built from the config as on the command line), or a model instance
    (an ``nn.Module`` with ``model(x)``/``guide(x)`` following the site rules; trained in place).
    ``prior``: a prior name, import path or instance (with a model built from its name).
    ``elbo``: an objective name ("trace", "iwae", "dreg", ...) or an objective instance (a
    ``pyro.infer.ELBO``). ``data``: a dataset name, a :class:`~pyro_vae.data.VAEData`, or tensors
    of images, ``train`` or ``(train, test)``, with values in [0, 1]. ``out``: the run directory
    to write (as ``scripts/svi_train.py --out``); None trains in memory. ``seed``: the run's
    seed (default 0). ``config_file``: a YAML config whose keys the keyword arguments override.
    Every other keyword argument is a config key (docs/configuration.md): ``epochs=5``,
    ``hidden=[200, 200]``. ``verbose``: show the run's lines where logging would not;
    ``progress``: progress bars (default: ``verbose``).
    """
    check_keywords("train", config, TRAIN_PARAMETERS,
                   config_keys("model", "prior", "elbo", "dataset", "out", "seed", "resume"),
                   {"dataset": "train() takes the data as data= (a dataset name, a VAEData or tensors): "
                               f"pass data={config.get('dataset')!r}",
                    "resume": "train() starts a new run; continue one with pyro_vae.resume(path, epochs=...)"})
    explicit = {"seed": seed, "out": None if out is None else os.fspath(out)}
    values = merge_values({**config, **{k: v for k, v in explicit.items() if v is not None}}, config_file)
    if values.get("resume"):
        raise ConfigError("train() starts a new run; the config file names resume: continue that run with "
                          "pyro_vae.resume(path, epochs=...)")
    model = model_argument(model, values)
    prior = prior_argument(prior, values, model)
    elbo = elbo_argument(elbo, values)
    data = data_argument(data, values)
    out = values.get("out")
    cfg = validate(Config.from_flat(**values))
    if data is not None:
        data = on_device(data, resolve_device(cfg.run.device))
    # The trainer evaluates from its checkpoints and draws by reopening the run from disk: a run
    # in memory is evaluated here (_finish), and a run that cannot be reopened is drawn here.
    from_disk = out is not None and not _objects_rebuilt(cfg.to_flat())
    given = cfg.replace(plots=cfg.run.plots and from_disk, eval_samples=cfg.run.eval_samples if out is not None else None)
    progress = verbose if progress is None else progress
    with _shown(verbose):
        trainer = Trainer(given, model=model, prior=prior, elbo=elbo, data=data, in_memory=out is None,
                          log=log_line, progress=progress)
        trainer.fit()
        return _finish(trainer, cfg, cfg.run.plots and out is not None and not from_disk, progress)


def resume(path: str | os.PathLike, *, model: Optional[nn.Module] = None, prior: Optional[nn.Module] = None,
           elbo: Any = None, data: Any = None, trusted_imports: Iterable[str] = (), verbose: bool = True,
           progress: Optional[bool] = None, **changes: Any) -> Run:
    """Continue the run in ``path`` (its last checkpoint) and return it; ``epochs=N`` trains it up
    to epoch N. Only ``epochs``, ``lr``, ``device``, ``data_dir``, ``eval_samples``, ``plots``,
    ``compile`` and ``tf32`` may change. A run trained from objects (model, prior, objective,
    data) continues only with them passed again; ``trusted_imports``: the import paths the saved
    config may name (as for :func:`~pyro_vae.api.runs.open_run`)."""
    others = {key: f"{key}= cannot change when a run is resumed (it would make it another experiment); "
                   f"only {', '.join(RESUME_OVERRIDABLE)} may: start a new run with pyro_vae.train"
              for key in config_keys(*RESUME_OVERRIDABLE)}
    check_keywords("resume", changes, RESUME_PARAMETERS, list(RESUME_OVERRIDABLE), others)
    if isinstance(trusted_imports, str):
        raise ConfigError(f"trusted_imports= is a list of import paths: trusted_imports=[{trusted_imports!r}]")
    objects = {"model": model, "prior": prior, "elbo": elbo, "dataset": data}
    for key, value in objects.items():
        if isinstance(value, str):
            raise ConfigError(f"resume's {'data' if key == 'dataset' else key}= is an object the run was "
                              f"trained with; a run resumes its own {key} by name")
    model = None if model is None else model_object(model)
    prior = None if prior is None else prior_object(prior)
    elbo = None if elbo is None else elbo_object(elbo)
    saved = RunDir(path).require("path").read_config()
    check_objects_given(saved, {k for k, v in objects.items() if v is not None}, path,
                        needed=tuple(objects))
    values = coerce_overrides(changes)
    if data is not None:
        data = on_device(data_argument(data, {}), resolve_device(values.get("device", saved.get("device", "auto"))))
    own_figures = _objects_rebuilt(saved)
    plots = values.get("plots", True)
    progress = verbose if progress is None else progress
    with _shown(verbose):
        trainer = Trainer.resume(str(path), {**values, **({"plots": False} if own_figures else {})},
                                 trusted_imports, model=model, prior=prior, elbo=elbo, data=data,
                                 log=log_line, progress=progress)
        trainer.fit()
        return _finish(trainer, trainer.cfg, own_figures and plots, progress)


def _objects_rebuilt(values: dict[str, Any]) -> bool:
    """Whether a run with the saved config ``values`` needs objects made in Python to rebuild its
    model or data (an objective object is not needed to draw or evaluate)."""
    return bool(recorded_objects(values).keys() - {"elbo"})


def _shown(verbose: bool):
    return lines_shown(always=False) if verbose else nullcontext()


def _finish(trainer: Trainer, cfg: Config, figures: bool, progress: bool) -> Run:
    """The trained run; its final log p(x) where ``eval_samples`` asks for one (the trainer's
    eval.json, or estimated here for a run in memory), and its figures where ``figures``."""
    run_dir = Path(trainer.run.path) if trainer.run is not None else None
    run = Run(trainer.model, cfg, list(trainer.history), run_dir, best=trainer.state.best,
              image_shape=tuple(trainer.data.image_shape), given_data=trainer.data)
    if cfg.run.eval_samples and run_dir is not None and (run_dir / "eval.json").is_file():
        run.evaluation = read_summary(run_dir / "eval.json")
    elif cfg.run.eval_samples and run_dir is None:
        log_line(f"estimating log p(x) on {len(trainer.data.test)} test images with K = {cfg.run.eval_samples} "
                 f"(the last weights, epoch {run.epoch})")
        summary, _ = evaluate_model(trainer.model, trainer.data.test, cfg.run.eval_samples, seed=cfg.run.seed,
                                    log=log_line, progress=progress)
        summary.update(split="test", epoch=run.epoch, checkpoint="last")
        log_line(describe(summary))
        run.evaluation = summary
    if figures:
        paths = draw_figures(run, run_dir / "figures")
        log_line(f"figures: {', '.join(str(p) for p in paths)}")
    return run
