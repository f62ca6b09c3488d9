"""Variance and signal-to-noise ratio of each gradient estimator, at the same parameters.

    python scripts/grad_variance.py runs/<run>                   # at a trained checkpoint
    python scripts/grad_variance.py --init --out runs/gv-init     # at initialisation
    python scripts/grad_variance.py runs/<run> --estimators reparam score score+avg --repeats 200

Writes grad_variance.{md,json,png} into the run directory (or --out). Config flags select the
model at --init; --batch-size sets the minibatch and --num-particles the K of iwae, dreg and
vimco. Estimators that do not apply to the model (arm, disarm, rebar and relax on a Normal guide, the
reparameterized ones on a Bernoulli guide) are skipped with the reason. A flag it would not read
(a model flag at a run, a training flag, --num-particles without iwae, dreg or vimco) is refused.
"""

import argparse
import sys

from pyro_vae.cli.exits import ArgumentParser, command, run_command
from pyro_vae.config import add_config_arguments, add_trust_argument, path_argument
from pyro_vae.studies import DEFAULT_BASELINE_WARMUP, ESTIMATOR_SPECS, WITH_BASELINE, run_diagnostic


@command
def main(argv=None) -> int:
    parser = ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("run_dir", nargs="?", type=path_argument(),
                       help="a run directory with a checkpoint")
    where.add_argument("--init", action="store_true", help="measure at freshly initialised weights")
    parser.add_argument("--estimators", nargs="+", choices=list(ESTIMATOR_SPECS),
                        default=list(ESTIMATOR_SPECS), help="which estimators (default: all)")
    parser.add_argument("--repeats", type=int, default=100, help="gradient draws per estimator")
    parser.add_argument("--baseline-warmup", type=int,
                        help="draws that let a baseline settle before measuring "
                             f"({', '.join(WITH_BASELINE)}; default {DEFAULT_BASELINE_WARMUP})")
    parser.add_argument("--config", help="YAML config for --init")
    add_trust_argument(parser)
    add_config_arguments(parser, path_defaults={
        "out": "the run directory (at --init: runs/grad-variance-<timestamp>)"})
    args = vars(parser.parse_args(argv))
    run_dir, init = args.pop("run_dir"), args.pop("init")
    estimators, repeats = args.pop("estimators"), args.pop("repeats")
    warmup, config_file = args.pop("baseline_warmup"), args.pop("config")
    trusted = args.pop("trust_import")
    if repeats < 2:
        parser.error("--repeats must be at least 2")
    if warmup is not None and warmup < 0:
        parser.error("--baseline-warmup must be at least 0")

    def work() -> None:
        paths = run_diagnostic(None if init else run_dir, args, config_file, estimators, repeats,
                               warmup, trusted_imports=trusted)
        print(paths["markdown"].read_text())
        print("wrote " + ", ".join(str(p) for p in paths.values()))

    return run_command(work, interrupted="the report was not written",
                       single_process=True)


if __name__ == "__main__":
    sys.exit(main())
