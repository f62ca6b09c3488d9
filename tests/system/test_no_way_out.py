"""A shared run directory cannot steer a write out of itself.

Someone shares a run directory with links planted in it: the lock file, ``figures/``, every
file pyro-vae writes, or the directory itself. Each opener (resume, evaluate with every method,
plot, grad_variance, compare, reproduce) is run on it; the files the links point at stay as they
were, and nothing appears outside the run directory. Where pyro-vae refuses, it says so in one
line.
"""

import json
import os
from pathlib import Path

import pytest
from support import assert_one_line_error, run_script, train_tiny_run
from test_safety import copy_run

from pyro_vae.runs.lock import RunLock

# Every name pyro-vae writes in a run directory (or an --out directory); best.pt is left out
# because evaluation reads it when it is there (a planted one is refused as a checkpoint).
WRITTEN = ("checkpoint.pt", "config.yaml", "metrics.jsonl",
           "eval.json", "eval_points.npz", "eval_ais.json", "eval_ais_points.npz",
           "eval_bdmc.json", "eval_bdmc_points.npz", "grad_variance.json", "grad_variance.md",
           "grad_variance.png", "compare.png", "compare.md", ".write-probe")
FIGURES = ("samples.png", "reconstructions.png", "latent_space.png", "learning_curves.png",
           "manifold.png")


@pytest.fixture(scope="module")
def shared_run(data_dir, tmp_path_factory):
    """A small trained run, which each test copies and plants links in."""
    return train_tiny_run(data_dir, tmp_path_factory.mktemp("way-out") / "run")


# opener -> the arguments of its script, given the directory under attack, the data directory
# and an intact run: each writes into the directory under attack (compare: its --out).
OPENERS = {
    "resume": ("svi_train", lambda run, d, _: ["--resume", run, "--epochs", "2", "--plots", "--data-dir", d]),
    "evaluate": ("evaluate", lambda run, d, _: [run, "--num-samples", "5", "--limit", "4", "--data-dir", d]),
    "ais": ("evaluate", lambda run, d, _: [run, "--method", "ais", "--limit", "2", "--ais-steps", "2",
                                           "--ais-chains", "2", "--leapfrog", "1", "--data-dir", d]),
    "bdmc": ("evaluate", lambda run, d, _: [run, "--method", "bdmc", "--limit", "2", "--ais-steps", "2",
                                            "--ais-chains", "2", "--leapfrog", "1", "--data-dir", d]),
    "plot": ("plot_run", lambda run, d, _: [run, "--num-points", "8", "--data-dir", d]),
    "grad_variance": ("grad_variance", lambda run, d, _: [run, "--repeats", "2",
                                                          "--estimators", "reparam", "--batch-size", "8",
                                                          "--data-dir", d]),
    "compare": ("compare", lambda run, d, intact: [intact, "--out", run]),
}


class Outside:
    """A directory outside the run, with files that links point at: untouched afterwards."""

    def __init__(self, root: Path):
        self.root = root
        root.mkdir()
        self.victims = {}

    def victim(self, name: str) -> Path:
        path = self.root / f"victim-{name.strip('.')}"
        path.write_text(f"the user's own {name}\n")
        self.victims[path] = path.read_text()
        return path

    def unchanged(self) -> None:
        for path, text in self.victims.items():
            assert not path.is_symlink() and path.read_text() == text, f"{path} was written"
        appeared = {p.name for p in self.root.iterdir()} - {p.name for p in self.victims}
        assert not appeared, f"written outside the run directory: {appeared}"


def open_run(capsys, opener: str, run: Path, data_dir: str, intact: Path) -> tuple[int, str]:
    script, args = OPENERS[opener]
    return run_script(capsys, script, *args(str(run), data_dir, str(intact)))


@pytest.mark.parametrize("opener", list(OPENERS))
def test_links_at_every_written_name_are_replaced_not_followed(shared_run, data_dir, tmp_path, capsys, opener):
    run = copy_run(shared_run, tmp_path / "run")
    outside = Outside(tmp_path / "outside")
    for name in WRITTEN:
        if not (run / name).exists():
            (run / name).symlink_to(outside.victim(name))
    (run / "figures").mkdir()
    for name in FIGURES:
        (run / "figures" / name).symlink_to(outside.victim(name))
    status, stderr = open_run(capsys, opener, run, data_dir, shared_run)
    assert status == 0, stderr
    outside.unchanged()
    written = [p for p in [*run.iterdir(), *(run / "figures").iterdir()] if not p.is_symlink()]
    assert written, "the opener wrote nothing: the test would prove nothing"


@pytest.mark.parametrize("opener", list(OPENERS))
@pytest.mark.parametrize("dangling", [False, True], ids=["to-a-file", "dangling"])
def test_a_planted_lock_link_is_refused(shared_run, data_dir, tmp_path, capsys, opener, dangling):
    run = copy_run(shared_run, tmp_path / "run")
    outside = Outside(tmp_path / "outside")
    target = outside.root / "created.pth" if dangling else outside.victim("thesis.tex")
    (run / ".lock").symlink_to(target)
    before = sorted(p.name for p in run.iterdir())
    status, stderr = open_run(capsys, opener, run, data_dir, shared_run)
    assert_one_line_error(status, stderr, ".lock is a symbolic link")
    outside.unchanged()
    assert sorted(p.name for p in run.iterdir()) == before


@pytest.mark.parametrize("opener", ["resume", "plot"])
def test_a_figures_link_is_refused(shared_run, data_dir, tmp_path, capsys, opener):
    run = copy_run(shared_run, tmp_path / "run")
    outside = Outside(tmp_path / "outside")
    (run / "figures").symlink_to(outside.root, target_is_directory=True)
    status, stderr = open_run(capsys, opener, run, data_dir, shared_run)
    assert_one_line_error(status, stderr, "figures is a symbolic link")
    outside.unchanged()


@pytest.mark.parametrize("opener", list(OPENERS))
def test_a_run_directory_that_is_a_link_is_refused(shared_run, data_dir, tmp_path, capsys, opener):
    real = copy_run(shared_run, tmp_path / "real")
    before = sorted(p.name for p in real.iterdir())
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    status, stderr = open_run(capsys, opener, link, data_dir, shared_run)
    assert_one_line_error(status, stderr, "is a symbolic link")
    assert sorted(p.name for p in real.iterdir()) == before


def test_a_hard_linked_lock_is_refused(tmp_path):
    victim = tmp_path / "thesis.tex"
    victim.write_text("chapter 1\n")
    run = tmp_path / "run"
    run.mkdir()
    os.link(victim, run / ".lock")
    with pytest.raises(OSError, match="hard link .* delete it"):
        RunLock(run).__enter__()
    assert victim.read_text() == "chapter 1\n"


def test_the_lock_describes_its_holder_as_escaped_json(tmp_path):
    """A newline in a path the command line names cannot start a line of its own in the file."""
    import sys
    from unittest import mock
    evil = "run\nimport os; os.system('touch /tmp/pwned')"
    with mock.patch.object(sys, "argv", ["svi_train.py", "--out", evil]):
        with RunLock(tmp_path):
            text = (tmp_path / ".lock").read_text()
    assert text.count("\n") == 1 and json.loads(text)["command"] == ["svi_train.py", "--out", evil]


def test_reproduce_writes_its_table_through_no_link_and_refuses_a_lock_link(data_dir, tmp_path, capsys):
    config = tmp_path / "cfgs" / "tiny.yaml"
    config.parent.mkdir()
    config.write_text("reference: {paper: a test, nll: 100.0}\nlimit_train: 64\nlimit_test: 8\n"
                      "batch_size: 32\nhidden: [16]\nlatent_dim: 2\nepochs: 1\n")
    runs, table = tmp_path / "runs", tmp_path / "table"
    args = [config, "--runs-dir", runs, "--out", table, "--limit", "4", "--data-dir", data_dir]
    status, stderr = run_script(capsys, "reproduce", *args, "--num-samples", "5")
    assert status == 0, stderr
    outside = Outside(tmp_path / "outside")
    for name in ("reproduction.md", "reproduction.json", "reproduction.png"):
        (table / name).unlink()
        (table / name).symlink_to(outside.victim(name))
    status, stderr = run_script(capsys, "reproduce", *args, "--num-samples", "6")  # evaluates again
    assert status == 0, stderr
    outside.unchanged()
    assert not any(p.is_symlink() for p in table.iterdir())
    (run,) = [p for p in runs.iterdir() if p.is_dir()]
    (run / ".lock").unlink()  # left by the last holder
    (run / ".lock").symlink_to(outside.victim("thesis.tex"))
    status, stderr = run_script(capsys, "reproduce", *args, "--num-samples", "7")
    assert_one_line_error(status, stderr, ".lock is a symbolic link")
    outside.unchanged()


def test_a_saved_data_directory_that_is_not_here_is_not_made(shared_run, data_dir, tmp_path, capsys, monkeypatch):
    """The author's data_dir names a place on their machine: pyro-vae does not create it (nor
    download into it) on yours, but reads the data from your own data directory."""
    from pyro_vae.runs.checkpoint import load_checkpoint, save_checkpoint
    run = copy_run(shared_run, tmp_path / "run")
    elsewhere = tmp_path / "outside" / "authors-data"
    state = load_checkpoint(run / "checkpoint.pt")
    state["config"]["data_dir"] = str(elsewhere)
    save_checkpoint({k: v for k, v in state.items() if k not in ("format", "version", "checksum")},
                    run / "checkpoint.pt")
    monkeypatch.setenv("PYRO_VAE_DATA", data_dir)
    status, stderr = run_script(capsys, "evaluate", run, "--num-samples", "5", "--limit", "4")
    assert status == 0, stderr
    assert not (tmp_path / "outside").exists()
