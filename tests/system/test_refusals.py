"""Inputs that make no sense are refused up front, with one line, and nothing is written; a flag
that nothing would read is refused, never silently dropped (issue 23, classes 5 and 6).

The scripts run in this process through their ``main(argv)`` (see conftest.run_script). Each
case checks the exact key phrase of the message, that it is one line without a traceback, and
that nothing appeared: no run directory, no evaluation file, nothing in the working directory.
"""

import ast
import re
import sys
import textwrap
import time
import tracemalloc
from pathlib import Path

import pytest
from support import REPO, assert_one_line_error, quiet, run_script, train_tiny_run

from pyro_vae.cli.compare import plan_sweep, read_sweep
from pyro_vae.config import FIELD_TYPES, Config, make_config, read_yaml, replaced, resume_config, saved_config
from pyro_vae.core import workload
from pyro_vae.core.errors import ConfigError
from pyro_vae.evaluation import DEFAULT_AIS_STEPS, DEFAULT_BDMC_IMAGES
from pyro_vae.models import build_model
from pyro_vae.models.priors import PRIORS, FlowPrior
from pyro_vae.runs import RunDir
from pyro_vae.studies import spec_config
from pyro_vae.training.trainer import train


@pytest.fixture(scope="module")
def trained(data_dir, tmp_path_factory) -> Path:
    return train_tiny_run(data_dir, tmp_path_factory.mktemp("refusals") / "run")


@pytest.fixture
def registered_prior():
    """A prior registered for one test, reading the flow prior's knobs, for latent layers >= 3."""
    name = "my-test-flow"
    PRIORS.register(name, lambda prior, latent_dim, x_dim: FlowPrior(latent_dim, prior.flow, prior.flow_depth),
                    reads=("flow", "flow_depth"), min_latent=3)
    yield name
    PRIORS.remove(name)


@pytest.fixture
def empty_cwd(tmp_path, monkeypatch) -> Path:
    """A fresh, empty working directory: whatever a refused command wrote there would show."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return cwd


def files_in(directory: Path) -> set[str]:
    return {str(p.relative_to(directory)) for p in directory.rglob("*")}


# Empty paths ----------------------------------------------------------------------------------

@pytest.mark.parametrize("script, args, message", [
    ("svi_train", ["--out", ""], "argument --out: is empty (''); name a directory, or leave it out for runs/<timestamp>"),
    ("svi_train", ["--resume", ""], "argument --resume: is empty (''); name a directory, or leave it out for a new run"),
    ("svi_train", ["--resume", " "], "argument --resume: is empty (' ')"),
    ("svi_train", ["--data-dir", ""], "argument --data-dir: is empty (''); name a directory"),
    ("evaluate", [""], "argument run_dir: is empty (''); name a directory"),
    ("evaluate", ["{run}", "--out", ""], "argument --out: is empty (''); name a directory, or leave it out for the run directory"),
    ("evaluate", ["{run}", "--data-dir", ""], "argument --data-dir: is empty ('')"),
    ("plot_run", [""], "argument run_dir: is empty (''); name a directory"),
    ("plot_run", ["{run}", "--data-dir", ""], "argument --data-dir: is empty ('')"),
    ("grad_variance", [""], "argument run_dir: is empty (''); name a directory"),
    ("grad_variance", ["{run}", "--out", ""], "argument --out: is empty (''); name a directory, or leave it out for the run directory"),
    ("grad_variance", ["--init", "--out", ""], "argument --out: is empty ('')"),
])
def test_empty_paths_are_refused_by_every_script(capsys, trained, empty_cwd, script, args, message):
    before = files_in(trained)
    status, stderr = run_script(capsys, script, *(a.format(run=trained) for a in args))
    assert_one_line_error(status, stderr, message)
    assert files_in(empty_cwd) == set() and files_in(trained) == before


@pytest.mark.parametrize("key, flag, message", [
    ("out", "--out", "is empty (''); name a directory, or leave it out for runs/<timestamp>"),
    ("resume", "--resume", "is empty (''); name a directory, or leave it out for a new run"),
    ("data_dir", "--data-dir", "is empty ('')"),
])
def test_empty_paths_are_refused_in_the_python_api_and_in_config_files(capsys, empty_cwd, key, flag, message):
    """The key as the reader types it: a keyword argument in Python, a flag in a command."""
    with pytest.raises(ConfigError, match=re.escape(f"{key} {message}")):
        train({key: ""}, log=quiet, progress=False)
    config = empty_cwd.parent / "c.yaml"
    config.write_text(f"{key}: ''\n")
    assert_one_line_error(*run_script(capsys, "svi_train", "--config", config), f"{flag} {message}")
    with pytest.raises(ConfigError, match="holds a NUL byte"):
        make_config({key: "runs/a\0b"})
    assert files_in(empty_cwd) == set()


# Counts -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("script, args, message", [
    ("svi_train", ["--num-particles", "0"], "num_particles must be at least 1, got 0"),
    ("svi_train", ["--num-particles", "-2"], "num_particles must be at least 1, got -2"),
    ("grad_variance", ["{run}", "--num-particles", "0"], "--num-particles must be at least 2 (the K of a multi-sample bound), got 0"),
    ("grad_variance", ["{run}", "--num-particles", "1"], "--num-particles must be at least 2"),
    ("grad_variance", ["--init", "--num-particles", "-1"], "--num-particles must be at least 2"),
    ("evaluate", ["{run}", "--num-samples", "0"], "--num-samples must be at least 1"),
    ("evaluate", ["{run}", "--method", "ais", "--ais-chains", "0"], "--ais-chains must be at least 1"),
])
def test_counts_below_one_are_refused(capsys, trained, empty_cwd, script, args, message):
    before = files_in(trained)
    assert_one_line_error(*run_script(capsys, script, *(a.format(run=trained) for a in args)), message)
    assert files_in(empty_cwd) == set() and files_in(trained) == before


# Absurd time or memory --------------------------------------------------------------------------

EIGHT_GIB = 8 * 2**30


@pytest.fixture
def eight_gib(monkeypatch):
    """This machine has 8 GiB of memory, whatever it really has: messages do not depend on it."""
    monkeypatch.setattr(workload, "machine_memory", lambda: EIGHT_GIB)


@pytest.fixture
def no_evaluation(monkeypatch):
    """An evaluation that gets past the check fails the test at once instead of running."""
    def refused_before(*_args, **_kwargs):
        raise AssertionError("the evaluation started: it should have been refused")

    for name in ("evaluate_run", "ais_run", "bdmc_run"):  # where the command looks them up
        monkeypatch.setattr(f"pyro_vae.cli.evaluate.{name}", refused_before)


@pytest.mark.parametrize("args, message", [
    (["--num-samples", "1000000000"],
     "--num-samples 1000000000 on 10,000 images is 1.0e13 model evaluations: at least 116 days on cpu "
     "even at an optimistic 1,000,000 per second, more than the 24 hours pyro-vae starts without "
     "asking. If you mean it, add --allow-long; else lower --num-samples or --limit"),
    (["--method", "ais", "--ais-steps", "10000000", "--limit", "200"],
     "--method ais on 200 images with 10000000 steps, 16 chains and 10 leapfrog steps is 3.2e11 model "
     "evaluations: at least 3.7 days on cpu even at an optimistic 1,000,000 per second"),
    (["--method", "bdmc", "--limit", "1000000", "--ais-steps", "1000"],
     "--method bdmc on 1,000,000 images with 1000 steps, 16 chains and 10 leapfrog steps each way is "
     "3.2e11 model evaluations"),
    (["--num-samples", "100000000000", "--limit", "1", "--allow-long"],
     "--num-samples 100000000000 keeps 1.0e11 log-weights per image for a batch of 1 image, which needs "
     "at least 1.46 TiB of memory at once, more than this machine's 8 GiB; lower --num-samples"),
    (["--num-samples", "10000000", "--limit", "1000"],
     "for a batch of 100 images, which needs at least 14.9 GiB of memory at once, more than this "
     "machine's 8 GiB; use --batch-size 53 or less"),
    (["--method", "ais", "--ais-chains", "1000000", "--limit", "1", "--ais-steps", "1"],
     "--ais-chains 1000000: one image's chains, which needs at least 17.5 GiB of memory at once, more "
     "than this machine's 8 GiB; lower --ais-chains"),
    (["--method", "bdmc", "--limit", "10000000", "--ais-steps", "1", "--ais-chains", "1", "--leapfrog", "1"],
     "--limit 10000000: the simulated images, which needs at least 29.2 GiB of memory at once"),
])
def test_absurd_evaluations_are_refused_with_their_cost(capsys, trained, eight_gib, no_evaluation, args, message):
    before = files_in(trained)
    started = time.perf_counter()
    assert_one_line_error(*run_script(capsys, "evaluate", trained, "--device", "cpu", *args), message)
    assert time.perf_counter() - started < 5  # refused before the run or the data are opened
    assert files_in(trained) == before  # no eval file, no lock left behind


def test_allow_long_goes_ahead(capsys, tmp_path, eight_gib):
    """With --allow-long the same command passes the check and goes on to open the run (here:
    a directory with no run, so that nothing runs for eleven days)."""
    args = [tmp_path / "nothing", "--device", "cpu", "--num-samples", "100000000", "--batch-size", "1"]
    assert_one_line_error(*run_script(capsys, "evaluate", *args), "is 1.0e12 model evaluations: at least "
                                                             "11.6 days on cpu")
    assert_one_line_error(*run_script(capsys, "evaluate", *args, "--allow-long"), "no checkpoint at")


def test_defaults_and_the_readmes_examples_are_far_below_the_limits():
    """The docs say so: 100 times the work of each default or example still passes."""
    slack = 100
    cpu_steps, cuda_steps = DEFAULT_AIS_STEPS["cpu"], DEFAULT_AIS_STEPS["cuda"]
    for device, images, k in (("cpu", 10_000, 5000), ("cpu", 60_000, 5000), ("cuda", 60_000, 5000)):
        workload.check_duration(slack * images * k, "iwae", device, "")
    for device, method, images, steps in (("cpu", "ais", 10_000, cpu_steps), ("cuda", "ais", 10_000, cuda_steps),
                                          ("cpu", "ais", 200, 1000), ("cpu", "bdmc", DEFAULT_BDMC_IMAGES, cpu_steps),
                                          ("cpu", "bdmc", 200, 1000)):
        workload.check_duration(slack * (2 if method == "bdmc" else 1) * images * 16 * steps * 10, method, device, "")
    workload.check_iwae(5000, 10_000, 100, "cpu")  # and their memory fits any machine
    workload.check_ais("ais", 10_000, cpu_steps, 16, 10, "cpu")
    with pytest.raises(ConfigError, match="pass allow_long=True"):
        workload.check_duration(1e13, "x", "cpu", "")
    workload.check_duration(1e13, "x", "cpu", "", allow_long=True)


@pytest.mark.parametrize("args, message", [
    (["--eval-samples", "1000000000"],
     "--eval-samples 1000000000 on 10,000 images is 1.0e13 model evaluations: at least 116 days on cpu "
     "even at an optimistic 1,000,000 per second, more than the 24 hours pyro-vae starts without "
     "asking. If you mean it, evaluate after training with scripts/evaluate.py --allow-long; else "
     "lower --eval-samples or --limit-test"),
    (["--hidden", "1000000000000"],
     "a model with about 1.7e15 parameters (hidden [1000000000000], latent_dim [50]) with its "
     "gradients and Adam's moments needs at least 25,029 TiB of memory at once, more than this "
     "machine's 8 GiB; use smaller --hidden, --latent-dim or prior sizes"),
    (["--latent-dim", "1000000000000"], "with its gradients and Adam's moments needs at least"),
    (["--prior", "vamp", "--prior-components", "1000000000"], "a model with about 7.8e11 parameters"),
    (["--num-particles", "100000000"],
     "a training step with --num-particles 100000000 and --batch-size 128 needs at least 309 TiB of "
     "memory at once, more than this machine's 8 GiB; lower --num-particles or --batch-size"),
])
def test_absurd_training_settings_are_refused_before_anything_loads(capsys, tmp_path, eight_gib, args, message):
    out = tmp_path / "run"
    status, stderr = run_script(capsys, "svi_train", *args, "--device", "cpu", "--out", out,
                                "--data-dir", tmp_path / "no-data")
    assert_one_line_error(status, stderr, message)
    assert not out.exists()


# Flags a script would not read ------------------------------------------------------------------

@pytest.mark.parametrize("args, message", [
    (["{run}", "--hidden", "8"], "grad_variance does not read --hidden: it builds the model from it at "
                                 "--init, but at a run's checkpoint the model is the run's own; drop it"),
    (["{run}", "--prior", "mog"], "grad_variance does not read --prior"),
    (["{run}", "--config", "{run}/config.yaml"], "--config is for --init"),
    (["--init", "--epochs", "3"], "grad_variance does not read --epochs: it measures gradients on one "
                                  "minibatch of training images and trains nothing; drop it"),
    (["{run}", "--limit-train", "5"], "grad_variance does not read --limit-train"),
    (["--init", "--no-compile"], "grad_variance does not read --compile"),
    (["--init", "--elbo", "iwae"], "grad_variance does not read --elbo: it measures each estimator of "
                                   "--estimators in turn (choose them there); drop it"),
    (["{run}", "--estimator", "score"], "grad_variance does not read --estimator"),
    (["{run}", "--num-particles", "5", "--estimators", "reparam", "score"],
     "--num-particles is the K of iwae, dreg and vimco, and --estimators includes none of them"),
    (["{run}", "--baseline-warmup", "100", "--estimators", "reparam"],
     "--baseline-warmup is for the estimators with a baseline (score+avg, score+nn, score+nn-only), and --estimators includes none"),
    (["{run}", "--baseline-beta", "0.5", "--estimators", "iwae"], "--baseline-beta is for the estimators with a decaying-average baseline"),
])
def test_grad_variance_refuses_flags_it_would_not_read(capsys, trained, empty_cwd, args, message):
    before = files_in(trained)
    assert_one_line_error(*run_script(capsys, "grad_variance", *(a.format(run=trained) for a in args)), message)
    assert files_in(trained) == before and files_in(empty_cwd) == set()


def test_grad_variance_reads_the_baseline_flags_where_they_apply(capsys, trained, data_dir, tmp_path):
    out = tmp_path / "gv"
    status, stderr = run_script(capsys, "grad_variance", trained, "--estimators", "reparam", "score+avg",
                                "--baseline-beta", "0.5", "--baseline-warmup", "2", "--repeats", "2",
                                "--batch-size", "4", "--data-dir", data_dir, "--out", out)
    assert status == 0, stderr
    assert (out / "grad_variance.json").exists()
    # an estimator without a baseline measures with the default decay, not a refused setting
    base = make_config({"estimator": "score", "baseline": "avg", "baseline_beta": 0.5})
    assert spec_config(base, "reparam", 5).model.baseline_beta == Config.default("baseline_beta")
    assert spec_config(base, "score+avg", 5).model.baseline_beta == 0.5
    assert spec_config(base, "score+avg", 5, baseline_beta=0.7).model.baseline_beta == 0.7


@pytest.mark.parametrize("args, message", [
    (["--ais-chains", "16"], "--ais-chains is for --method ais or bdmc"),  # even at its default
    (["--leapfrog", "10"], "--leapfrog is for --method ais or bdmc"),
    (["--ais-start", "guide"], "--ais-start is for --method ais or bdmc"),
    (["--method", "bdmc", "--split", "test"], "--split is for iwae and ais"),
    (["--method", "ais", "--num-samples", "5000"], "--num-samples is for --method iwae"),
])
def test_evaluate_refuses_flags_the_method_would_not_read(capsys, trained, args, message):
    before = files_in(trained)
    assert_one_line_error(*run_script(capsys, "evaluate", trained, *args), message)
    assert files_in(trained) == before


def test_trust_import_is_refused_for_a_new_run(capsys, tmp_path):
    out = tmp_path / "run"
    assert_one_line_error(*run_script(capsys, "svi_train", "--trust-import", "examples.custom_model:StyleContentVAE",
                                "--out", out),
                    "--trust-import is for reopening a run (--resume); a new run imports the --model "
                    "or --prior you name, so drop it")
    assert not out.exists()


@pytest.mark.parametrize("overrides, message", [
    ({"prior_df": 5.0}, "prior_df applies only with prior student-t, and prior is 'normal': "
                        "prior_df 5.0 would be ignored while config.yaml records it; drop it"),
    ({"prior": "mog", "vamp_init": "random"}, "vamp_init applies only with prior vamp, and prior is 'mog'"),
    ({"prior_components": 3}, "prior_components applies only with prior mog or vamp"),
    ({"flow_depth": 2}, "flow_depth applies only with prior flow"),
    ({"flow": "affine", "prior": "vamp"}, "flow applies only with prior flow"),
    ({"flow_hidden": 8}, "flow_hidden applies only with prior flow"),
    ({"baseline_beta": 0.5}, "baseline_beta applies only with baseline avg or nn, and baseline is 'none'"),
    ({"lr_schedule_scale": 0.1}, "lr_schedule_scale applies only with lr_schedule iwae"),
    ({"upper_hidden": [8]}, "upper_hidden is not read by model='vae': it has one latent layer"),
])
def test_settings_that_nothing_reads_are_refused(overrides, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        make_config(overrides)


def test_settings_that_nothing_reads_are_refused_by_name_on_the_command_line(capsys, tmp_path):
    status, stderr = run_script(capsys, "svi_train", "--prior", "mog", "--flow-depth", "2", "--out", tmp_path / "run")
    assert_one_line_error(status, stderr, "--flow-depth applies only with --prior flow, and prior is 'mog': "
                                          "--flow-depth 2 would be ignored while config.yaml records it; drop it")
    assert not (tmp_path / "run").exists()


def test_a_registered_prior_gets_the_rules_of_the_knobs_it_reads(registered_prior):
    """What a prior reads is its registration's ``reads``, not its name: a prior of a new file
    that reads the flow keys takes them, and refuses the mixture's."""
    make_config({"prior": registered_prior, "flow_depth": 2, "latent_dim": 3})
    with pytest.raises(ConfigError, match=re.escape(f"prior_components applies only with prior mog or vamp, "
                                                    f"and prior is '{registered_prior}'")):
        make_config({"prior": registered_prior, "prior_components": 3})
    with pytest.raises(ConfigError, match=f"the {registered_prior} prior needs a top latent layer of size >= 3"):
        make_config({"prior": registered_prior, "latent_dim": 2})


@pytest.mark.parametrize("overrides", [
    {"prior": "student-t", "prior_df": 5.0}, {"prior": "vamp", "vamp_init": "random", "prior_components": 4},
    {"estimator": "score", "baseline": "avg", "baseline_beta": 0.5}, {"lr_schedule": "iwae", "lr_schedule_scale": 0.1},
    {"model": "hvae", "upper_hidden": [8], "latent_dim": [4, 2]},
    {"prior_df": 3.0, "upper_hidden": [100, 100], "baseline_beta": 0.9},  # at their defaults: not given
])
def test_settings_are_accepted_where_they_are_read(overrides):
    make_config(overrides)


def test_shipped_configs_set_nothing_that_is_ignored():
    for path in sorted((REPO / "configs").rglob("*.yaml")):
        if "sweeps" not in path.parts:
            make_config(config_file=path)


def test_every_run_of_the_shipped_sweeps_is_valid(tmp_path, monkeypatch):
    """compare.py checks a whole sweep before its first run trains; a shipped sweep passes it."""
    monkeypatch.chdir(tmp_path)
    for path in sorted((REPO / "configs" / "sweeps").glob("*.yaml")):
        name, _, runs = read_sweep(str(path))
        planned, root = plan_sweep(str(path))
        assert [entry.name for entry in planned] == list(runs) and root == Path("runs") / name
    assert not (tmp_path / "runs").exists()


def test_a_saved_run_with_an_ignored_key_still_opens_and_drops_it(tmp_path):
    """Runs saved before such keys were refused: the key never had an effect, so the run opens
    (evaluate, plot, resume) as what it was, and a resumed run records it so."""
    saved = {**Config().to_flat(), "prior_df": 5.0, "upper_hidden": [7], "baseline_beta": 0.3,
             "out": "", "data_dir": ""}  # as `--out ''` saved it, before empty paths were refused
    values = saved_config(saved, [], "the checkpoint in r")
    assert not {"prior_df", "upper_hidden", "baseline_beta", "out", "data_dir"} & set(values)
    assert make_config(values).prior.df == Config.default("prior_df")
    cfg = resume_config(saved, {"epochs": 12}, str(tmp_path))
    assert (cfg.optim.epochs, cfg.prior.df, cfg.model.upper_hidden) == (12, 3.0, [100, 100])


def test_replaced_resets_what_the_change_leaves_unread():
    vamp = make_config({"prior": "vamp", "prior_components": 4, "vamp_init": "random"})
    normal = replaced(vamp, prior="normal")
    assert (normal.prior.components, normal.prior.vamp_init) == (None, "data")
    with pytest.raises(ConfigError, match="prior_components applies only with"):
        replaced(vamp, prior="normal", prior_components=7)  # named in the change: refused


# YAML: no aliases, bounded size, bounded messages -----------------------------------------------

def alias_bomb(levels: int = 9) -> str:
    lines, previous = ["a: &a [x, x, x, x, x, x, x, x, x]"], "a"
    for name in "bcdefghijklmnop"[:levels - 1]:
        lines.append(f"{name}: &{name} [{', '.join(['*' + previous] * 9)}]")
        previous = name
    return "\n".join(lines) + "\n"


def test_a_yaml_alias_bomb_is_refused_at_once_in_every_reader(capsys, trained, tmp_path):
    bomb = alias_bomb()
    assert len(bomb) < 400  # 9^9 = 387 million strings once expanded
    config = tmp_path / "bomb.yaml"
    config.write_text(bomb)
    tracemalloc.start()
    started = time.perf_counter()
    status, stderr = run_script(capsys, "svi_train", "--config", config, "--out", tmp_path / "run")
    seconds, (_, peak) = time.perf_counter() - started, tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert_one_line_error(status, stderr, f"config file {config} uses a YAML anchor or alias (&name, *name) at "
                                    "line 1, column 4; pyro-vae reads plain YAML only: write the values out")
    assert seconds < 2 and peak < 20 * 2**20 and len(stderr) < 300
    assert not (tmp_path / "run").exists()
    # a sweep file, and a shared run's config.yaml, go through the same reader
    assert_one_line_error(*run_script(capsys, "compare", "--sweep", config), f"sweep file {config} uses a YAML anchor")
    run = tmp_path / "shared"
    run.mkdir()
    (run / "config.yaml").write_text("runs: {a: {}}\n" + bomb)
    with pytest.raises(ConfigError, match="uses a YAML anchor or alias"):
        RunDir(run).read_config()


@pytest.mark.parametrize("text, message", [
    ("base: &b {lr: 0.1}\nlr: 0.2\n", "uses a YAML anchor or alias (&name, *name) at line 1, column 7"),
    ("a: {x: 1}\nb:\n  <<: *a\n", "uses a YAML anchor or alias (&name, *name) at line 3, column 7"),
    ("hidden: " + "[" * 50_000 + "\n", "is nested too deeply to be a pyro-vae YAML file"),
    ("# " + "x" * 2**20 + "\n", "is larger than 1 MiB; pyro-vae's YAML files hold a few settings"),
])
def test_yaml_that_is_not_plain_data_is_refused(tmp_path, text, message):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(message)):
        read_yaml(path)


@pytest.mark.parametrize("text, message", [
    ("lr: [" + ", ".join(["1"] * 100_000) + "]\n", "config key 'lr' must be a number, got [1, 1,"),
    ("activation: " + "x" * 500_000 + "\n", "unknown activation 'xxxx"),
    ("x" * 1000 + ": 1\n", "unknown config key 'xxx"),
])
def test_long_values_are_cut_in_messages(capsys, tmp_path, text, message):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    status, stderr = run_script(capsys, "svi_train", "--config", path, "--out", tmp_path / "run")
    assert_one_line_error(status, stderr, message)
    assert len(stderr) < 1500 and "characters)" in stderr


# A user's own model ------------------------------------------------------------------------------

USER_MODELS = textwrap.dedent('''
    import pyro
    import pyro.distributions as dist
    import torch
    from torch import nn


    class Tiny(nn.Module):
        def __init__(self, x_dim, width=4):
            super().__init__()
            self.net = nn.Linear(x_dim, width)

        def model(self, x):
            pass

        def guide(self, x):
            pass


    class Shaped(Tiny):
        def __init__(self, x_dim, latent_dim, hidden, activation, arch, upper_hidden, logvar_range):
            super().__init__(x_dim)
            self.received = dict(latent_dim=latent_dim, hidden=hidden, activation=activation, arch=arch,
                                 upper_hidden=upper_hidden, logvar_range=logvar_range)


    class Anything(Tiny):
        def __init__(self, x_dim, **options):
            super().__init__(x_dim)
            self.received = options
''')


@pytest.fixture
def user_models(tmp_path, monkeypatch) -> str:
    (tmp_path / "refusal_models.py").write_text(USER_MODELS)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "refusal_models"
    sys.modules.pop("refusal_models", None)


@pytest.mark.parametrize("args, key", [
    (["--hidden", "200"], "--hidden [200]"), (["--latent-dim", "3"], "--latent-dim [3]"),
    (["--activation", "tanh"], "--activation 'tanh'"), (["--arch", "conv"], "--arch 'conv'"),
    (["--upper-hidden", "5"], "--upper-hidden [5]"), (["--logvar-range", "-6", "2"], "--logvar-range [-6.0, 2.0]"),
    (["--estimator", "score"], "--estimator 'score'"), (["--prior", "learned-normal"], "--prior 'learned-normal'"),
])
def test_user_model_flags_it_does_not_take_are_refused(capsys, tmp_path, user_models, args, key):
    out = tmp_path / "run"
    status, stderr = run_script(capsys, "svi_train", "--model", f"{user_models}:Tiny", *args, "--out", out,
                                "--data-dir", tmp_path / "no-data")
    parameter = key.split()[0][2:].replace("-", "_")
    assert_one_line_error(status, stderr, f"{key} is not a parameter of {user_models}:Tiny(x_dim, width=4): the "
                                    "model would ignore it while config.yaml records it; drop it or add "
                                    f"the parameter '{parameter}'")
    assert not out.exists()


def test_user_model_takes_the_flags_it_declares_and_defaults_are_not_refused(user_models):
    make_config({"model": f"{user_models}:Tiny", "hidden": [400, 400], "activation": "relu"})  # defaults
    settings = {"latent_dim": [3], "hidden": [7, 5], "activation": "tanh", "arch": "conv", "upper_hidden": [2],
                "logvar_range": [-6.0, 2.0]}
    for name in ("Shaped", "Anything"):  # by name, or all of them through **options
        model = build_model(make_config({"model": f"{user_models}:{name}", **settings}))
        assert {k: model.received[k] for k in settings} == settings


def test_model_options_that_repeat_an_argument_name_no_missing_flag(user_models):
    with pytest.raises(ConfigError) as error:
        make_config({"model": f"{user_models}:Shaped", "model_options": {"x_dim": 3, "hidden": [2]}})
    message = str(error.value)
    assert message == ("model_options ['hidden', 'x_dim'] are set from the config already (hidden from "
                       "the config, x_dim from the dataset); drop them from model_options")


def test_every_flag_a_message_names_exists():
    """No message tells the user to pass a flag that no command accepts (once: ``use --x-dim``)."""
    flags = {"--" + key.replace("_", "-") for key in FIELD_TYPES} | {"--latent-dims", "--jit", "--help"}
    flags.add("--nproc-per-node")  # torchrun's own, in the scripts' usage examples
    flags |= {"--no-" + key for key in ("compile", "plots", "jit")}
    for path in [*(REPO / "pyro_vae" / "cli").glob("*.py"), *(REPO / "pyro_vae" / "config").glob("*.py")]:  # --trust-import
        flags |= set(re.findall(r'add_argument\(\s*"(--[a-z0-9-]+)"', path.read_text()))
    named = []
    for path in [*(REPO / "pyro_vae").rglob("*.py"), *(REPO / "scripts").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                named += [(path.name, flag) for flag in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", node.value)]
    unknown = sorted({(name, flag) for name, flag in named
                      if flag not in flags and flag != "--flag"})  # config.py's docstring: ``--flag``
    assert unknown == [], unknown
