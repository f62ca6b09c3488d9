#!/usr/bin/env python
"""Draw a run's figures into RUN_DIR/figures/: samples, reconstructions, latent space, learning
curves, and (for a 2-D latent) the decoded manifold.

    python scripts/plot_run.py runs/<run>
"""

import argparse
import sys

from pyro_vae.errors import PyroVAEError
from pyro_vae.plots import plot_run


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir")
    p.add_argument("--data-dir", help="default: the run's, else $PYRO_VAE_DATA, else ./data")
    p.add_argument("--num-points", type=int, default=2000, help="test images in the latent-space plot")
    args = p.parse_args(argv)
    try:
        paths = plot_run(args.run_dir, args.data_dir, args.num_points)
    except PyroVAEError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print("\n".join(str(path) for path in paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
