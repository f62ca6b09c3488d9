"""Train (or resume) and evaluate configs that reproduce published rows; write one table.

    python scripts/reproduce.py configs/fast/*.yaml                      # the fast protocol
    python scripts/reproduce.py configs/papers/burda_1layer_vae_k1.yaml --epochs-scale 0.1
    python scripts/reproduce.py configs/papers/*.yaml --no-train          # tabulate what exists

Each config's run lives in RUNS_DIR/<folder>-<name> (resumed if it exists, so a protocol of many
hours can be run a piece at a time); it is evaluated on the full test set with K = 5000, and
reproduction.md, reproduction.json and reproduction.png are written into --out. Every config,
its reference and its run directory are checked before anything trains. See docs/results.md.
"""

import argparse
import sys
from pathlib import Path

from pyro_vae.cli.exits import ArgumentParser, command, run_command
from pyro_vae.config import path_argument
from pyro_vae.core.workload import check_iwae, evaluation_images, resolve_device_name
from pyro_vae.studies import reproduce


@command
def main(argv=None) -> int:
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("configs", nargs="+", type=Path, help="config files with a reference mapping")
    p.add_argument("--runs-dir", type=path_argument(default="runs/reproduce"), default="runs/reproduce",
                   help="where the runs live (default runs/reproduce)")
    p.add_argument("--out", type=path_argument(default="--runs-dir"), help="where the table and figure go (default: --runs-dir)")
    p.add_argument("--epochs-scale", type=float, default=1.0, metavar="F",
                   help="multiply epochs, the iwae schedule, warm-up and patience by F")
    p.add_argument("--num-samples", type=int, default=5000, help="K for log p(x) (default 5000)")
    p.add_argument("--limit", type=int, help="evaluate only the first N test images (default: all)")
    p.add_argument("--no-train", dest="train", action="store_false",
                   help="only evaluate and tabulate runs that exist")
    p.add_argument("--device", choices=("cpu", "cuda", "auto"), help="default: the config's")
    p.add_argument("--allow-long", action="store_true",
                   help="evaluate even where --num-samples on --limit images is refused as too long")
    p.add_argument("--data-dir", type=path_argument("data_dir"), help="default: the config's, else $PYRO_VAE_DATA, else ./data")
    args = p.parse_args(argv)
    for name in ("num_samples", "limit"):
        value = getattr(args, name)
        if value is not None and value < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    overrides = {k: v for k, v in {"device": args.device, "data_dir": args.data_dir}.items() if v}

    def work() -> None:
        # an absurd K is refused now, not after hours of training
        check_iwae(args.num_samples, evaluation_images("test", args.limit), 100,
                   resolve_device_name(args.device), args.allow_long)
        reproduce(args.configs, Path(args.runs_dir), Path(args.out or args.runs_dir), args.epochs_scale,
                  args.num_samples, args.limit, overrides, args.train)

    return run_command(work, interrupted="every finished epoch is in its run's checkpoint; run "
                                         "the same command again to go on",
                       single_process=True)


if __name__ == "__main__":
    sys.exit(main())
