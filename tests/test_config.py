import argparse
import dataclasses
from pathlib import Path

import pytest

from pyro_vae.config import Config, add_config_arguments, load_yaml, make_config, resume_config
from pyro_vae.core.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def parse(argv):
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    return vars(parser.parse_args(argv))


def test_defaults_are_valid_and_elbo_follows_the_estimator():
    assert make_config() == dataclasses.replace(Config(), elbo="trace")
    assert make_config({"estimator": "score"}).elbo == "tracegraph"
    assert make_config({"estimator": "score", "elbo": "trace"}).elbo == "trace"


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_load(path):
    cfg = make_config(config_file=path)
    assert isinstance(cfg, Config)


def test_default_yaml_spells_out_the_defaults():
    assert make_config(config_file=REPO / "configs" / "default.yaml") == make_config()


def test_iwae_paper_architecture():
    cfg = make_config(config_file=REPO / "configs" / "papers" / "burda_1layer_vae_k1.yaml")
    assert (cfg.arch, cfg.hidden, cfg.latent_dim, cfg.activation) == ("mlp", [200, 200], [50], "tanh")
    two = make_config(config_file=REPO / "configs" / "papers" / "burda_2layer_vae_k1.yaml")
    assert (two.model, two.hidden, two.upper_hidden, two.latent_dim) == ("hvae", [200, 200], [100, 100], [100, 50])


def test_unknown_yaml_key_is_named_with_a_suggestion(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("latent_dimm: 3\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'latent_dimm'.*'latent_dim'"):
        load_yaml(path)


@pytest.mark.parametrize("text, key", [("epochs: ten\n", "epochs"), ("compile: 1\n", "compile"),
                                       ("hidden: [1.5]\n", "hidden"), ("batch_size: 3.0\n", "batch_size")])
def test_wrong_type_is_named(tmp_path, text, key):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=f"'{key}' must be"):
        load_yaml(path)


def test_yaml_scientific_notation_string_is_a_number(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("lr: 1e-4\n")  # PyYAML reads this as the string '1e-4'
    assert make_config(config_file=path).lr == 1e-4


def test_cli_overrides_yaml(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("epochs: 7\nhidden: [10, 20]\nelbo: meanfield\n")
    cfg = make_config(parse(["--epochs", "3", "--hidden", "5", "--no-compile"]), config_file=path)
    assert (cfg.epochs, cfg.hidden, cfg.elbo, cfg.compile) == (3, [5], "meanfield", False)


def test_only_given_flags_override():
    assert parse([]) == {}
    assert parse(["--no-compile", "--limit-train", "5"]) == {"compile": False, "limit_train": 5}
    assert parse(["--no-jit"]) == parse(["--no-compile"])  # the old name of the flag


def test_old_jit_key_is_the_compile_key(tmp_path):
    """Runs saved before --compile stored ``jit: false`` (Pyro's eager objective): they resume
    eagerly, as they were trained."""
    path = tmp_path / "c.yaml"
    path.write_text("jit: false\n")
    assert make_config(config_file=path).compile is False


@pytest.mark.parametrize("overrides, message", [
    ({"elbo": "nope"}, "unknown elbo 'nope'; choose one of: trace, tracegraph, meanfield, iwae, renyi, dreg, stl"),
    ({"dataset": "cifar"}, "unknown dataset 'cifar'"),
    ({"arch": "resnet"}, "unknown arch"),
    ({"device": "tpu"}, "unknown device"),
    ({"epochs": 0}, "epochs must be at least 1"),
    ({"lr": -1.0}, "lr must be positive"),
    ({"arch": "conv", "hidden": []}, "needs at least one hidden layer"),
])
def test_invalid_values_are_refused(overrides, message):
    with pytest.raises(ConfigError, match=message):
        make_config(overrides)


def test_resume_allows_only_harmless_changes():
    saved = Config(epochs=2).to_dict()
    cfg = resume_config(saved, {"epochs": 5, "lr": 1e-4}, "runs/a")
    assert (cfg.epochs, cfg.lr, cfg.resume, cfg.out) == (5, 1e-4, "runs/a", "runs/a")
    assert resume_config(saved, {"hidden": [400, 400]}, "runs/a").hidden == [400, 400]  # unchanged
    with pytest.raises(ConfigError, match=r"cannot change arch: 'mlp' -> 'conv'"):
        resume_config(saved, {"arch": "conv"}, "runs/a")
    with pytest.raises(ConfigError, match="--out runs/b differs from the run being resumed"):
        resume_config(saved, {"out": "runs/b"}, "runs/a")
