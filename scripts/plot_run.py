#!/usr/bin/env python
"""``python scripts/plot_run.py FLAGS`` is ``pyro-vae plot FLAGS``: the command lives in
pyro_vae/cli/plot.py; this file keeps the documented path working."""

import sys

from pyro_vae.cli.plot import main

if __name__ == "__main__":
    sys.exit(main())
