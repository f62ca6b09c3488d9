#!/usr/bin/env python
"""Estimate the test log-likelihood log p(x) of a trained run.

    python scripts/evaluate.py runs/<run>                        # IWAE, K = 5000, the test split
    python scripts/evaluate.py runs/<run> --num-samples 1000 --limit 1000
    python scripts/evaluate.py runs/<run> --checkpoint last      # not best.pt
    python scripts/evaluate.py runs/<run> --method ais --limit 200 --ais-steps 1000
    python scripts/evaluate.py runs/<run> --method bdmc --limit 100
    torchrun --nproc-per-node 4 scripts/evaluate.py runs/<run>   # the images shared by 4 ranks

--method iwae (default): importance sampling from the guide; prints the estimate with its
standard error, the ELBO and the gap, active units and the PSIS diagnostics; writes eval.json
and eval_points.npz. --method ais: annealed importance sampling with HMC, the gold standard;
writes eval_ais.json and eval_ais_points.npz, and compares with eval.json when it is there.
--method bdmc: lower and upper bounds on images simulated from the model (--limit of them);
writes eval_bdmc.json and eval_bdmc_points.npz. All into the run directory, or --out.
"""

import argparse
import sys

from pyro_vae.config import add_trust_argument
from pyro_vae.console import ArgumentParser, run_command
from pyro_vae.distributed import log_on_main, process_group
from pyro_vae.ais import STARTS
from pyro_vae.evaluate import evaluate_run, parse_memory
from pyro_vae.evaluate_ais import DEFAULT_AIS_STEPS, DEFAULT_BDMC_IMAGES, ais_run, bdmc_run


def memory_size(text: str) -> int:
    try:
        size = parse_memory(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size; write e.g. 512MiB, 8GiB or 1e9") from None
    if size <= 0:
        raise argparse.ArgumentTypeError("the memory budget must be positive")
    return size


def main(argv=None) -> int:
    with process_group():  # a no-op unless launched by torchrun (README, "Scaling out")
        return parse_and_run(argv)


def parse_and_run(argv) -> int:
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", help="a run directory written by scripts/svi_train.py")
    p.add_argument("--method", choices=("iwae", "ais", "bdmc"), default="iwae",
                   help="iwae: importance sampling (K samples); ais: annealed importance sampling; "
                        "bdmc: AIS bounds on data simulated from the model")
    p.add_argument("--num-samples", type=int, help="iwae: K importance samples per image (default 5000)")
    p.add_argument("--ais-steps", type=int, help="ais/bdmc: annealing steps T (default "
                   f"{DEFAULT_AIS_STEPS['cpu']} on cpu, {DEFAULT_AIS_STEPS['cuda']} on cuda)")
    p.add_argument("--ais-chains", type=int, default=16, help="ais/bdmc: chains per image")
    p.add_argument("--leapfrog", type=int, default=10, help="ais/bdmc: leapfrog steps per HMC transition")
    p.add_argument("--ais-start", choices=STARTS, default="guide",
                   help="ais/bdmc: anneal from the guide q(z|x) or from the prior p(z)")
    p.add_argument("--split", choices=("test", "valid", "train"), default="test")
    p.add_argument("--checkpoint", choices=("best", "last"), default="best",
                   help="best: best.pt, the epoch with the best validation ELBO (runs with a "
                        "validation split; else the last); last: checkpoint.pt")
    p.add_argument("--limit", type=int, help="only the first N images of the split (bdmc: "
                   f"the number of simulated images, default {DEFAULT_BDMC_IMAGES})")
    p.add_argument("--batch-size", type=int, default=100, help="images per batch")
    p.add_argument("--max-memory", default="1GiB", type=memory_size,
                   help="activation memory for one chunk of particles (ais/bdmc: for one batch of "
                        "images x chains, gradients included), e.g. 512MiB or 8GiB")
    p.add_argument("--device", choices=("cpu", "cuda", "auto"), help="default: the run's")
    p.add_argument("--seed", type=int, help="default: the run's")
    p.add_argument("--data-dir", help="default: the run's, else $PYRO_VAE_DATA, else ./data")
    p.add_argument("--out", help="write eval.json and eval_points.npz here (default: the run directory)")
    add_trust_argument(p)
    args = p.parse_args(argv)
    for name in ("num_samples", "batch_size", "limit", "ais_steps", "ais_chains", "leapfrog"):
        value = getattr(args, name)
        if value is not None and value < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.seed is not None and not 0 <= args.seed < 2**32:
        p.error("--seed must be in [0, 2^32 - 1]")

    ais_flags = [f for f in ("ais_steps", "ais_chains", "leapfrog", "ais_start")
                 if getattr(args, f) != p.get_default(f)]
    if args.method == "iwae" and ais_flags:
        p.error(f"--{ais_flags[0].replace('_', '-')} is for --method ais or bdmc")
    if args.method != "iwae" and args.num_samples is not None:
        p.error("--num-samples is for --method iwae; AIS takes --ais-steps and --ais-chains")
    if args.method == "bdmc" and args.split != "test":
        p.error("--split is for iwae and ais: bdmc evaluates images it simulates from the model")
    common = dict(batch_size=args.batch_size, max_memory=args.max_memory, device=args.device, seed=args.seed, data_dir=args.data_dir,
                  out_dir=args.out, trusted_imports=args.trust_import, checkpoint=args.checkpoint)
    ais_options = dict(num_steps=args.ais_steps, num_chains=args.ais_chains,
                       num_leapfrog=args.leapfrog, start=args.ais_start)

    def work() -> None:
        if args.method == "iwae":
            evaluate_run(args.run_dir, args.num_samples or 5000, args.split, args.limit, **common)
        elif args.method == "ais":
            ais_run(args.run_dir, split=args.split, limit=args.limit, **ais_options, **common)
        else:
            bdmc_run(args.run_dir, args.limit or DEFAULT_BDMC_IMAGES, **ais_options, **common)
        stem = {"iwae": "eval", "ais": "eval_ais", "bdmc": "eval_bdmc"}[args.method]
        log_on_main(print)(f"wrote {args.out or args.run_dir}/{stem}.json and {stem}_points.npz")

    return run_command(work, interrupted="nothing was written")


if __name__ == "__main__":
    sys.exit(main())
