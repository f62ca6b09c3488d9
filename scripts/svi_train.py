#!/usr/bin/env python
"""Train a Pyro VAE with SVI and leave a run directory behind.

    python scripts/svi_train.py                               # defaults: MNIST, MLP, Trace_ELBO
    python scripts/svi_train.py --config configs/iwae_paper.yaml --epochs 5
    python scripts/svi_train.py --elbo meanfield --jit
    python scripts/svi_train.py --resume runs/<run>            # continue where it stopped

Every flag is also a key of the YAML config; flags override the file. See the README.
"""

import argparse
import sys

from pyro_vae.config import add_config_arguments
from pyro_vae.errors import PyroVAEError
from pyro_vae.train import train


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML config file (see configs/)")
    add_config_arguments(parser)
    args = vars(parser.parse_args(argv))
    config_file = args.pop("config", None)
    try:
        train(args, config_file=config_file)
    except PyroVAEError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted. If an epoch had finished, its checkpoint is intact: continue with "
              "--resume RUN_DIR; otherwise start again.", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
