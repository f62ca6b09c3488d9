#!/usr/bin/env python
"""``python scripts/evaluate.py FLAGS`` is ``pyro-vae evaluate FLAGS``: the command lives in
pyro_vae/cli/evaluate.py; this file keeps the documented path working."""

import sys

from pyro_vae.cli.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
