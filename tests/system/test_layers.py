"""The package's layers: imports flow one way, from each subpackage to the ones below it.

The order is docs/contributing.md's package map (lowest first). A module that imports a layer
above its own would tie the foundation to what is built on it: the reason a new model family
can land as new files instead of edits everywhere. Imports inside functions count too.
"""

import ast
from pathlib import Path

import pyro_vae

PACKAGE = Path(pyro_vae.__file__).parent
LAYERS = ["core", "config", "data", "nn", "models", "infer", "runs", "evaluation", "viz",
          "training", "studies", "cli", "api"]


def imported_layers(path: Path) -> set[str]:
    layers = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else \
            [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
        for name in names:
            parts = name.split(".")
            if parts[0] == "pyro_vae" and len(parts) > 1:
                layers.add(parts[1])
    return layers


def test_every_module_lives_in_a_layer():
    loose = [p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py"]
    unknown = [p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name not in LAYERS
               and p.name != "__pycache__"]
    assert loose == [] and unknown == []


def test_no_module_imports_a_layer_above_its_own():
    upward = []
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE)
        if len(relative.parts) == 1:  # pyro_vae/__init__.py: the public API, the top
            continue
        own = LAYERS.index(relative.parts[0])
        upward += [(str(relative), layer) for layer in imported_layers(path)
                   if layer in LAYERS and LAYERS.index(layer) > own]
    assert upward == []


def test_the_layer_test_sees_an_upward_import(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from pyro_vae.training.trainer import Trainer\n")
    assert imported_layers(module) == {"training"}
