import json
import struct
import subprocess
import sys
from pathlib import Path

from support import quiet

from pyro_vae.studies import ESTIMATOR_SPECS, run_diagnostic
from pyro_vae.training.trainer import train

REPO = Path(__file__).resolve().parents[2]
TINY = {"hidden": [32], "latent_dim": 4, "batch_size": 16}


def png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", header[16:24])


def test_report_at_initialisation(data_dir, tmp_path):
    paths = run_diagnostic(None, {**TINY, "data_dir": data_dir, "out": str(tmp_path)}, repeats=12,
                           baseline_warmup=5, log=quiet)
    rows = {r["estimator"]: r for r in json.loads(paths["json"].read_text())["rows"]}
    # arm, disarm, rebar, relax and the relaxation are for discrete guides: skipped on this Normal one
    assert list(rows) == [name for name in ESTIMATOR_SPECS if name not in ("arm", "disarm", "rebar", "relax", "concrete")]
    for r in rows.values():
        for g in ("encoder", "decoder"):
            assert r[f"{g}_variance"] > 0 and r[f"{g}_snr"] > 0
        assert r["ms_per_gradient"] > 0
    # the score function's encoder gradient is noisier by orders of magnitude (measured: ~1e5 x)
    assert rows["score"]["encoder_variance"] > 100 * rows["reparam"]["encoder_variance"]
    # it does not touch the decoder's gradient, which is reparameterization-free either way
    assert rows["score"]["decoder_variance"] < 2 * rows["reparam"]["decoder_variance"]
    assert rows["iwae"]["num_particles"] == 5 and rows["reparam"]["num_particles"] == 1
    width, height = png_size(paths["figure"])
    assert width > 800 and height > 300
    assert "| score+avg | tracegraph | 1 |" in paths["markdown"].read_text()


def test_script_at_a_checkpoint_writes_into_the_run_directory(data_dir, tmp_path):
    run_dir = tmp_path / "run"
    train({**TINY, "data_dir": data_dir, "limit_train": 64, "limit_test": 16, "epochs": 1,
           "estimator": "score", "baseline": "nn", "out": str(run_dir)}, log=quiet, progress=False)
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "grad_variance.py"), str(run_dir), "--estimators",
         "reparam", "score+nn", "--repeats", "5", "--baseline-warmup", "2", "--data-dir", data_dir],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "(epoch 1)" in result.stdout
    for name in ("grad_variance.json", "grad_variance.md", "grad_variance.png"):
        assert (run_dir / name).is_file()


def test_script_needs_a_run_or_init():
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "grad_variance.py")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "one of the arguments run_dir --init is required" in result.stderr
