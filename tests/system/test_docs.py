"""The docs (README.md, the front page, and the pages of docs/) document every config key and
flag, their links lead somewhere, their examples are the files the tests run, and their Python
examples run."""

import dataclasses
import re
from pathlib import Path

import pytest

import pyro_vae.models  # noqa: F401  (publishes the families, whose defaults the table shows)
from pyro_vae.config import FIELDS
from pyro_vae.config.table import BEGIN, END, configuration_table

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()
PAGES = {p.name: p.read_text() for p in sorted((REPO / "docs").glob("*.md"))}
DOCS = "\n".join([README, *PAGES.values()])


@pytest.mark.parametrize("name", list(FIELDS))
def test_every_config_key_is_documented_once(name):
    flag = "--" + name.replace("_", "-")
    assert PAGES["configuration.md"].count(f"| `{name}` / `{flag}`") == 1


def test_the_configuration_table_is_generated_from_the_sections():
    """The table between the markers is what the sections' fields make, so the two cannot drift.
    To rewrite it: python -c "import pyro_vae.models; from pyro_vae.config.table import
    write_table; write_table('docs/configuration.md')"."""
    page = PAGES["configuration.md"]
    assert page.count(BEGIN) == 1 and page.count(END) == 1
    assert BEGIN + page.split(BEGIN, 1)[1].split(END, 1)[0] + END == configuration_table()


def test_quick_start_has_the_three_commands():
    quick = README.split("## Quick start", 1)[1].split("##", 1)[0]
    for command in ('pip install -e ".[dev]"', "python scripts/svi_train.py", "pytest"):
        assert command in quick


@pytest.mark.parametrize("heading, path", [("### Your own prior", "examples/custom_prior.py"),
                                           ("### Your own model", "examples/custom_model.py")])
def test_the_docs_examples_are_the_tested_files(heading, path):
    section = PAGES["models.md"].split(heading, 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert code == (REPO / path).read_text()


@pytest.mark.parametrize("command", sorted(p.stem for p in (REPO / "pyro_vae" / "cli").glob("*.py")
                                            if p.stem not in ("__init__", "main")))
def test_every_command_flag_is_in_the_docs(command):
    flags = re.findall(r'add_argument\(\s*"(--[a-z0-9-]+)"', (REPO / "pyro_vae" / "cli" / f"{command}.py").read_text())
    assert [f for f in flags if f not in DOCS] == []


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


def test_the_front_page_is_short_and_links_every_page():
    assert README.count("\n") < 200
    linked = set(re.findall(r"\]\(docs/([a-z-]+\.md)", README))
    assert linked == set(PAGES)


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@pytest.mark.parametrize("name", ["README.md", *(f"docs/{p}" for p in PAGES)])
def test_every_link_leads_to_a_file_and_heading_that_exist(name):
    path = REPO / name
    text = path.read_text()
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+://", target):
            continue
        file, _, anchor = target.partition("#")
        linked = (path.parent / file).resolve() if file else path
        if not linked.exists():
            broken.append(target)
        elif anchor and linked.suffix == ".md":
            headings = re.findall(r"^#+ (.*)$", linked.read_text(), re.M)
            if anchor not in {_slug(h) for h in headings}:
                broken.append(target)
    assert broken == []


# Each Python example with sizes that take seconds: (what the page says, what the test runs).
TINY = [('"epochs": 5', '"epochs": 1, "limit_train": 64, "limit_test": 16, "batch_size": 32, "plots": False'),
        ('"hidden": [200, 200], "latent_dim": 50', '"hidden": [16], "latent_dim": 2'),
        ("num_samples=5000, limit=1000", "num_samples=10, limit=8"),
        ("num_samples=1000, limit=1000", "num_samples=10, limit=8"),
        ("data.test[:1000], num_samples=1000", "data.test[:8], num_samples=10"),
        ('labels=100, elbo="traceenum", aux_loss=46, epochs=5', 'labels=10, elbo="traceenum", aux_loss=46, epochs=1, '
                                                                'batch_size=32, hidden=[16], latent_dim=2, plots=False'),
        ("data.test_labels[:1000]", "data.test_labels[:8]"),
        ('ais_run("runs/a", limit=100)', 'ais_run("runs/a", limit=2, num_steps=3, num_chains=2, num_leapfrog=2)'),
        ("limit_train=10_000", "limit_train=64, limit_test=16"),
        ("torch.arange(128)", "torch.arange(32)"),
        # the public API's keyword arguments (pyro_vae.train, log_likelihood, ais)
        ('pv.load_dataset("mnist")', 'pv.load_dataset("mnist", limit_train=64, limit_test=16)'),
        ("hidden=[200, 200], latent_dim=50", "hidden=[16], latent_dim=2"),
        ("epochs=5", "epochs=1, batch_size=32, plots=False"),
        ("eval_samples=1000", "eval_samples=10"),
        ("data.test[:1000], num_samples=5000", "data.test[:8], num_samples=10"),
        ("pv.ais(run.model, data.test[:100])", "pv.ais(run.model, data.test[:2], num_steps=3, num_chains=2, "
                                               "num_leapfrog=2)")]


def _python_blocks(text: str) -> str:
    code = "\n".join(re.findall(r"```python\n(.*?)```", text, re.S))
    for shown, tested in TINY:
        code = code.replace(shown, tested)
    return code


@pytest.mark.parametrize("name", ["README.md", "docs/python-api.md"])
def test_the_python_examples_run(name, data_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYRO_VAE_DATA", data_dir)
    import pyro_vae as pv
    from pyro_vae.core.choices import choices
    from pyro_vae.core.registry import Registry

    pv.load_dataset  # the owners are imported: every registry is published
    code = _python_blocks((REPO / name).read_text())
    assert code.count("\n") >= 5
    registries = [choices(key) for key in ("dataset", "arch", "activation", "model", "prior", "elbo", "lr_schedule")]
    before = {registry: registry.names() for registry in registries if isinstance(registry, Registry)}
    try:
        exec(compile("import torch\n" + code, name, "exec"), {"__name__": "docs_example"})
    finally:  # what the examples register is gone again: the other tests see the shipped names
        for registry, names in before.items():
            for added in set(registry.names()) - set(names):
                registry.remove(added)
    assert (tmp_path / "runs" / "a" / "eval.json").is_file()


@pytest.mark.parametrize("key, field", [pytest.param(k, f, id=k) for k, f in FIELDS.items() if f.default is not None])
def test_the_configuration_table_states_each_default_as_config_has_it(key, field):
    """The table's default column is checked against the sections' fields (a default of None is
    described in words: "all", "none", per model)."""
    import yaml

    default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
    row = re.search(rf"^\| `{key}` / `--[\w-]+`[^|]* \| `([^`]*)` \|", PAGES["configuration.md"], re.M)
    assert row is not None, f"no row with a literal default for {key}"
    shown = yaml.safe_load(row.group(1))
    if isinstance(default, float) and isinstance(shown, str):
        shown = float(shown)  # YAML 1.1 reads 1e-3 as a string; pyro-vae's flags take it as a number
    assert shown == default
