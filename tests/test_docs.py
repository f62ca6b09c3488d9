"""The README documents every config key and flag (in its configuration table), and its
examples are the files the tests run."""

import dataclasses
import re
from pathlib import Path

import pytest

from pyro_vae.config import Config

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


@pytest.mark.parametrize("name", [f.name for f in dataclasses.fields(Config)])
def test_every_config_key_is_documented(name):
    flag = "--" + name.replace("_", "-")
    assert f"| `{name}` / `{flag}`" in README


def test_quick_start_has_the_three_commands():
    quick = README.split("## Quick start", 1)[1].split("##", 1)[0]
    for command in ('pip install -e ".[dev]"', "python scripts/svi_train.py", "pytest"):
        assert command in quick


@pytest.mark.parametrize("heading, path", [("### Your own prior", "examples/custom_prior.py"),
                                           ("### Your own model", "examples/custom_model.py")])
def test_readme_examples_are_the_tested_files(heading, path):
    section = README.split(heading, 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert code == (REPO / path).read_text()


@pytest.mark.parametrize("script", sorted(p.stem for p in (REPO / "scripts").glob("*.py")))
def test_every_script_flag_is_in_the_readme(script):
    flags = re.findall(r'add_argument\(\s*"(--[a-z0-9-]+)"', (REPO / "scripts" / f"{script}.py").read_text())
    assert [f for f in flags if f not in README] == []


def test_the_tested_floors_are_pyproject_floors():
    """.ci/run's floors job installs .ci/floors.txt: it tests what pyproject.toml claims only if
    every dependency's ``>=`` floor there is pinned ``==`` here, and nothing else is."""
    pyproject = (REPO / "pyproject.toml").read_text()
    claimed = dict(re.findall(r'^\s*"([A-Za-z0-9_-]+)>=([0-9.]+)",?\s*$', pyproject, re.M))
    claimed.update(re.findall(r'"([A-Za-z0-9_-]+)>=([0-9.]+)"', pyproject.split("dev = [", 1)[1].split("]", 1)[0]))
    floors = (REPO / ".ci" / "floors.txt").read_text()
    pinned = dict(re.findall(r"^([A-Za-z0-9_-]+)==([0-9.]+)\s*$", floors, re.M))
    assert pinned == claimed and len(claimed) >= 9
    python = re.search(r'requires-python = ">=3\.(\d+)"', pyproject).group(1)
    assert f"PYENV_VERSION=3.{python}." in (REPO / ".ci" / "run").read_text()
