#!/usr/bin/env python
"""``python scripts/svi_train.py FLAGS`` is ``pyro-vae train FLAGS``: the command lives in
pyro_vae/cli/train.py; this file keeps the documented path working."""

import sys

from pyro_vae.cli.train import main

if __name__ == "__main__":
    sys.exit(main())
