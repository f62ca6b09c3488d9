"""The command line: argparse front ends and the exit-code policy, the top layer of the package.

One module per command, each with a ``main(argv=None) -> int``; ``pyro-vae COMMAND`` (``main.py``,
installed by ``pip install``) and ``python scripts/<script>.py`` (thin files that call the same
``main``) are two ways in. Only this layer turns library errors into flag advice and one-line
exits (:func:`pyro_vae.core.console.run_command`); nothing below it imports it.
"""
