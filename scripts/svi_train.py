#!/usr/bin/env python
"""Train a Pyro VAE with SVI and leave a run directory behind.

    python scripts/svi_train.py                               # defaults: MNIST, MLP, Trace_ELBO
    python scripts/svi_train.py --config configs/papers/burda_1layer_vae_k1.yaml --epochs 5
    python scripts/svi_train.py --elbo meanfield --no-compile    # Pyro's eager step
    python scripts/svi_train.py --resume runs/<run>            # continue where it stopped
    torchrun --nproc-per-node 2 scripts/svi_train.py           # data-parallel on 2 ranks

Every flag is also a key of the YAML config; flags override the file. See the README.
"""

import argparse
import sys

from pyro_vae.config import add_config_arguments, add_trust_argument
from pyro_vae.console import ArgumentParser, run_command
from pyro_vae.distributed import process_group
from pyro_vae.train import train


def main(argv=None) -> int:
    with process_group():  # a no-op unless launched by torchrun (README, "Scaling out")
        return parse_and_run(argv)


def parse_and_run(argv) -> int:
    parser = ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML config file (see configs/)")
    add_trust_argument(parser)
    add_config_arguments(parser)
    args = vars(parser.parse_args(argv))
    config_file, trusted = args.pop("config", None), args.pop("trust_import")

    def work() -> None:
        train(args, config_file=config_file, trusted_imports=trusted)

    return run_command(work, interrupted="training had not started; nothing was written")


if __name__ == "__main__":
    sys.exit(main())
