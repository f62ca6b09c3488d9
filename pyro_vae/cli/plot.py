"""Draw a run's figures into RUN_DIR/figures/: samples, reconstructions, latent space, learning
curves, and (for a 2-D latent) the decoded manifold.

    python scripts/plot_run.py runs/<run>
"""

import argparse
import sys

from pyro_vae.cli.exits import ArgumentParser, command, run_command
from pyro_vae.config import add_trust_argument, path_argument
from pyro_vae.viz import plot_run


@command
def main(argv=None) -> int:
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", type=path_argument())
    p.add_argument("--data-dir", type=path_argument("data_dir"),
                   help="default: the run's, else $PYRO_VAE_DATA, else ./data")
    p.add_argument("--num-points", type=int, default=2000, help="test images in the latent-space plot")
    add_trust_argument(p)
    args = p.parse_args(argv)
    if args.num_points < 1:
        p.error("--num-points must be at least 1")

    def work() -> None:
        paths = plot_run(args.run_dir, args.data_dir, args.num_points, trusted_imports=args.trust_import)
        print("\n".join(str(path) for path in paths))

    return run_command(work, interrupted="some figures may not have been redrawn",
                       single_process=True)


if __name__ == "__main__":
    sys.exit(main())
