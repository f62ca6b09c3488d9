"""The one registry mechanism, and a part registered from outside the package usable by name
through the ordinary entry points, for every kind (a new part is a new file plus a registration)."""

import argparse
import ast
from pathlib import Path

import pyro.distributions as dist
import pytest
import torch
from support import train_tiny_run
from torch import nn

from pyro_vae.config import add_config_arguments, make_config
from pyro_vae.core.errors import ConfigError
from pyro_vae.core.registry import Registry
from pyro_vae.data import DATASETS, VAEData, load_dataset, register_dataset
from pyro_vae.models import MODELS, register_model
from pyro_vae.models.priors import PRIORS, register_prior
from pyro_vae.nn.nets import ARCHITECTURES, networks
from pyro_vae.training.schedule import LR_SCHEDULES, learning_rate


def widgets() -> Registry:
    registry = Registry("widget", fast=False)
    registry.register("a", lambda: 1, description="the first")
    registry.register("b", lambda: 2, fast=True)
    return registry


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


def test_decorator_and_call_forms_register_and_return_the_factory():
    registry = widgets()

    @registry.register("c", fast=True)
    def make_c():
        """A c, from its docstring.

        More text that is not the description."""
        return 3

    assert make_c() == 3 and registry.get("c").factory is make_c
    assert registry.get("c").description == "A c, from its docstring."
    assert registry.get("a").factory() == 1 and registry.get("a").description == "the first"


def test_names_are_in_registration_order():
    registry = widgets()
    registry.register("0-last", lambda: 0)
    assert registry.names() == ("a", "b", "0-last") and list(registry) == ["a", "b", "0-last"]
    assert "a" in registry and "z" not in registry and 3 not in registry and len(registry) == 3
    assert registry.describe().splitlines() == ["a: the first", "b", "0-last"]


def test_capabilities_have_defaults_and_read_back():
    registry = widgets()
    assert registry.get("a").capabilities == {"fast": False}
    assert registry.get("b").capabilities == {"fast": True}
    with pytest.raises(ConfigError) as error:
        registry.register("c", lambda: 3, fats=True)
    assert one_line(error) == "widget 'c': unknown capabilities fats; a widget has fast"
    assert "c" not in registry


def test_a_duplicate_name_is_refused_unless_replace():
    registry = widgets()
    with pytest.raises(ConfigError) as error:
        registry.register("a", lambda: 10)
    assert "widget 'a' is registered already" in one_line(error) and "replace=True" in str(error.value)
    assert registry.get("a").factory() == 1
    registry.register("a", lambda: 10, replace=True)
    assert registry.get("a").factory() == 10 and registry.names() == ("a", "b")  # keeps its place


def test_an_unknown_name_lists_the_valid_ones_in_one_line():
    registry = widgets()
    with pytest.raises(ConfigError) as error:
        registry.get("x")
    assert one_line(error) == "unknown widget 'x'; choose one of: a, b"
    with pytest.raises(ConfigError) as error:
        registry.get("x" * 100_000)
    assert len(one_line(error)) < 200
    with pytest.raises(ConfigError, match="unknown widget 'x'"):
        registry.remove("x")


@pytest.mark.parametrize("name", ["", "pkg.mod:Name", " a", None])
def test_a_name_that_is_not_a_plain_name_is_refused(name):
    with pytest.raises(ConfigError, match="must be a non-empty string without ':'"):
        widgets().register(name, lambda: 0)


def test_remove_unregisters():
    registry = widgets()
    assert registry.remove("a").description == "the first"
    assert registry.names() == ("b",)


@pytest.mark.parametrize("name, allowed", [("registry.py", ["pyro_vae.core.errors"]), ("choices.py", [])])
def test_the_registry_and_the_published_choices_are_the_bottom_layer(name, allowed):
    tree = ast.parse((Path(__file__).parents[2] / "pyro_vae" / "core" / name).read_text())
    inner = [node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
             and (node.level or node.module.startswith("pyro_vae"))]
    assert inner == allowed


# --- a registration from outside the package, used by name through the ordinary entry points ---

@pytest.fixture
def registered():
    """``registered(registry, name, factory, **options)``: registers for this test only."""
    added = []

    def register(registry, name, factory, **options):
        registry.register(name, factory, **options)
        added.append((registry, name))
        return factory

    yield register
    for registry, name in added:
        registry.remove(name)


class WideNormal(nn.Module):
    """N(0, scale^2 I): a prior of the test's own."""

    def __init__(self, latent_dim: int, scale: float = 1.0):
        super().__init__()
        self.register_buffer("loc", torch.zeros(latent_dim))
        self.register_buffer("scale", torch.full((latent_dim,), float(scale)))

    def forward(self):
        return dist.Normal(self.loc, self.scale).to_event(1)


def test_a_registered_prior_trains_by_name(data_dir, tmp_path):
    built = []

    @register_prior("my-test-prior", description="a test's prior", options=True)
    def _wide(prior, latent_dim, x_dim):  # prior: the config's prior section
        built.append((latent_dim, x_dim))
        return WideNormal(latent_dim, **prior.options)

    try:
        train_tiny_run(data_dir, tmp_path / "run", prior="my-test-prior", prior_options={"scale": 2.0})
        assert built and built[0] == (2, 784)
        with pytest.raises(ConfigError, match="prior_options are for user-defined priors"):
            make_config({"prior": "normal", "prior_options": {"scale": 2.0}})
    finally:
        PRIORS.remove("my-test-prior")
    with pytest.raises(ConfigError, match="unknown prior 'my-test-prior'; choose one of: normal,"):
        make_config({"prior": "my-test-prior"})


def tiny_data(name="my-test-data"):
    generator = torch.Generator().manual_seed(0)
    return VAEData(name, torch.rand(80, 784, generator=generator),
                   torch.rand(20, 784, generator=generator).bernoulli(generator=generator),
                   dynamic_binarization=True)


def test_a_registered_dataset_loads_and_trains_by_name(data_dir, tmp_path):
    calls = []

    def load(root, download, valid_size, log):
        calls.append((Path(root), valid_size))
        return tiny_data()

    register_dataset("my-test-data", description="80 random images")(load)
    try:
        data = load_dataset("my-test-data", data_dir=str(tmp_path), limit_train=8)
        assert data.train.shape == (8, 784) and data.test.shape == (20, 784)
        assert calls == [(tmp_path, None)]
        train_tiny_run(data_dir, tmp_path / "run", dataset="my-test-data")
        with pytest.raises(ConfigError, match="unknown dataset 'nope'; choose one of: mnist, "
                                              "binarized-mnist, fashion-mnist, cifar10, omniglot, my-test-data"):
            make_config({"dataset": "nope"})
    finally:
        DATASETS.remove("my-test-data")


def test_a_dataset_with_its_own_validation_split_refuses_valid_size(registered):
    registered(DATASETS, "my-test-data", lambda *args: tiny_data(), validation=20)
    with pytest.raises(ConfigError, match=r"my-test-data has its own validation split \(20 images\)"):
        make_config({"dataset": "my-test-data", "valid_size": 10})


def test_a_loader_that_returns_no_vaedata_is_refused(registered):
    registered(DATASETS, "my-test-data", lambda *args: torch.zeros(3))
    with pytest.raises(ConfigError, match="dataset 'my-test-data': its loader returned Tensor, not VAEData"):
        load_dataset("my-test-data")


def test_a_registered_model_trains_by_name(data_dir, tmp_path):
    @register_model("my-test-model", description="the vae, registered again",
                    defaults={"activation": "tanh"}, ignores=MODELS.get("vae").capabilities["ignores"])
    def _mine(model, image_shape, prior):  # model: the config's model section
        return MODELS.get("vae").factory(model, image_shape, prior)

    try:
        assert make_config({"model": "my-test-model"}).model.activation == "tanh"
        train_tiny_run(data_dir, tmp_path / "run", model="my-test-model")
        with pytest.raises(ConfigError, match="has 1 latent layer"):
            make_config({"model": "my-test-model", "latent_dim": [4, 2]})
    finally:
        MODELS.remove("my-test-model")


def test_a_registered_architecture_builds_by_name(registered):
    registered(ARCHITECTURES, "my-test-arch", lambda *args: (nn.Identity(), nn.Identity()))
    cfg = make_config({"arch": "my-test-arch"})
    encoder, _ = networks(cfg.model.arch, (1, 28, 28), [4], 2, "relu")
    assert isinstance(encoder, nn.Identity)


def test_a_registered_schedule_is_a_valid_choice(registered):
    registered(LR_SCHEDULES, "halved", lambda base_lr, epoch, scale: base_lr / 2)
    assert make_config({"lr_schedule": "halved"}).optim.lr_schedule == "halved"
    assert learning_rate("halved", 0.1, 3) == 0.05


def test_help_lists_the_registered_names(registered):
    registered(PRIORS, "my-test-prior", lambda prior, latent_dim, x_dim: WideNormal(latent_dim))
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    helps = {action.dest: action.help for action in parser._actions}
    assert helps["prior"].startswith("normal | learned-normal | mog") and "| my-test-prior |" in helps["prior"]
    assert helps["elbo"].startswith("trace | tracegraph | meanfield | iwae | renyi | dreg | stl | vimco | arm | disarm | rebar | relax | traceenum (default")
    assert helps["dataset"] == ("mnist | binarized-mnist | fashion-mnist | cifar10 | omniglot | path/to/file.npz | "
                                "path/to/folder")
