"""The command line: argparse front ends and the exit-code policy (:mod:`.exits`).

One module per command, each with a ``main(argv=None) -> int``; ``pyro-vae COMMAND`` (``main.py``,
installed by ``pip install``) and ``python scripts/<script>.py`` (thin files that call the same
``main``) are two ways in. Only this layer turns library errors into flag advice and one-line
exits (:func:`pyro_vae.cli.exits.run_command`); nothing below it imports it. Only the public API
(:mod:`pyro_vae.api`) sits above it, and imports nothing from it either.
"""
