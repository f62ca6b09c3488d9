"""``pyro-vae COMMAND [FLAGS]``: the console entry point (``[project.scripts]``), one command per
module of :mod:`pyro_vae.cli`. ``pyro-vae train --help`` shows a command's flags."""

from __future__ import annotations

import importlib
import sys
from typing import Optional

# command -> (module of pyro_vae.cli, the script that runs the same main, what it does)
COMMANDS = {
    "train": ("train", "svi_train.py", "train a VAE and leave a run directory behind"),
    "evaluate": ("evaluate", "evaluate.py", "log p(x) of a run: importance sampling, AIS or BDMC"),
    "plot": ("plot", "plot_run.py", "draw a run's figures"),
    "compare": ("compare", "compare.py", "several runs in one figure and table; --sweep trains them"),
    "reproduce": ("reproduce", "reproduce.py", "the papers' protocols and the reproduction table"),
    "grad-variance": ("grad_variance", "grad_variance.py", "gradient variance and SNR of estimators"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {what}" for name, (_, _, what) in COMMANDS.items()]
    return "usage: pyro-vae COMMAND [FLAGS]  (pyro-vae COMMAND --help for its flags)\n\ncommands:\n" + "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage(), file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"pyro-vae: unknown command {command!r}; choose one of {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    module = importlib.import_module(f"pyro_vae.cli.{COMMANDS[command][0]}")
    sys.argv[0] = f"pyro-vae {command}"  # argparse's usage line names the command as typed
    return module.main(rest)


if __name__ == "__main__":
    sys.exit(main())
