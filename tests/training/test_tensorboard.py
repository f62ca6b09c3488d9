"""TensorBoard logs (``tensorboard``): the event files, read back with TensorBoard's own reader,
hold every epoch's scalars as metrics.jsonl has them and the image grids; a resume logs each
epoch once; the default directory stays inside the run directory; a missing package is one line."""

import json
from pathlib import Path

import numpy as np
import pytest
from support import quiet, run_script

from pyro_vae.config import Config
from pyro_vae.core.errors import ConfigError, WriteError
from pyro_vae.runs.rundir import RunDir
from pyro_vae.training.callbacks.tensorboard import IMAGE_TAGS, LR_TAG, SCALAR_TAGS
from pyro_vae.training.trainer import Trainer, train

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

TB_RUN = {"valid_size": 64, "kl_warmup": 2.0, "epochs": 3, "lr_schedule": "iwae"}
IWAE_LRS = [1e-3, 1e-3 * 10 ** (-1 / 7), 1e-3 * 10 ** (-1 / 7)]  # epoch 1 in stage 0, epochs 2-4 in stage 1
GRID = 8 * (28 + 2) + 2  # make_grid of 64 images of 28x28 in rows of 8, 2 pixels of padding


def events(directory) -> EventAccumulator:
    accumulator = EventAccumulator(str(directory), size_guidance={"scalars": 0, "images": 0})
    accumulator.Reload()
    return accumulator


def scalars(accumulator, tag) -> list[tuple[int, float]]:
    return [(e.step, e.value) for e in accumulator.Scalars(tag)]


def assert_logs_the_metrics(directory, metrics, lrs) -> None:
    logged = events(directory)
    expected = {tag for key, tag in SCALAR_TAGS.items() if key in metrics[0]} | {LR_TAG}
    assert set(logged.Tags()["scalars"]) == expected
    for key, tag in SCALAR_TAGS.items():
        if key in metrics[0]:  # one value per epoch, the metric as float32 (TensorBoard's type)
            assert scalars(logged, tag) == [(r["epoch"], float(np.float32(r[key]))) for r in metrics], tag
    assert scalars(logged, LR_TAG) == [(r["epoch"], float(np.float32(lr))) for r, lr in zip(metrics, lrs)]


def test_the_event_files_hold_the_metrics_and_the_images(small_run):
    trainer = train({**small_run, **TB_RUN, "tensorboard": "RUN/tensorboard"}, log=quiet, progress=False)
    run = RunDir(small_run["out"])
    metrics = run.read_metrics()
    assert {"valid_elbo", "beta"} <= set(metrics[0])
    assert trainer.cfg.optim.lr == 1e-3
    assert_logs_the_metrics(run.path / "tensorboard", metrics, IWAE_LRS)
    logged = events(run.path / "tensorboard")
    assert set(logged.Tags()["images"]) == set(IMAGE_TAGS)
    for tag in IMAGE_TAGS:
        images = logged.Images(tag)
        assert [i.step for i in images] == [1, 3]  # the first and the last epoch (every 10 besides)
        assert all((i.width, i.height) == (GRID, GRID) for i in images)
        assert all(i.encoded_image_string.startswith(b"\x89PNG") for i in images)


def test_a_run_with_tensorboard_is_the_same_run(small_run, tmp_path):
    """The images are drawn from a forked generator: the training stream is untouched."""
    plain = train({**small_run, **TB_RUN}, log=quiet, progress=False)
    logged = train({**small_run, **TB_RUN, "out": str(tmp_path / "tb"), "tensorboard": "RUN/tensorboard"},
                   log=quiet, progress=False)
    times = ("train_seconds", "epoch_seconds", "wall_seconds")
    assert [{k: v for k, v in r.items() if k not in times} for r in plain.history] == \
        [{k: v for k, v in r.items() if k not in times} for r in logged.history]


def test_the_flag_alone_logs_into_the_run_directory(small_run, capsys, tmp_path):
    out = tmp_path / "cli"
    status, err = run_script(capsys, "svi_train", "--data-dir", small_run["data_dir"], "--limit-train", "64",
                             "--limit-test", "16", "--batch-size", "32", "--hidden", "16", "--latent-dim", "2",
                             "--epochs", "1", "--no-plots", "--device", "cpu", "--out", out, "--tensorboard")
    assert status == 0, err
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    assert json.loads((out / "metrics.jsonl").read_text().splitlines()[0])["epoch"] == 1
    elsewhere = tmp_path / "logs" / "tb"
    status, err = run_script(capsys, "svi_train", "--resume", out, "--epochs", "2", "--tensorboard", elsewhere)
    assert status == 0, err
    assert_logs_the_metrics(elsewhere, RunDir(out).read_metrics(), [1e-3, 1e-3])  # the whole history


def test_a_resumed_run_logs_each_epoch_once(small_run):
    small_run.update(TB_RUN, tensorboard="RUN/tb")
    train({**small_run, "epochs": 2}, log=quiet, progress=False)
    tb = Path(small_run["out"]) / "tb"
    first = list(tb.glob("events.out.tfevents.*"))
    train({"resume": small_run["out"], "epochs": 3}, log=quiet, progress=False)
    assert len(list(tb.glob("events.out.tfevents.*"))) == len(first) + 1
    assert_logs_the_metrics(tb, RunDir(small_run["out"]).read_metrics(), IWAE_LRS)


def test_a_link_planted_at_the_default_directory_is_refused(small_run, tmp_path):
    train({**small_run, "epochs": 1}, log=quiet, progress=False)
    outside = tmp_path / "outside"
    outside.mkdir()
    (Path(small_run["out"]) / "tensorboard").symlink_to(outside, target_is_directory=True)
    before = RunDir(small_run["out"]).checkpoint_path.read_bytes()
    with pytest.raises(WriteError, match="tensorboard is a symbolic link"):
        train({"resume": small_run["out"], "epochs": 2, "tensorboard": "RUN/tensorboard"}, log=quiet,
              progress=False)
    assert list(outside.iterdir()) == []
    assert RunDir(small_run["out"]).checkpoint_path.read_bytes() == before  # refused before training


@pytest.mark.parametrize("value", ["RUN/../elsewhere", "RUN/a/../../b"])
def test_a_run_folder_that_leaves_the_run_is_refused(small_run, value):
    with pytest.raises(ConfigError, match="leaves the run directory"):
        train({**small_run, "tensorboard": value}, log=quiet, progress=False)
    assert not Path(small_run["out"]).exists()


def test_in_memory_the_logs_go_where_they_are_told(small_run, tmp_path):
    cfg = Config.from_flat(**{**small_run, "out": None, "tensorboard": "RUN/tensorboard"})
    with pytest.raises(ConfigError) as refused:
        Trainer(cfg, in_memory=True, log=quiet, progress=False)
    assert "\n" not in str(refused.value) and "a run in memory has none" in str(refused.value)
    logs = tmp_path / "logs"
    trainer = Trainer(Config.from_flat(**{**small_run, "out": None, "tensorboard": str(logs)}), in_memory=True, log=quiet,
                      progress=False)
    trainer.fit()
    assert_logs_the_metrics(logs, trainer.history, [1e-3, 1e-3])


def test_without_the_package_one_line_says_what_to_install(small_run, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    with pytest.raises(ConfigError) as missing:
        train({**small_run, "tensorboard": "RUN/tensorboard"}, log=quiet, progress=False)
    assert str(missing.value) == 'tensorboard needs the tensorboard package: pip install "pyro-vae[tensorboard]"'
    assert not Path(small_run["out"]).exists()
