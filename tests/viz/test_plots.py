"""Figures: each one produced, a valid PNG of the expected size, and not blank."""

import subprocess
import sys
from pathlib import Path

import matplotlib.image
import pytest
from support import quiet

from pyro_vae.training.trainer import train
from pyro_vae.viz import compare_runs

REPO = Path(__file__).resolve().parents[2]
SIZES = {"samples.png": (1200, 650), "reconstructions.png": (600, 352), "latent_space.png": (700, 600),
         "learning_curves.png": (1100, 400), "manifold.png": (700, 750)}


def check_png(path: Path, size: tuple[int, int]) -> None:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
    pixels = matplotlib.image.imread(path)
    assert (pixels.shape[1], pixels.shape[0]) == size, (path.name, pixels.shape)
    assert pixels[..., :3].var() > 1e-3, f"{path.name} is blank"


@pytest.fixture(scope="module")
def runs(data_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    made = {}
    for latent_dim in (2, 8):
        out = root / f"z{latent_dim}"
        train({"data_dir": data_dir, "limit_train": 512, "limit_test": 200, "batch_size": 64, "hidden": [64],
               "latent_dim": latent_dim, "epochs": 2, "out": str(out)}, log=quiet, progress=False)
        made[latent_dim] = out
    return made


@pytest.mark.parametrize("latent_dim", [2, 8])
def test_training_draws_every_figure(runs, latent_dim):
    figures = runs[latent_dim] / "figures"
    expected = set(SIZES) if latent_dim == 2 else set(SIZES) - {"manifold.png"}  # manifold: 2-D z only
    assert {p.name for p in figures.iterdir()} == expected
    for name in expected:
        check_png(figures / name, SIZES[name])


def test_compare_runs(runs, tmp_path):
    paths = compare_runs([runs[2], runs[8]], tmp_path / "cmp")
    check_png(paths["figure"], (1200, 450))
    table = paths["markdown"].read_text()
    assert "| z2 | trace | 2 |" in table and "| z8 | trace | 2 |" in table and "not evaluated" in table


def test_plot_and_compare_scripts(runs, data_dir, tmp_path):
    def script(name, *args):
        return subprocess.run([sys.executable, str(REPO / "scripts" / name), *args], capture_output=True,
                              text=True, timeout=300, cwd=tmp_path)

    redrawn = script("plot_run.py", str(runs[8]), "--data-dir", data_dir)
    assert redrawn.returncode == 0, redrawn.stderr
    assert "latent_space.png" in redrawn.stdout
    compared = script("compare.py", str(runs[2]), str(runs[8]), "--out", "cmp")
    assert compared.returncode == 0 and (tmp_path / "cmp" / "compare.png").is_file()
    not_a_run = script("compare.py", str(tmp_path))
    assert not_a_run.returncode == 2 and "is it a run directory" in not_a_run.stderr


def test_sweep_trains_each_run_then_compares(data_dir, tmp_path):
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text("name: tiny\nbase: {limit_train: 128, limit_test: 32, batch_size: 32, hidden: [16], "
                     "latent_dim: 2, epochs: 1, plots: false, eval_samples: 25}\n"
                     "runs:\n  reparam: {}\n  score-avg: {estimator: score, baseline: avg}\n")
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "compare.py"), "--sweep", str(sweep),
                             "--data-dir", data_dir], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    table = (tmp_path / "runs" / "tiny" / "compare.md").read_text()
    assert "| reparam | trace |" in table and "| score-avg | score/tracegraph+avg |" in table
    assert "(K = 25)" in table


def test_shipped_sweep_config_is_valid():
    import yaml

    from pyro_vae.config import make_config

    spec = yaml.safe_load((REPO / "configs" / "sweeps" / "estimator_comparison.yaml").read_text())
    for overrides in spec["runs"].values():
        make_config({**spec["base"], **overrides})
