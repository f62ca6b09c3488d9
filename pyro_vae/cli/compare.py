"""Compare runs: test ELBO against epochs and wall time in one figure (and test log p(x) where
evaluated), plus a markdown table of the final numbers.

    python scripts/compare.py runs/a runs/b runs/c --out runs/comparison
    python scripts/compare.py --sweep configs/sweeps/estimator_comparison.yaml   # train, then compare
    python scripts/compare.py --sweep FILE --runs a b   # only these runs (e.g. one process per core)

A sweep file has a `name`, a `base` config shared by all runs and `runs`, a mapping from run
names to the keys that differ; its runs go to runs/<name>/<run> and the comparison to runs/<name>.
Every run is checked before the first one trains; run the same command again after a failure or
Ctrl-C, and the finished runs are skipped and the stopped one resumed. A run is finished when it
reached its epochs, stopped early, or spent its training-time budget (max_minutes). --runs trains
and compares the named runs only, so that several processes can share a sweep (one per core or
GPU); a last run of the command without --runs then compares them all.
"""

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from pyro_vae.cli.exits import ArgumentParser, command, run_command
from pyro_vae.config import (
    Config,
    coerce_overrides,
    import_paths,
    path_argument,
    path_problem,
    read_yaml,
    shown,
    validate,
)
from pyro_vae.core.atomic import make_directory
from pyro_vae.core.errors import ConfigError
from pyro_vae.evaluation import evaluate_run
from pyro_vae.runs.lock import RunLock
from pyro_vae.runs.rundir import RunDir
from pyro_vae.studies import check_same_settings
from pyro_vae.training.callbacks.time_limit import training_seconds
from pyro_vae.training.trainer import train
from pyro_vae.viz import compare_runs


def _folder_name(value, what: str, path: str) -> str:
    """A sweep's or run's name becomes one folder: a plain name, never a path."""
    name = str(value)
    if path_problem(name) or name in (".", "..") or "/" in name or "\\" in name \
            or not name.isprintable():
        raise ConfigError(f"{path}: {what} {shown(value)} must be a plain folder name (printable, "
                          "no '/' or '..')")
    return name


def read_sweep(path: str) -> tuple[str, dict, dict[str, dict]]:
    """The sweep file's name, base config and runs, checked before anything trains."""
    spec = read_yaml(path, "sweep file")
    if not isinstance(spec, dict):
        raise ConfigError(f"{path}: a sweep file is a mapping with 'name', 'base' and 'runs'")
    unknown = set(spec) - {"name", "base", "runs"}
    if unknown:
        raise ConfigError(f"{path}: unknown sweep key(s) {', '.join(map(str, sorted(unknown, key=str)))}; "
                          "a sweep has 'name', 'base' and 'runs'")
    runs, base = spec.get("runs"), spec.get("base") or {}
    if not isinstance(runs, dict) or not runs:
        raise ConfigError(f"{path}: 'runs' must be a non-empty mapping from run names to the config "
                          "keys that differ, e.g. runs: {trace: {elbo: trace}}")
    if not isinstance(base, dict):
        raise ConfigError(f"{path}: 'base' must be a mapping of config keys to values")
    name = _folder_name(spec.get("name", Path(path).stem), "name", path)
    checked = {}
    for run, overrides in runs.items():
        if overrides is not None and not isinstance(overrides, dict):
            raise ConfigError(f"{path}: run {run!r} must map config keys to values (or be empty)")
        checked[_folder_name(run, "run name", path)] = coerce_overrides(overrides or {}, where=f"{path} run {run}")
    return name, coerce_overrides(base, where=f"{path} base"), checked


@dataclass
class SweepRun:
    """One run of a sweep: its folder, its settings (checked) and what is on disk of it."""

    name: str
    values: dict  # the base config with the run's keys
    cfg: Config  # the values, validated
    run: RunDir
    epoch: int  # of the run's checkpoint on disk (0: none yet)
    finished: bool  # trained to its epochs, stopped early or out of time: nothing left to train


def _finished(cfg: Config, state: dict) -> bool:
    """Whether a run's checkpoint leaves nothing to train: its epochs done, early stopping
    reached, or its training-time budget spent."""
    epoch, best, budget = state["epoch"], state.get("best"), cfg.optim.max_minutes
    return (epoch >= cfg.optim.epochs
            or bool(cfg.optim.early_stopping and isinstance(best, dict)
                    and epoch - best.get("epoch", epoch) >= cfg.optim.early_stopping)
            or bool(budget and training_seconds(state["metrics"]) >= 60 * budget))


def plan_sweep(path: str, data_dir=None, only=None) -> tuple[list[SweepRun], Path]:
    """Every run of the sweep file checked as training checks it, and every run directory that
    exists checked to be that run's (the same settings), before the first one trains. ``only``:
    the names of the runs to keep (all of them are checked)."""
    name, base, runs = read_sweep(path)
    unknown = sorted(set(only or ()) - set(runs))
    if unknown:
        raise ConfigError(f"{path} has no run named {', '.join(map(repr, unknown))}; its runs: "
                          f"{', '.join(runs)}")
    root = Path("runs") / name
    if data_dir:
        base["data_dir"] = data_dir
    planned = []
    for run, overrides in runs.items():
        values = {**base, **overrides}
        where = f"{path}: run {run!r}"
        for key in ("out", "resume"):
            if key in values:
                raise ConfigError(f"{where} sets {key!r}; a sweep puts each run in runs/{name}/<run>, "
                                  f"so drop {key}")
        try:
            cfg = validate(Config.from_flat(**values))
        except ConfigError as e:
            raise ConfigError(f"{where}: {e}") from None
        run_dir = RunDir(root / run)
        epoch, finished = 0, False
        if run_dir.checkpoint_path.exists():
            state = check_same_settings(run_dir, cfg, where, "it is another sweep's run, or the sweep "
                                        "file was edited since; restore it, or move the run away")
            epoch, finished = state["epoch"], _finished(cfg, state)
        else:
            try:
                run_dir.check_new()
            except ConfigError as e:
                raise ConfigError(f"{where}: {e}") from None
        planned.append(SweepRun(run, values, cfg, run_dir, epoch, finished))
    return [entry for entry in planned if not only or entry.name in only], root


def run_sweep(path: str, data_dir=None, only=None) -> tuple[list[Path], Path]:
    """Train the sweep's runs (``only``: those named), then return their directories. Run again
    after a failure or Ctrl-C, it skips the runs that are finished and resumes the one that was
    stopped."""
    planned, root = plan_sweep(path, data_dir, only)
    for entry in planned:
        trusted = list(import_paths(entry.values).values())  # the sweep file is the user's
        if entry.finished:
            print(f"== {entry.name}: finished (epoch {entry.epoch} of {entry.cfg.optim.epochs} in "
                  f"{entry.run.path}), skipped", flush=True)
            if entry.cfg.run.eval_samples and not (entry.run.path / "eval.json").exists():
                evaluate_run(entry.run.path, entry.cfg.run.eval_samples, "test", entry.cfg.data.limit_test,
                             data_dir=entry.cfg.data.data_dir, trusted_imports=trusted)
            continue
        if entry.epoch:
            print(f"== {entry.name}: resuming {entry.run.path} at epoch {entry.epoch + 1}", flush=True)
            train({**entry.values, "resume": str(entry.run.path)}, trusted_imports=trusted)
        else:
            print(f"== {entry.name}", flush=True)
            train({**entry.values, "out": str(entry.run.path)})
    return [entry.run.path for entry in planned], root


@command
def main(argv=None) -> int:
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dirs", nargs="*", type=path_argument(), help="run directories to compare")
    p.add_argument("--sweep", help="a sweep file: train its runs first, then compare them")
    p.add_argument("--out", type=path_argument(default="runs/comparison"), help="where compare.png and compare.md go (default: "
                   "runs/comparison, or the sweep's folder)")
    p.add_argument("--data-dir", type=path_argument("data_dir"), help="for --sweep: the data directory")
    p.add_argument("--runs", nargs="+", metavar="NAME",
                   help="for --sweep: train and compare only these runs (e.g. one process per core)")
    args = p.parse_args(argv)
    if bool(args.run_dirs) == bool(args.sweep):
        p.error("give run directories or --sweep FILE (one of them)")
    if args.data_dir is not None and not args.sweep:
        p.error("--data-dir is for --sweep (comparing run directories reads no data)")
    if args.runs and not args.sweep:
        p.error("--runs names runs of a sweep: give --sweep FILE too")

    def work() -> None:
        if args.sweep:
            if args.out:  # refused now if another process writes it, not after the training
                with RunLock(make_directory(args.out)):
                    pass
            dirs, out = run_sweep(args.sweep, args.data_dir, args.runs)
        else:
            dirs, out = args.run_dirs, Path("runs") / "comparison"
        paths = compare_runs(dirs, args.out or out)
        print(paths["markdown"].read_text())
        print(f"wrote {paths['figure']} and {paths['markdown']}")

    return run_command(work, interrupted="every finished epoch is in its run's checkpoint, and "
                                         "the comparison was not written; run the same command "
                                         "again to go on (finished runs are skipped)",
                       single_process=True)


if __name__ == "__main__":
    sys.exit(main())
