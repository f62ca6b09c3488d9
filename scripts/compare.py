#!/usr/bin/env python
"""Compare runs: test ELBO against epochs and wall time in one figure (and test log p(x) where
evaluated), plus a markdown table of the final numbers.

    python scripts/compare.py runs/a runs/b runs/c --out runs/comparison
    python scripts/compare.py --sweep configs/sweeps/estimator_comparison.yaml   # train, then compare

A sweep file has a `name`, a `base` config shared by all runs and `runs`, a mapping from run
names to the keys that differ; its runs go to runs/<name>/<run> and the comparison to runs/<name>.
"""

import argparse
import sys
from pathlib import Path

from pyro_vae.config import coerce_overrides, read_yaml
from pyro_vae.console import ArgumentParser, run_command
from pyro_vae.errors import ConfigError
from pyro_vae.plots import compare_runs
from pyro_vae.train import train


def _folder_name(value, what: str, path: str) -> str:
    """A sweep's or run's name becomes one folder: a plain name, never a path."""
    name = str(value)
    if not name or name in (".", "..") or "/" in name or "\\" in name:
        raise ConfigError(f"{path}: {what} {value!r} must be a plain folder name (no '/' or '..')")
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


def run_sweep(path: str, data_dir=None) -> tuple[list[Path], Path]:
    name, base, runs = read_sweep(path)
    root = Path("runs") / name
    if data_dir:
        base["data_dir"] = data_dir
    dirs = []
    for run, overrides in runs.items():
        out = root / run
        print(f"== {run}", flush=True)
        train({**base, **overrides, "out": str(out)})
        dirs.append(out)
    return dirs, root


def main(argv=None) -> int:
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dirs", nargs="*", help="run directories to compare")
    p.add_argument("--sweep", help="a sweep file: train its runs first, then compare them")
    p.add_argument("--out", help="where compare.png and compare.md go (default: runs/comparison, or the sweep's folder)")
    p.add_argument("--data-dir", help="for --sweep: the data directory")
    args = p.parse_args(argv)
    if bool(args.run_dirs) == bool(args.sweep):
        p.error("give run directories or --sweep FILE (one of them)")

    def work() -> None:
        if args.sweep:
            dirs, out = run_sweep(args.sweep, args.data_dir)
        else:
            dirs, out = args.run_dirs, Path("runs") / "comparison"
        paths = compare_runs(dirs, args.out or out)
        print(paths["markdown"].read_text())
        print(f"wrote {paths['figure']} and {paths['markdown']}")

    return run_command(work, interrupted="runs finished before the interruption are kept; "
                                         "the comparison was not written",
                       single_process=True)


if __name__ == "__main__":
    sys.exit(main())
