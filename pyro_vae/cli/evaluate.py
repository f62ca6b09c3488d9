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

Work that would take more than a day even at a fast rate, or more memory than the machine has,
is refused before the run is opened, with what it would cost; --allow-long runs it anyway.
"""

import argparse
import sys

from pyro_vae.cli.exits import ArgumentParser, command, run_command
from pyro_vae.config import add_trust_argument, path_argument
from pyro_vae.core.distributed import log_on_main, process_group, ranks
from pyro_vae.core.errors import ConfigError
from pyro_vae.core.workload import MAX_HOURS, check_ais, check_iwae, evaluation_images, resolve_device_name
from pyro_vae.evaluation import (
    AUTO_MEMORY,
    DEFAULT_AIS_STEPS,
    DEFAULT_BATCH,
    DEFAULT_BDMC_IMAGES,
    STARTS,
    ais_run,
    bdmc_run,
    default_steps,
    evaluate_run,
    parse_memory,
)

# Defaults of the flags that only some methods read: None in argparse, so that a flag given to a
# method that does not read it is refused even when it repeats the default.
DEFAULT_SAMPLES, DEFAULT_CHAINS, DEFAULT_LEAPFROG, DEFAULT_START, DEFAULT_SPLIT = 5000, 16, 10, "guide", "test"
DEFAULT_IWAE_BATCH = 100  # images per batch for iwae; ais/bdmc: pyro_vae.evaluation.ais.DEFAULT_BATCH


def memory_size(text: str) -> int | str:
    if text.strip().lower() == AUTO_MEMORY:
        return AUTO_MEMORY
    try:
        size = parse_memory(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size; write e.g. 512MiB, 8GiB, 1e9 "
                                         "or auto") from None
    if size <= 0:
        raise argparse.ArgumentTypeError("the memory budget must be positive")
    return size


def check_cost(method: str, split: str, limit, num_samples: int, ais_options: dict, batch_size: int,
               device, allow_long: bool) -> None:
    """Refuse, before the run is opened, an evaluation whose time (unless ``allow_long``) or
    memory is absurd for this machine (:mod:`pyro_vae.core.workload`)."""
    device = resolve_device_name(device)
    processes = ranks().world_size  # a torchrun job shares the images
    if method == "iwae":
        check_iwae(num_samples, evaluation_images(split, limit), batch_size, device, allow_long, processes)
        return
    images = evaluation_images(split, limit) if method == "ais" else (limit or DEFAULT_BDMC_IMAGES)
    check_ais(method, images, ais_options["num_steps"] or default_steps(device), ais_options["num_chains"],
              ais_options["num_leapfrog"], device, allow_long, processes)


@command
def main(argv=None) -> int:
    with process_group():  # a no-op unless launched by torchrun (docs/scaling-out.md)
        return parse_and_run(argv)


def parse_and_run(argv) -> int:
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", type=path_argument(),
                   help="a run directory written by scripts/svi_train.py")
    p.add_argument("--method", choices=("iwae", "ais", "bdmc"), default="iwae",
                   help="iwae: importance sampling (K samples); ais: annealed importance sampling; "
                        "bdmc: AIS bounds on data simulated from the model")
    p.add_argument("--num-samples", type=int,
                   help=f"iwae: K importance samples per image (default {DEFAULT_SAMPLES})")
    p.add_argument("--ais-steps", type=int, help="ais/bdmc: annealing steps T (default "
                   f"{DEFAULT_AIS_STEPS['cpu']} on cpu, {DEFAULT_AIS_STEPS['cuda']} on cuda)")
    p.add_argument("--ais-chains", type=int, help=f"ais/bdmc: chains per image (default {DEFAULT_CHAINS})")
    p.add_argument("--leapfrog", type=int,
                   help=f"ais/bdmc: leapfrog steps per HMC transition (default {DEFAULT_LEAPFROG})")
    p.add_argument("--ais-start", choices=STARTS,
                   help="ais/bdmc: anneal from the guide q(z|x) or from the prior p(z) (default guide)")
    p.add_argument("--split", choices=("test", "valid", "train"), help="iwae/ais (default test)")
    p.add_argument("--checkpoint", choices=("best", "last"), default="best",
                   help="best: best.pt, the epoch with the best validation ELBO (runs with a "
                        "validation split; else the last); last: checkpoint.pt")
    p.add_argument("--limit", type=int, help="only the first N images of the split (bdmc: "
                   f"the number of simulated images, default {DEFAULT_BDMC_IMAGES})")
    p.add_argument("--batch-size", type=int,
                   help=f"images per batch (default: iwae {DEFAULT_IWAE_BATCH}; ais/bdmc "
                        f"{DEFAULT_BATCH['cpu']} on cpu, {DEFAULT_BATCH['cuda']} on cuda)")
    p.add_argument("--max-memory", default=AUTO_MEMORY, type=memory_size,
                   help="activation memory for one chunk of particles (ais/bdmc: for one batch of "
                        "images x chains, gradients included), e.g. 512MiB or 8GiB; auto (default): "
                        "1GiB on cpu, half the free GPU memory on cuda")
    p.add_argument("--device", choices=("cpu", "cuda", "auto"), help="default: the run's")
    p.add_argument("--seed", type=int, help="default: the run's")
    p.add_argument("--data-dir", type=path_argument("data_dir"),
                   help="default: the run's, else $PYRO_VAE_DATA, else ./data")
    p.add_argument("--out", type=path_argument(default="the run directory"),
                   help="write eval.json and eval_points.npz here (default: the run directory)")
    p.add_argument("--allow-long", action="store_true",
                   help=f"run even what would take more than {MAX_HOURS} hours at a fast rate "
                        "(refused by default, with what it would cost)")
    p.add_argument("--no-exact-discrete", dest="exact_discrete", action="store_false",
                   help="iwae: sample the discrete latent sites too, instead of summing those "
                        "small enough to enumerate exactly inside each weight")
    add_trust_argument(p)
    args = p.parse_args(argv)
    for name in ("num_samples", "batch_size", "limit", "ais_steps", "ais_chains", "leapfrog"):
        value = getattr(args, name)
        if value is not None and value < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.seed is not None and not 0 <= args.seed < 2**32:
        p.error("--seed must be in [0, 2^32 - 1]")

    ais_flags = [f for f in ("ais_steps", "ais_chains", "leapfrog", "ais_start") if getattr(args, f) is not None]
    if args.method == "iwae" and ais_flags:
        p.error(f"--{ais_flags[0].replace('_', '-')} is for --method ais or bdmc")
    if args.method != "iwae" and args.num_samples is not None:
        p.error("--num-samples is for --method iwae; AIS takes --ais-steps and --ais-chains")
    if args.method == "bdmc" and args.split is not None:
        p.error("--split is for iwae and ais: bdmc evaluates images it simulates from the model")
    split = args.split or DEFAULT_SPLIT
    num_samples = args.num_samples or DEFAULT_SAMPLES
    ais_options = dict(num_steps=args.ais_steps, num_chains=args.ais_chains or DEFAULT_CHAINS,
                       num_leapfrog=args.leapfrog or DEFAULT_LEAPFROG, start=args.ais_start or DEFAULT_START)
    try:
        check_cost(args.method, split, args.limit, num_samples, ais_options,
                   args.batch_size or DEFAULT_IWAE_BATCH, args.device, args.allow_long)
    except ConfigError as e:
        p.error(str(e))
    common = dict(batch_size=args.batch_size, max_memory=args.max_memory, device=args.device, seed=args.seed, data_dir=args.data_dir,
                  out_dir=args.out, trusted_imports=args.trust_import, checkpoint=args.checkpoint)

    def work() -> None:
        if args.method == "iwae":
            evaluate_run(args.run_dir, num_samples, split, args.limit, exact_discrete=args.exact_discrete,
                         **{**common, "batch_size": args.batch_size or DEFAULT_IWAE_BATCH})
        elif args.method == "ais":
            ais_run(args.run_dir, split=split, limit=args.limit, **ais_options, **common)
        else:
            bdmc_run(args.run_dir, args.limit or DEFAULT_BDMC_IMAGES, **ais_options, **common)
        stem = {"iwae": "eval", "ais": "eval_ais", "bdmc": "eval_bdmc"}[args.method]
        log_on_main(print)(f"wrote {args.out or args.run_dir}/{stem}.json and {stem}_points.npz")

    return run_command(work, interrupted="nothing was written")


if __name__ == "__main__":
    sys.exit(main())
