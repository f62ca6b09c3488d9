"""reproduce.py and compare.py --sweep report only what they ran.

Every row of a reproduction table comes from its own config's run (a second config file of the same
folder and file name gets a run of its own; a run of other settings is refused), an eval.json is
reused only beside the checkpoint it evaluated, every config, reference and sweep entry is checked
before anything trains, a sweep continues after a failure, and every mistake a user or a shared
file can make is one line. Runs train for one epoch on 256 images; evaluations take K = 5 on 4.
"""

import json
import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
from support import REPO, assert_one_line_error, quiet, run_script

from pyro_vae.core.errors import ConfigError, RunDirError
from pyro_vae.runs import load_checkpoint, save_checkpoint
from pyro_vae.studies import SOURCE_NAME, reproduce, run_name
from pyro_vae.training.trainer import train

TINY = """\
reference: {paper: Nobody 2026, table: Table 0, nll: 150.0, epochs: 4}
hidden: [16]
latent_dim: 2
limit_train: 256
batch_size: 64
epochs: 1
"""


QUICK = ["--num-samples", "5", "--limit", "4"]  # evaluations of the command-line tests


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def options(data_dir, **extra):
    return dict(num_samples=5, limit=4, overrides={"data_dir": data_dir}, log=quiet, **extra)


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every file under ``directory`` (recursively) and its bytes."""
    if not directory.exists():
        return {}
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


@contextmanager
def locked_by_another_process(directory: Path):
    """Another process holds ``directory``'s run lock (in this process the lock is re-entrant)."""
    directory.mkdir(parents=True, exist_ok=True)
    code = (f"from pyro_vae.runs.lock import RunLock\nimport time\nRunLock({str(directory)!r}).__enter__()\n"
            "print('locked', flush=True)\ntime.sleep(600)\n")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert holder.stdout.readline().strip() == "locked"
        yield
    finally:
        holder.kill()
        holder.wait()


@pytest.fixture(scope="module")
def two_configs(data_dir, tmp_path_factory):
    """p/rows/tiny.yaml and q/rows/tiny.yaml (the same folder and file name), differing only in
    the learning rate, a key a resume may change: reproduced together in one command."""
    root = tmp_path_factory.mktemp("two-configs")
    p = write(root / "p" / "rows" / "tiny.yaml", TINY)
    q = write(root / "q" / "rows" / "tiny.yaml", TINY + "lr: 0.003\n")
    runs = root / "runs"
    paths = reproduce([p, q], runs, root / "table", **options(data_dir))
    return p, q, runs, json.loads(paths["json"].read_text())


# --- one run per config file ------------------------------------------------------------------

def test_two_configs_of_the_same_folder_and_name_get_two_runs(two_configs):
    p, q, runs, rows = two_configs
    assert [r["config"] for r in rows] == [str(p), str(q)]
    assert rows[0]["run_dir"] == str(runs / "rows-tiny")
    assert rows[1]["run_dir"] == str(runs / run_name(q, 1, distinct=True)) != rows[0]["run_dir"]
    for row, config, lr in zip(rows, (p, q), (1e-3, 3e-3)):
        run = Path(row["run_dir"])
        assert load_checkpoint(run / "checkpoint.pt")["config"]["lr"] == lr
        assert json.loads((run / SOURCE_NAME).read_text()) == {"config": str(config.resolve())}
        assert json.loads((run / "eval.json").read_text())["nll"] == row["nll"]


def test_each_config_finds_its_own_run_again_alone_and_in_any_order(two_configs, data_dir, tmp_path,
                                                                     monkeypatch):
    p, q, runs, rows = two_configs
    monkeypatch.setattr("pyro_vae.studies.reproduction.evaluate_run", lambda *a, **k: pytest.fail("re-evaluated"))
    monkeypatch.setattr("pyro_vae.studies.reproduction.train", lambda *a, **k: pytest.fail("trained"))
    for order in ([q], [q, p]):
        paths = reproduce(order, runs, tmp_path, train_runs=False, **options(data_dir))
        again = {r["config"]: r["run_dir"] for r in json.loads(paths["json"].read_text())}
        assert again == {r["config"]: r["run_dir"] for r in rows if r["config"] in again}


def test_the_same_config_named_twice_makes_one_row(two_configs, tmp_path):
    p, _, runs, _ = two_configs
    lines = []
    spelled_otherwise = p.parent / ".." / "rows" / p.name
    paths = reproduce([p, spelled_otherwise], runs, tmp_path, train_runs=False,
                      **{**options(None), "log": lines.append})
    assert len(json.loads(paths["json"].read_text())) == 1
    assert f"{spelled_otherwise} is {p} again: its row is made once" in lines


def test_a_run_that_does_not_record_its_config_is_used_only_with_the_same_settings(
        two_configs, tmp_path, capsys):
    """A run from before run directories recorded their config: another config of the same
    folder and name but other settings is refused, with one line, and nothing trains."""
    p, _, runs, _ = two_configs
    legacy = tmp_path / "runs"
    (legacy / "rows-tiny").mkdir(parents=True)
    for name in ("checkpoint.pt", "config.yaml", "metrics.jsonl"):
        (legacy / "rows-tiny" / name).write_bytes((runs / "rows-tiny" / name).read_bytes())
    other = write(tmp_path / "elsewhere" / "rows" / "tiny.yaml", TINY.replace("[16]", "[24]"))
    before = snapshot(legacy)
    status, stderr = run_script(capsys, "reproduce", *QUICK, other, "--runs-dir", legacy, "--out", tmp_path / "t")
    assert_one_line_error(status, stderr, f"{legacy / 'rows-tiny'} is a run of other settings than {other}",
                    "hidden [16] there, [24] in the config", "does not record its config")
    assert snapshot(legacy) == before and not (tmp_path / "t").exists()


def test_an_edited_config_is_refused_before_anything_trains(data_dir, tmp_path, capsys):
    config = write(tmp_path / "rows" / "tiny.yaml", TINY)
    runs = tmp_path / "runs"
    reproduce([config], runs, tmp_path / "t", **options(data_dir))
    write(config, TINY.replace("latent_dim: 2", "latent_dim: 3"))
    fresh = write(tmp_path / "other" / "new.yaml", TINY)  # listed first: it would train first
    before = snapshot(runs)
    status, stderr = run_script(capsys, "reproduce", *QUICK, fresh, config, "--runs-dir", runs,
                                "--data-dir", data_dir)
    assert_one_line_error(status, stderr, "latent_dim [2] there, [3] in the config",
                    f"{config} was edited since the run was made from it")
    assert snapshot(runs) == before


def test_no_train_without_a_run_is_refused_before_anything_is_evaluated(two_configs, tmp_path):
    p, _, runs, _ = two_configs
    missing = write(tmp_path / "rows" / "never.yaml", TINY)
    with pytest.raises(ConfigError, match=f"holds no run of {missing} to evaluate; drop train_runs=False"):
        reproduce([p, missing], runs, tmp_path / "t", train_runs=False, **options(None))
    assert not (tmp_path / "t").exists()


# --- references, flags: checked before anything trains ----------------------------------------

@pytest.mark.parametrize("reference, message", [
    ("{paper: X, nl: 86.7}", "unknown key 'nl' in the reference mapping of"),
    ("{nll: '86.7'}", "reference nll in {config} must be a finite number, got '86.7'"),
    ("{nll: .nan}", "reference nll in {config} must be a finite number, got nan"),
    ("{nll: .inf}", "must be a finite number, got inf"),
    ("{nll: true}", "must be a finite number, got True"),
    ("{epochs: 0}", "reference epochs in {config} must be a whole number of at least 1"),
    ("{epochs: 2.5}", "must be a whole number of at least 1, got 2.5"),
    ("{paper: 3}", "reference paper in {config} must be a string, got 3"),
    ("[1, 2]", "'reference' in config file {config} must be a mapping"),
])
def test_a_bad_reference_is_refused_before_the_first_config_trains(tmp_path, capsys, reference, message):
    good = write(tmp_path / "rows" / "good.yaml", TINY)
    bad = write(tmp_path / "rows" / "bad.yaml", TINY.replace(TINY.splitlines()[0], f"reference: {reference}"))
    status, stderr = run_script(capsys, "reproduce", *QUICK, good, bad, "--runs-dir", tmp_path / "runs")
    assert_one_line_error(status, stderr, message.format(config=bad))
    assert not (tmp_path / "runs").exists()


def test_a_later_config_that_training_would_refuse_stops_the_first_from_training(tmp_path, capsys):
    good = write(tmp_path / "rows" / "good.yaml", TINY)
    bad = write(tmp_path / "rows" / "bad.yaml", TINY + "lr: -1\n")
    status, stderr = run_script(capsys, "reproduce", *QUICK, good, bad, "--runs-dir", tmp_path / "runs")
    assert_one_line_error(status, stderr, "lr must be positive, got -1.0")
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("args, message", [
    (["--epochs-scale", "inf"], "--epochs-scale must be a positive finite number, got inf"),
    (["--epochs-scale", "nan"], "--epochs-scale must be a positive finite number, got nan"),
    (["--epochs-scale", "0"], "--epochs-scale must be a positive finite number, got 0.0"),
    (["--epochs-scale", "-2"], "--epochs-scale must be a positive finite number, got -2.0"),
    (["--epochs-scale", "1e308"], "--epochs-scale 1e+308 makes epochs 2 infinite"),
    (["--runs-dir", ""], "argument --runs-dir: is empty (''); name a directory"),
    (["--out", ""], "argument --out: is empty (''); name a directory"),
    (["--data-dir", ""], "argument --data-dir: is empty (''); name a directory"),
    (["--num-samples", "0"], "--num-samples must be at least 1"),
    (["--limit", "-1"], "--limit must be at least 1"),
])
def test_reproduce_flags_that_make_no_sense_are_one_line(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)  # an empty --runs-dir would have meant here
    config = write(tmp_path / "rows" / "tiny.yaml", TINY.replace("epochs: 1\n", "epochs: 2\n"))
    before = snapshot(tmp_path)
    status, stderr = run_script(capsys, "reproduce", *QUICK, config, *args)
    assert_one_line_error(status, stderr, message)
    assert snapshot(tmp_path) == before and sorted(p.name for p in tmp_path.iterdir()) == ["rows"]


def test_reproduce_into_an_output_directory_another_process_writes_is_refused_before_training(
        tmp_path, capsys):
    config = write(tmp_path / "rows" / "tiny.yaml", TINY)
    with locked_by_another_process(tmp_path / "table"):
        status, stderr = run_script(capsys, "reproduce", *QUICK, config, "--runs-dir", tmp_path / "runs",
                                    "--out", tmp_path / "table")
    assert_one_line_error(status, stderr, f"{tmp_path / 'table'} is in use by process")
    assert not (tmp_path / "runs").exists() and sorted(p.name for p in (tmp_path / "table").iterdir()) == [".lock"]


# --- a user prior: trusted because the user named the config ---------------------------------

def test_a_config_with_a_user_prior_trains_evaluates_and_tabulates_without_a_flag(
        data_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "examples"))
    prior = "custom_prior:LearnedLaplacePrior"
    config = write(tmp_path / "rows" / "laplace.yaml", TINY + f"prior: {prior}\n")
    status, stderr = run_script(capsys, "reproduce", *QUICK, config, "--runs-dir", tmp_path / "runs",
                                "--data-dir", data_dir)
    assert status == 0, stderr
    (row,) = json.loads((tmp_path / "runs" / "reproduction.json").read_text())
    assert row["num_samples"] == 5 and row["run_dir"] == str(tmp_path / "runs" / "rows-laplace")

    # The same run directory under a config that names no code: refused, and nothing imported.
    write(config, TINY)
    sys.modules.pop("custom_prior", None)
    status, stderr = run_script(capsys, "reproduce", *QUICK, config, "--runs-dir", tmp_path / "runs", "--no-train")
    assert_one_line_error(status, stderr, f"prior '{prior}' there, 'normal' in the config")
    assert "custom_prior" not in sys.modules


def test_a_best_checkpoint_of_other_settings_is_refused_before_anything_is_imported(
        data_dir, tmp_path, capsys, monkeypatch):
    """A shared run whose best.pt (what evaluation opens) names code its config does not."""
    config = write(tmp_path / "rows" / "tiny.yaml", TINY + "valid_size: 100\n")
    runs = tmp_path / "runs"
    reproduce([config], runs, tmp_path / "t", **options(data_dir))
    best = runs / "rows-tiny" / "best.pt"
    state = load_checkpoint(best)
    state["config"].update(prior="evil_prior_module:Prior")
    save_checkpoint({k: v for k, v in state.items() if k not in ("format", "version", "checksum")}, best)
    mark = tmp_path / "module-ran"
    (tmp_path / "evil_prior_module.py").write_text(f"open({str(mark)!r}, 'w').close()\nclass Prior: pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    (runs / "rows-tiny" / "eval.json").unlink()  # so that it would be evaluated again
    status, stderr = run_script(capsys, "reproduce", *QUICK, config, "--runs-dir", runs, "--no-train")
    assert_one_line_error(status, stderr, f"{best} is a run of other settings than {config}",
                    "prior 'evil_prior_module:Prior' there, 'normal' in the config")
    assert not mark.exists() and "evil_prior_module" not in sys.modules


# --- eval.json: reused only beside its checkpoint, its fields checked -------------------------

@pytest.fixture
def reproduced(data_dir, tmp_path):
    """A reproduced config (its run and eval.json) and a function that reproduces it again with
    --no-train and returns how many evaluations that ran."""
    config = write(tmp_path / "rows" / "tiny.yaml", TINY)
    runs = tmp_path / "runs"
    reproduce([config], runs, tmp_path / "t", **options(data_dir))
    import pyro_vae.studies.reproduction as module

    def again(monkeypatch) -> int:
        calls = []
        real = module.evaluate_run
        monkeypatch.setattr(module, "evaluate_run", lambda *a, **k: calls.append(1) or real(*a, **k))
        reproduce([config], runs, tmp_path / "t", train_runs=False, **options(data_dir))
        return len(calls)
    return config, runs / "rows-tiny", again


def test_an_evaluation_is_reused_beside_its_own_checkpoint_only(reproduced, monkeypatch):
    config, run, again = reproduced
    summary = json.loads((run / "eval.json").read_text())
    assert summary["checkpoint_sha256"] == load_checkpoint(run / "checkpoint.pt")["checksum"]
    assert again(monkeypatch) == 0

    for tampered in ({**summary, "checkpoint_sha256": "0" * 64},  # another checkpoint's
                     {k: v for k, v in summary.items() if k != "checkpoint_sha256"}):  # an older eval.json
        (run / "eval.json").write_text(json.dumps(tampered))
        assert again(monkeypatch) == 1
        assert json.loads((run / "eval.json").read_text())["checkpoint_sha256"] == summary["checkpoint_sha256"]


@pytest.mark.parametrize("change, message", [
    ({"nll": "86.1"}, "nll must be a number, got '86.1'"),
    ({"stderr": [0.2]}, "stderr must be a number, got [0.2]"),
    ({"num_points": None}, "num_points must be a whole number of at least 1, got None"),
    ({"epoch": "1"}, "epoch must be a whole number, got '1'"),
    ({"seconds": -1}, "seconds must be a number of seconds"),
    ({"device": 3}, "device must be a string, got 3"),
    ({"checkpoint": "other"}, "checkpoint must be 'best' or 'last'"),
    ({"psis": [1, 2]}, "psis must be a mapping with khat_median"),
    ({"psis": {"khat_median": "low"}}, "psis must be a mapping with khat_median"),
    ({"active_units_per_site": ["z"]}, "active_units_per_site must be a mapping of site names"),
    ({"active_units_per_site": {"z1": 1, "z2": 1}}, "latent_dim_per_site must be a size for every site"),
])
def test_a_malformed_evaluation_of_the_checkpoint_is_one_line_naming_the_field(
        reproduced, capsys, change, message):
    config, run, _ = reproduced
    summary = json.loads((run / "eval.json").read_text())
    (run / "eval.json").write_text(json.dumps({**summary, **change}))
    before = snapshot(run.parent)
    status, stderr = run_script(capsys, "reproduce", *QUICK, config, "--runs-dir", run.parent, "--no-train")
    assert_one_line_error(status, stderr, f"{run / 'eval.json'}: {message}")
    assert snapshot(run.parent) == before


@pytest.mark.parametrize("content, message", [
    ("{", "is not readable JSON (JSONDecodeError)"),
    ("[1, 2]", "holds no JSON object"),
    ("[" * 100000 + "]" * 100000, "is not readable JSON (RecursionError)"),
    (None, "is not readable JSON (it is a directory)"),
])
def test_an_unreadable_evaluation_stops_reproduce_before_training(reproduced, data_dir, tmp_path, capsys,
                                                                  content, message):
    config, run, _ = reproduced
    (run / "eval.json").unlink()
    if content is None:
        (run / "eval.json").mkdir()
    else:
        (run / "eval.json").write_text(content)
    fresh = write(tmp_path / "other" / "new.yaml", TINY)  # listed first: it would train first
    status, stderr = run_script(capsys, "reproduce", *QUICK, fresh, config, "--runs-dir", run.parent,
                                "--data-dir", data_dir)
    assert_one_line_error(status, stderr, f"{run / 'eval.json'} {message}")
    assert not (run.parent / "other-new").exists()


def test_a_non_finite_evaluation_is_tabulated_not_a_traceback(reproduced, monkeypatch):
    config, run, _ = reproduced
    summary = json.loads((run / "eval.json").read_text())
    (run / "eval.json").write_text(json.dumps({**summary, "nll": None, "stderr": None}))
    paths = reproduce([config], run.parent, run.parent / "t", train_runs=False, **options(None))
    (row,) = json.loads(paths["json"].read_text())  # strict JSON: null, not NaN
    assert row["nll"] is None and row["gap"] is None
    assert "| not finite +- - |" in paths["markdown"].read_text()
    assert paths["figure"].is_file()


# --- compare.py: eval.json, table cells, the output directory's lock --------------------------

@pytest.fixture(scope="module")
def trained(data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("compare") / "run"
    train({"data_dir": data_dir, "limit_train": 256, "limit_test": 16, "batch_size": 64, "hidden": [16],
           "latent_dim": 2, "epochs": 2, "plots": False, "out": str(out)}, log=quiet, progress=False)
    return out


def copy_of(trained: Path, target: Path, evaluation=None) -> Path:
    target.mkdir(parents=True)
    for name in ("checkpoint.pt", "config.yaml", "metrics.jsonl"):
        (target / name).write_bytes((trained / name).read_bytes())
    if evaluation is not None:
        (target / "eval.json").write_text(evaluation if isinstance(evaluation, str) else json.dumps(evaluation))
    return target


EVALUATION = {"log_likelihood": -150.25, "stderr": 1.5, "num_samples": 5, "epoch": 2, "split": "test"}


@pytest.mark.parametrize("evaluation, message", [
    ({**EVALUATION, "log_likelihood": "high"}, "log_likelihood must be a number, got 'high'"),
    ({k: v for k, v in EVALUATION.items() if k != "num_samples"}, "num_samples must be a whole number of at least 1, got nothing"),
    ({**EVALUATION, "num_samples": 0}, "num_samples must be a whole number of at least 1, got 0"),
    ({**EVALUATION, "stderr": "small"}, "stderr must be a number, got 'small'"),
    ({**EVALUATION, "epoch": -1}, "epoch must be a whole number, got -1"),
    ({**EVALUATION, "split": ["test"]}, "split must be a string"),
    ([EVALUATION], "holds no JSON object"),
    ("{", "is not readable JSON"),
])
def test_compare_on_a_malformed_evaluation_is_one_line_naming_the_field(trained, tmp_path, capsys,
                                                                        evaluation, message):
    run = copy_of(trained, tmp_path / "run", evaluation)
    status, stderr = run_script(capsys, "compare", run, "--out", tmp_path / "cmp")
    assert_one_line_error(status, stderr, f"{run / 'eval.json'}", message)
    assert not (tmp_path / "cmp" / "compare.png").exists() and not (tmp_path / "cmp" / "compare.md").exists()


def test_compare_says_which_epoch_and_split_an_evaluation_is_of(trained, tmp_path):
    from pyro_vae.viz import compare_runs

    runs = [copy_of(trained, tmp_path / "earlier", {**EVALUATION, "epoch": 1}),
            copy_of(trained, tmp_path / "valid", {**EVALUATION, "split": "valid"}),
            copy_of(trained, tmp_path / "nan", {**EVALUATION, "log_likelihood": None}),
            copy_of(trained, tmp_path / "old", {"log_likelihood": -150.25, "num_samples": 5})]
    table = compare_runs(runs, tmp_path / "cmp")["markdown"].read_text()
    assert "| -150.25 +- 1.50 (K = 5, epoch 1) |" in table
    assert "| -150.25 +- 1.50 (K = 5, valid split) |" in table
    assert "| not finite (K = 5) |" in table
    assert "| -150.25 +- - (K = 5) |" in table


def test_compare_gives_bits_per_dim_where_an_evaluation_has_them(trained, tmp_path):
    """8-bit runs' eval.json carry bits/dim: the table gets a column for them, with "-" for a run
    without (a binary one beside them); without any, the table is as before (checked above)."""
    from pyro_vae.viz import compare_runs

    runs = [copy_of(trained, tmp_path / "grey", {**EVALUATION, "bits_per_dim": 1.2134, "bits_per_dim_stderr": 0.0101}),
            copy_of(trained, tmp_path / "binary", EVALUATION)]
    lines = compare_runs(runs, tmp_path / "cmp")["markdown"].read_text().splitlines()
    assert "| test log p(x) (nats) | bits/dim | wall time (s) |" in lines[0]
    assert lines[1].count("---") == lines[0].count(" | ") + 1
    assert "| -150.25 +- 1.50 (K = 5) | 1.213 +- 0.010 |" in lines[2]
    assert "| -150.25 +- 1.50 (K = 5) | - |" in lines[3]
    bad = copy_of(trained, tmp_path / "bad", {**EVALUATION, "bits_per_dim": -1})
    with pytest.raises(RunDirError, match="bits_per_dim must be a positive number"):
        compare_runs([bad], tmp_path / "cmp2")


def test_compare_keeps_one_table_row_per_run_whatever_the_names(trained, tmp_path):
    from pyro_vae.viz import compare_runs

    run = copy_of(trained, tmp_path / "a|b $\\frac$ (c)", EVALUATION)
    paths = compare_runs([run], tmp_path / "cmp")
    lines = paths["markdown"].read_text().splitlines()
    assert len(lines) == 3 and lines[2].count(" | ") == 5, lines
    assert lines[2].startswith("| a\\|b $\\frac$ (c) | trace | 2 |")
    assert paths["figure"].is_file()


def test_compare_into_a_run_another_process_writes_is_refused(trained, tmp_path, capsys):
    run = copy_of(trained, tmp_path / "run")
    before = snapshot(run)
    with locked_by_another_process(run):
        status, stderr = run_script(capsys, "compare", run, "--out", run)
    assert_one_line_error(status, stderr, f"{run} is in use by process")
    assert snapshot(run) == {**before, ".lock": (run / ".lock").read_bytes()}


@pytest.mark.parametrize("args, message", [
    (["--out", ""], "argument --out: is empty (''); name a directory"),
    (["--data-dir", "/tmp"], "--data-dir is for --sweep"),
    (["--runs", "first"], "--runs names runs of a sweep: give --sweep FILE too"),
])
def test_compare_flags_that_make_no_sense_are_one_line(trained, tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    assert_one_line_error(*run_script(capsys, "compare", trained, *args), message)
    assert list(tmp_path.iterdir()) == []


# --- compare.py --sweep: checked up front, continued after a failure --------------------------

SWEEP = """\
name: tiny
base: {limit_train: 256, limit_test: 16, batch_size: 64, hidden: [16], latent_dim: 2, epochs: 2,
       plots: false, eval_samples: 5}
runs:
  first: {}
  second: {lr: 0.003}
"""


def test_a_sweep_whose_later_run_is_invalid_trains_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for bad, message in (("{lr: -1}", "run 'second': lr must be positive, got -1.0"),
                         ("{out: elsewhere}", "run 'second' sets 'out'; a sweep puts each run in runs/tiny/<run>"),
                         ("{elbo: renyi, alpha: 2, num_particles: 2}", "run 'second': --alpha 2.0 > 1")):
        sweep = write(tmp_path / "sweep.yaml", SWEEP.replace("{lr: 0.003}", bad))
        assert_one_line_error(*run_script(capsys, "compare", "--sweep", sweep), f"{sweep}: {message}")
        assert not (tmp_path / "runs").exists()


def test_a_sweep_continues_after_a_failure_and_skips_finished_runs(data_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sweep = write(tmp_path / "sweep.yaml", SWEEP)
    first = tmp_path / "runs" / "tiny" / "first"
    # What a failure leaves: the first run stopped after epoch 1 of 2, the second not started.
    train({"limit_train": 256, "limit_test": 16, "batch_size": 64, "hidden": [16], "latent_dim": 2,
           "epochs": 1, "plots": False, "data_dir": data_dir, "out": str(first)}, log=quiet, progress=False)
    status, stderr = run_script(capsys, "compare", "--sweep", sweep, "--data-dir", data_dir)
    assert status == 0, stderr
    assert load_checkpoint(first / "checkpoint.pt")["epoch"] == 2
    table = (tmp_path / "runs" / "tiny" / "compare.md").read_text()
    assert "| first |" in table and "| second |" in table and table.count("(K = 5)") == 2

    # Again: both runs are finished; nothing is trained or evaluated, the comparison is redrawn.
    before = {p: snapshot(tmp_path / "runs" / "tiny" / p) for p in ("first", "second")}
    monkeypatch.setattr("pyro_vae.training.trainer.Trainer.fit", lambda self: pytest.fail("trained"))
    status, stderr = run_script(capsys, "compare", "--sweep", sweep, "--data-dir", data_dir)
    assert status == 0, stderr
    assert {p: snapshot(tmp_path / "runs" / "tiny" / p) for p in before} == before

    # A finished run whose evaluation was lost (killed while evaluating) is evaluated again.
    (tmp_path / "runs" / "tiny" / "second" / "eval.json").unlink()
    assert run_script(capsys, "compare", "--sweep", sweep, "--data-dir", data_dir)[0] == 0
    assert json.loads((tmp_path / "runs" / "tiny" / "second" / "eval.json").read_text())["num_samples"] == 5


def test_a_sweep_shared_by_processes_trains_only_the_named_runs_and_a_spent_budget_is_finished(
        data_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sweep = write(tmp_path / "sweep.yaml", SWEEP.replace("epochs: 2,", "epochs: 3, max_minutes: 1.0e-9,"))
    assert_one_line_error(*run_script(capsys, "compare", "--sweep", sweep, "--runs", "third"),
                          f"{sweep} has no run named 'third'; its runs: first, second")
    status, stderr = run_script(capsys, "compare", "--sweep", sweep, "--data-dir", data_dir, "--runs", "second")
    assert status == 0, stderr
    runs = tmp_path / "runs" / "tiny"
    assert not (runs / "first").exists()
    assert load_checkpoint(runs / "second" / "checkpoint.pt")["epoch"] == 1  # the budget stopped it
    assert "| second |" in (runs / "compare.md").read_text() and "| first |" not in (runs / "compare.md").read_text()
    # The budget spent, "second" is finished: the whole sweep trains "first" only, then compares both.
    status, stderr = run_script(capsys, "compare", "--sweep", sweep, "--data-dir", data_dir)
    assert status == 0, stderr
    assert load_checkpoint(runs / "second" / "checkpoint.pt")["epoch"] == 1
    assert load_checkpoint(runs / "first" / "checkpoint.pt")["epoch"] == 1
    assert "| first |" in (runs / "compare.md").read_text() and "| second |" in (runs / "compare.md").read_text()


def test_a_sweep_refuses_a_run_directory_of_other_settings_before_training(data_dir, tmp_path, capsys,
                                                                          monkeypatch):
    monkeypatch.chdir(tmp_path)
    sweep = write(tmp_path / "sweep.yaml", SWEEP)
    second = tmp_path / "runs" / "tiny" / "second"
    train({"limit_train": 256, "limit_test": 16, "batch_size": 64, "hidden": [24], "latent_dim": 2,
           "epochs": 1, "plots": False, "data_dir": data_dir, "out": str(second)}, log=quiet, progress=False)
    before = snapshot(tmp_path / "runs")
    assert_one_line_error(*run_script(capsys, "compare", "--sweep", sweep, "--data-dir", data_dir),
                    f"runs/tiny/second is a run of other settings than {sweep}: run 'second'",
                    "hidden [24] there, [16] in the config")
    assert snapshot(tmp_path / "runs") == before


def test_a_sweep_into_an_output_directory_another_process_writes_is_refused_before_training(
        tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sweep = write(tmp_path / "sweep.yaml", SWEEP)
    with locked_by_another_process(tmp_path / "cmp"):
        status, stderr = run_script(capsys, "compare", "--sweep", sweep, "--out", tmp_path / "cmp")
    assert_one_line_error(status, stderr, f"{tmp_path / 'cmp'} is in use by process")
    assert not (tmp_path / "runs").exists()


def test_reading_a_malformed_source_record_is_one_line(two_configs, tmp_path):
    p, _, runs, _ = two_configs
    copy = tmp_path / "runs" / "rows-tiny"
    copy.mkdir(parents=True)
    for name in ("checkpoint.pt", "config.yaml", "metrics.jsonl"):
        (copy / name).write_bytes((runs / "rows-tiny" / name).read_bytes())
    (copy / SOURCE_NAME).write_text('["not", "a", "record"]')
    with pytest.raises(RunDirError, match=f"{SOURCE_NAME} does not name a config file"):
        reproduce([p], tmp_path / "runs", tmp_path / "t", train_runs=False, **options(None))


def test_compare_draws_and_tabulates_the_training_elbo_where_every_run_recorded_it(data_dir, trained,
                                                                                  tmp_path):
    from pyro_vae.viz import compare_runs

    runs = []
    for name, lr in (("a", 1e-3), ("b", 3e-3)):
        out = tmp_path / name
        train({"data_dir": data_dir, "limit_train": 128, "limit_test": 16, "batch_size": 64, "hidden": [16],
               "latent_dim": 2, "epochs": 2, "plots": False, "train_elbo": True, "lr": lr, "out": str(out)},
              log=quiet, progress=False)
        runs.append(out)
    paths = compare_runs(runs, tmp_path / "cmp")
    assert paths["train_figure"].is_file()
    lines = paths["markdown"].read_text().splitlines()
    assert lines[0].endswith("| best training ELBO (nats) | training time (min) |")
    for run, line in zip(runs, lines[2:]):
        history = [json.loads(r) for r in (run / "metrics.jsonl").read_text().splitlines()]
        best = max(history, key=lambda r: r["train_elbo"])
        assert f"| {best['train_elbo']:.2f} (epoch {best['epoch']}) |" in line
    # a run without train_elbo among them: the figure and table as before
    mixed = compare_runs([runs[0], trained], tmp_path / "cmp2")
    assert "train_figure" not in mixed and "training ELBO" not in mixed["markdown"].read_text()


def test_a_reference_accuracy_gets_its_columns_beside_ours():
    from pyro_vae.studies.reproduction_table import markdown_table

    row = {"config": "configs/papers/ss_vae_100_labels.yaml", "epochs_scale": 1, "paper": "Pyro ss-vae",
           "table": "Table 1", "paper_nll": None, "nll": 95.0, "stderr": 0.3, "gap": None, "epochs": 50,
           "evaluated_epoch": 48, "checkpoint": "best", "paper_epochs": 50, "train_hours": 0.6,
           "device": "cpu", "active_units_text": None, "khat_median": 0.1, "share_khat_above_0.7": 0.0,
           "num_samples": 100, "num_points": 10000, "paper_accuracy": 0.9319, "accuracy": 0.9412}
    table = markdown_table([row, {**row, "paper_accuracy": None, "accuracy": None}])
    header, _, first, second = table.splitlines()[:4]
    assert header.endswith("| paper test accuracy | ours |")
    assert first.endswith("| 0.9319 | 0.9412 |") and second.endswith("| - | - |")


def test_bits_per_dim_get_their_columns_where_a_run_is_of_8bit_data():
    from pyro_vae.studies.reproduction_table import markdown_table

    row = {"config": "configs/papers/x.yaml", "epochs_scale": 1, "paper": "a paper", "table": "Table 2",
           "paper_nll": 80.0, "nll": 81.0, "stderr": 0.3, "gap": 1.0, "epochs": 10, "evaluated_epoch": 10,
           "checkpoint": "last", "paper_epochs": 10, "train_hours": 0.5, "device": "cpu", "active_units_text": None,
           "khat_median": 0.1, "share_khat_above_0.7": 0.0, "num_samples": 1000, "num_points": 10000,
           "paper_bits_per_dim": 1.03, "bits_per_dim": 1.21}
    table = markdown_table([row, {**row, "paper_bits_per_dim": None, "bits_per_dim": None}])
    header, _, first, second = table.splitlines()[:4]
    assert header.endswith("| paper bits/dim | ours |")
    assert first.endswith("| 1.030 | 1.210 |") and second.endswith("| - | - |")
    assert "bits/dim" not in markdown_table([{**row, "paper_bits_per_dim": None, "bits_per_dim": None}])
