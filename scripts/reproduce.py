#!/usr/bin/env python
"""``python scripts/reproduce.py FLAGS`` is ``pyro-vae reproduce FLAGS``: the command lives in
pyro_vae/cli/reproduce.py; this file keeps the documented path working."""

import sys

from pyro_vae.cli.reproduce import main

if __name__ == "__main__":
    sys.exit(main())
