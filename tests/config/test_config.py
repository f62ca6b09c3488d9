import argparse
import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

# The layers that publish the valid names of the keys and the rules only they know (datasets,
# networks, models, priors, objectives, schedules): a config is checked against what is imported,
# as in every program that builds one (the scripts, the public API).
import pyro_vae.data  # noqa: F401
import pyro_vae.infer.objectives  # noqa: F401
import pyro_vae.models  # noqa: F401
import pyro_vae.training.schedule  # noqa: F401
from pyro_vae.config import (
    ALIASES,
    FIELD_TYPES,
    KEYS,
    SECTIONS,
    Config,
    add_config_arguments,
    load_yaml,
    make_config,
    resume_config,
)
from pyro_vae.core.errors import ConfigError
from pyro_vae.models.priors import FlowPrior, build_prior
from pyro_vae.nn.nets import build_nets

REPO = Path(__file__).resolve().parents[2]


def parse(argv):
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    return vars(parser.parse_args(argv))


def test_defaults_are_valid_and_elbo_follows_the_estimator():
    assert make_config() == Config().replace(elbo="trace")
    assert make_config({"estimator": "score"}).objective.elbo == "tracegraph"
    assert make_config({"estimator": "score", "elbo": "trace"}).objective.elbo == "trace"


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_load(path):
    cfg = make_config(config_file=path)
    assert isinstance(cfg, Config)


def test_default_yaml_spells_out_the_defaults():
    assert make_config(config_file=REPO / "configs" / "default.yaml") == make_config()


def test_iwae_paper_architecture():
    cfg = make_config(config_file=REPO / "configs" / "papers" / "burda_1layer_vae_k1.yaml")
    assert (cfg.model.arch, cfg.model.hidden, cfg.model.latent_dim, cfg.model.activation) == \
        ("mlp", [200, 200], [50], "tanh")
    two = make_config(config_file=REPO / "configs" / "papers" / "burda_2layer_vae_k1.yaml")
    assert (two.model.name, two.model.hidden, two.model.upper_hidden, two.model.latent_dim) == \
        ("hvae", [200, 200], [100, 100], [100, 50])


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
    assert make_config(config_file=path).optim.lr == 1e-4


def test_cli_overrides_yaml(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("epochs: 7\nhidden: [10, 20]\nelbo: meanfield\n")
    cfg = make_config(parse(["--epochs", "3", "--hidden", "5", "--no-compile"]), config_file=path)
    assert (cfg.optim.epochs, cfg.model.hidden, cfg.objective.elbo, cfg.run.compile) == (3, [5], "meanfield", False)


def test_only_given_flags_override():
    assert parse([]) == {}
    assert parse(["--no-compile", "--limit-train", "5"]) == {"compile": False, "limit_train": 5}
    assert parse(["--no-jit"]) == parse(["--no-compile"])  # the old name of the flag


def test_old_jit_key_is_the_compile_key(tmp_path):
    """Runs saved before --compile stored ``jit: false`` (Pyro's eager objective): they resume
    eagerly, as they were trained."""
    path = tmp_path / "c.yaml"
    path.write_text("jit: false\n")
    assert make_config(config_file=path).run.compile is False


@pytest.mark.parametrize("overrides, message", [
    ({"elbo": "nope"}, "unknown elbo 'nope'; choose one of: trace, tracegraph, meanfield, iwae, renyi, dreg, stl"),
    ({"dataset": "cifar"}, "unknown dataset 'cifar'"),
    ({"arch": "densenet"}, "unknown arch"),
    ({"device": "tpu"}, "unknown device"),
    ({"epochs": 0}, "epochs must be at least 1"),
    ({"lr": -1.0}, "lr must be positive"),
    ({"arch": "conv", "hidden": []}, "needs at least one hidden layer"),
])
def test_invalid_values_are_refused(overrides, message):
    with pytest.raises(ConfigError, match=message):
        make_config(overrides)


def test_resume_allows_only_harmless_changes():
    saved = Config.from_flat(epochs=2).to_flat()
    cfg = resume_config(saved, {"epochs": 5, "lr": 1e-4}, "runs/a")
    assert (cfg.optim.epochs, cfg.optim.lr, cfg.run.resume, cfg.run.out) == (5, 1e-4, "runs/a", "runs/a")
    assert resume_config(saved, {"hidden": [400, 400]}, "runs/a").model.hidden == [400, 400]  # unchanged
    with pytest.raises(ConfigError, match=r"cannot change arch: 'mlp' -> 'conv'"):
        resume_config(saved, {"arch": "conv"}, "runs/a")
    with pytest.raises(ConfigError, match="out='runs/b' differs from the run being resumed"):
        resume_config(saved, {"out": "runs/b"}, "runs/a")


# Sections -----------------------------------------------------------------------------------------

def test_config_is_made_of_sections_and_reads_and_writes_flat_keys():
    cfg = make_config({"model": "hvae", "prior": "vamp", "prior_components": 7, "lr": 1e-4, "seed": 3})
    assert (cfg.model.name, cfg.prior.name, cfg.prior.components, cfg.optim.lr, cfg.run.seed) == \
        ("hvae", "vamp", 7, 1e-4, 3)
    flat = cfg.to_flat()
    assert list(flat) == list(KEYS) and flat["prior_components"] == 7 and flat["model"] == "hvae"
    assert Config.from_flat(flat) == cfg and cfg.value("prior_df") == cfg.prior.df == Config.default("prior_df")
    assert cfg.replace(lr=0.5, prior="normal").optim.lr == 0.5 and cfg.optim.lr == 1e-4  # a copy
    assert Config.from_flat(latent_dims=3, jit=False).model.latent_dim == [3]  # the old spellings
    with pytest.raises(ConfigError, match="unknown config key 'lrr'.*Did you mean 'lr'"):
        Config.from_flat(lrr=1)


def test_a_run_saved_flat_before_the_sections_opens_unchanged(tmp_path):
    """config.yaml and checkpoints hold flat keys, as every run ever saved did."""
    saved = {"dataset": "mnist", "model": "vae", "hidden": [16], "latent_dim": [2], "prior": "mog",
             "prior_components": 3, "elbo": "trace", "epochs": 2, "lr": 0.001, "jit": False}
    cfg = resume_config(saved, {"epochs": 4}, str(tmp_path))
    assert (cfg.prior.components, cfg.optim.epochs, cfg.run.compile, cfg.run.out) == (3, 4, False, str(tmp_path))
    assert {k: cfg.to_flat()[k] for k in saved if k != "jit"} == {**{k: v for k, v in saved.items() if k != "jit"},
                                                                 "epochs": 4}


# The flat keys as every saved run holds them (the flat Config's fields before the sections).
SAVED_KEYS = ["dataset", "data_dir", "limit_train", "limit_test", "valid_size", "model", "model_options", "arch",
              "hidden", "upper_hidden", "activation", "latent_dim", "logvar_range", "prior", "prior_components",
              "vamp_init", "flow", "flow_depth", "flow_hidden", "prior_df", "prior_options", "elbo", "estimator",
              "baseline", "baseline_beta", "num_particles", "alpha", "compile", "tf32", "epochs", "batch_size",
              "lr", "adam_eps", "adam_betas", "lr_schedule", "lr_schedule_scale", "kl_warmup", "early_stopping", "max_minutes",
              "seed", "eval_samples", "train_elbo", "plots", "tensorboard", "device", "out", "resume",
              "sbn_mapping", "categories", "discrete_prior",  # added with the discrete models
              "relax", "temperature", "temperature_anneal", "temperature_min", "straight_through",
              "labels", "labelled_batch_size", "aux_loss", "quadrants",  # added with the labelled models
              "binarize", "image_size", "channels", "stream", "likelihood", "likelihood_options",
              "mixtures",  # added with the likelihoods and data
              "relax_shift", "baseline_lr_scale"]  # added with the REBAR code's Concrete and NVIL


def test_every_saved_key_is_a_key_of_one_section():
    assert sorted(KEYS) == sorted(FIELD_TYPES) == sorted(SAVED_KEYS) and set(ALIASES) == {"latent_dims", "jit"}
    order = [s.section for s in SECTIONS]
    assert [section for section, _ in KEYS.values()] == sorted((s for s, _ in KEYS.values()), key=order.index)


def test_building_a_config_imports_nothing():
    """``Config()`` is plain data: it imports no layer (the model stack least of all)."""
    code = ("import sys\nfrom pyro_vae.config import Config, make_config\nbefore = set(sys.modules)\n"
            "Config(); Config.from_flat(model='hvae', lr=0.1)\nprint(sorted(set(sys.modules) - before))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)}).stdout
    assert out.strip() == "[]"


def test_config_imports_only_core():
    """The configuration is the lowest layer after core: no module of it imports another layer,
    not even inside a function."""
    upward = []
    for path in sorted((REPO / "pyro_vae" / "config").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module] if isinstance(node, ast.ImportFrom) else \
                [a.name for a in node.names] if isinstance(node, ast.Import) else []
            upward += [(path.name, n) for n in names if n and n.startswith("pyro_vae")
                       and not n.startswith(("pyro_vae.config", "pyro_vae.core"))]
    assert upward == []


def test_builders_take_their_own_section():
    cfg = make_config({"prior": "flow", "flow": "affine", "flow_depth": 2, "latent_dim": 3, "hidden": [8]})
    prior = build_prior(cfg.prior, latent_dim=3)
    assert isinstance(prior, FlowPrior) and len(prior.layers) == 2
    encoder, decoder = build_nets(cfg.model, (1, 28, 28))
    assert encoder.head.out_features == 2 * 3 and decoder.output_layer.out_features == 784
    with pytest.raises(ConfigError, match="prior 'nope': expected one of normal, learned-normal, mog"):
        build_prior(Config.from_flat(prior="nope").prior, latent_dim=2)


@pytest.mark.parametrize("overrides, message", [
    ({"arch": "conv", "activation": "gated", "hidden": [8]},
     "activation 'gated' is not a pointwise nonlinearity, and arch 'conv' needs one"),
    ({"valid_size": 60000}, "valid_size 60000 leaves no training images (60,000 in all)"),
    ({"dataset": "binarized-mnist", "valid_size": 49000}, "has its own validation split (10,000 images)"),
    ({"early_stopping": 3}, "early_stopping watches the validation ELBO, and mnist has no validation split"),
])
def test_rules_ask_the_registered_entries_capabilities(overrides, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        make_config(overrides)


def test_a_registered_family_that_reads_model_options_takes_them():
    from pyro_vae.models import MODELS, register_model

    register_model("my-test-family", options=True)(lambda model, image_shape, prior: None)
    try:
        assert make_config({"model": "my-test-family", "model_options": {"width": 3}}).model.options == {"width": 3}
    finally:
        MODELS.remove("my-test-family")
    with pytest.raises(ConfigError, match="model_options are for user-defined models; model 'vae'"):
        make_config({"model": "vae", "model_options": {"width": 3}})
