#!/usr/bin/env python
"""``python scripts/compare.py FLAGS`` is ``pyro-vae compare FLAGS``: the command lives in
pyro_vae/cli/compare.py; this file keeps the documented path working."""

import sys

from pyro_vae.cli.compare import main

if __name__ == "__main__":
    sys.exit(main())
