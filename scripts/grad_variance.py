#!/usr/bin/env python
"""``python scripts/grad_variance.py FLAGS`` is ``pyro-vae grad-variance FLAGS``: the command lives in
pyro_vae/cli/grad_variance.py; this file keeps the documented path working."""

import sys

from pyro_vae.cli.grad_variance import main

if __name__ == "__main__":
    sys.exit(main())
