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

import yaml

from pyro_vae.config import coerce_overrides
from pyro_vae.errors import ConfigError, PyroVAEError
from pyro_vae.plots import compare_runs
from pyro_vae.train import train


def run_sweep(path: str, data_dir=None) -> tuple[list[Path], Path]:
    spec = yaml.safe_load(Path(path).read_text()) or {}
    unknown = set(spec) - {"name", "base", "runs"}
    if unknown or not spec.get("runs"):
        raise ConfigError(f"{path}: a sweep needs 'name', 'base' and 'runs' (got {sorted(spec)})")
    root = Path("runs") / spec.get("name", Path(path).stem)
    base = coerce_overrides(spec.get("base") or {}, where=f"{path} base")
    if data_dir:
        base["data_dir"] = data_dir
    dirs = []
    for name, overrides in spec["runs"].items():
        out = root / name
        print(f"== {name}", flush=True)
        train({**base, **coerce_overrides(overrides or {}, where=f"{path} run {name}"), "out": str(out)})
        dirs.append(out)
    return dirs, root


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dirs", nargs="*", help="run directories to compare")
    p.add_argument("--sweep", help="a sweep file: train its runs first, then compare them")
    p.add_argument("--out", help="where compare.png and compare.md go (default: runs/comparison, or the sweep's folder)")
    p.add_argument("--data-dir", help="for --sweep: the data directory")
    args = p.parse_args(argv)
    if bool(args.run_dirs) == bool(args.sweep):
        p.error("give run directories or --sweep FILE (one of them)")
    try:
        if args.sweep:
            dirs, out = run_sweep(args.sweep, args.data_dir)
        else:
            dirs, out = args.run_dirs, Path("runs") / "comparison"
        paths = compare_runs(dirs, args.out or out)
    except PyroVAEError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(paths["markdown"].read_text())
    print(f"wrote {paths['figure']} and {paths['markdown']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
