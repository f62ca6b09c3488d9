#!/usr/bin/env python
"""Estimate the test log-likelihood log p(x) of a trained run by importance sampling.

    python scripts/evaluate.py runs/<run>                        # K = 5000 on the test split
    python scripts/evaluate.py runs/<run> --num-samples 1000 --limit 1000
    python scripts/evaluate.py runs/<run> --checkpoint last      # not best.pt

Prints the estimate with its standard error, the ELBO and the gap, active units and the PSIS
diagnostics, and writes eval.json and eval_points.npz into the run directory (or --out).
"""

import argparse
import sys

from pyro_vae.config import add_trust_argument
from pyro_vae.console import ArgumentParser, run_command
from pyro_vae.evaluate import evaluate_run, parse_memory


def memory_size(text: str) -> int:
    try:
        size = parse_memory(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size; write e.g. 512MiB, 8GiB or 1e9") from None
    if size <= 0:
        raise argparse.ArgumentTypeError("the memory budget must be positive")
    return size


def main(argv=None) -> int:
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", help="a run directory written by scripts/svi_train.py")
    p.add_argument("--num-samples", type=int, default=5000, help="K importance samples per image")
    p.add_argument("--split", choices=("test", "valid", "train"), default="test")
    p.add_argument("--checkpoint", choices=("best", "last"), default="best",
                   help="best: best.pt, the epoch with the best validation ELBO (runs with a "
                        "validation split; else the last); last: checkpoint.pt")
    p.add_argument("--limit", type=int, help="only the first N images of the split")
    p.add_argument("--batch-size", type=int, default=100, help="images per batch")
    p.add_argument("--max-memory", default="1GiB", type=memory_size,
                   help="activation memory for one chunk of particles, e.g. 512MiB or 8GiB")
    p.add_argument("--device", choices=("cpu", "cuda", "auto"), help="default: the run's")
    p.add_argument("--seed", type=int, help="default: the run's")
    p.add_argument("--data-dir", help="default: the run's, else $PYRO_VAE_DATA, else ./data")
    p.add_argument("--out", help="write eval.json and eval_points.npz here (default: the run directory)")
    add_trust_argument(p)
    args = p.parse_args(argv)
    for name in ("num_samples", "batch_size", "limit"):
        value = getattr(args, name)
        if value is not None and value < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.seed is not None and not 0 <= args.seed < 2**32:
        p.error("--seed must be in [0, 2^32 - 1]")

    def work() -> None:
        evaluate_run(args.run_dir, args.num_samples, args.split, args.limit, args.batch_size,
                     args.device, args.seed, args.max_memory, args.data_dir, out_dir=args.out,
                     trusted_imports=args.trust_import, checkpoint=args.checkpoint)
        print(f"wrote {args.out or args.run_dir}/eval.json and eval_points.npz")

    return run_command(work, interrupted="nothing was written")


if __name__ == "__main__":
    sys.exit(main())
