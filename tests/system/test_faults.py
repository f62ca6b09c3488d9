"""Fault injection: kill -9, Ctrl-C, a full disk, a read-only directory, two writers, damaged bytes.

Each test makes the fault happen to a real training or evaluation process (a subprocess, as a
user would run it) and checks what survives: the last checkpoint loads, a resumed run equals an
uninterrupted one bit for bit (CPU), and every message is one line without a traceback.
"""

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from support import quiet
from support.processes import RUN, command, ctrl_c_acts, enospc_in, one_line_error, run, train_here, wait_for

from pyro_vae.core.errors import CheckpointError, RunLockedError, WriteError
from pyro_vae.runs import checkpoint as checkpoint_module
from pyro_vae.runs.checkpoint import load_checkpoint
from pyro_vae.runs.lock import RunLock
from pyro_vae.runs.rundir import RunDir
from pyro_vae.training.trainer import Trainer, train

REPO = Path(__file__).resolve().parents[2]
TIMES = ("train_seconds", "epoch_seconds", "wall_seconds")


def outcome(run_dir: Path) -> tuple[dict, list]:
    """A run's final weights and its metrics without the wall-clock times."""
    state = load_checkpoint(run_dir / "checkpoint.pt")
    metrics = [{k: v for k, v in r.items() if k not in TIMES} for r in state["metrics"]]
    return state["model"], metrics


def assert_same_run(a: Path, b: Path) -> None:
    (weights_a, metrics_a), (weights_b, metrics_b) = outcome(a), outcome(b)
    assert metrics_a == metrics_b
    assert weights_a.keys() == weights_b.keys()
    for name in weights_a:
        assert torch.equal(weights_a[name], weights_b[name]), name
    assert RunDir(b).read_metrics() == load_checkpoint(b / "checkpoint.pt")["metrics"]


@pytest.fixture(scope="module")
def uninterrupted(data_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("reference") / "run"
    result = run("svi_train.py", *RUN, "--epochs", "3", "--out", str(out), data_dir=data_dir)
    assert result.returncode == 0, result.stderr
    return out


def test_kill_9_during_training_then_resume_equals_an_uninterrupted_run(uninterrupted, data_dir, tmp_path):
    out = tmp_path / "run"
    process = subprocess.Popen(command("svi_train.py", *RUN, "--epochs", "3", "--out", str(out),
                                       data_dir=data_dir), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for(lambda: (out / "metrics.jsonl").exists(), process)  # epoch 1 is saved; epoch 2 runs
    process.kill()
    process.communicate()
    assert load_checkpoint(out / "checkpoint.pt")["epoch"] < 3  # it really was cut short
    resumed = run("svi_train.py", "--resume", str(out), "--epochs", "3", data_dir=data_dir)
    assert resumed.returncode == 0, resumed.stderr
    assert_same_run(uninterrupted, out)


# Dies by SIGKILL halfway through writing the bytes of the second checkpoint (epoch 2).
DIE_IN_SECOND_CHECKPOINT_WRITE = textwrap.dedent("""
    import os, signal
    import pyro_vae.runs.checkpoint as checkpoint
    real, calls = checkpoint.atomic_write, []
    def dying_write(path, content):
        calls.append(path)
        if len(calls) == 2:
            def half_then_die(f):
                f.write(content[: len(content) // 2]); f.flush(); os.fsync(f.fileno())
                os.kill(os.getpid(), signal.SIGKILL)
            real(path, half_then_die)
        real(path, content)
    checkpoint.atomic_write = dying_write
""")


def test_kill_9_during_a_checkpoint_write_then_resume(uninterrupted, data_dir, tmp_path):
    out = tmp_path / "run"
    killed = run("svi_train.py", *RUN, "--epochs", "3", "--out", str(out), data_dir=data_dir,
                 prelude=DIE_IN_SECOND_CHECKPOINT_WRITE)
    assert killed.returncode == -signal.SIGKILL
    leftovers = [p.name for p in out.iterdir() if p.name.startswith(".checkpoint.pt.")]
    assert len(leftovers) == 1  # the half-written temporary file, never renamed
    assert load_checkpoint(out / "checkpoint.pt")["epoch"] == 1  # the previous one, intact
    resumed = run("svi_train.py", "--resume", str(out), "--epochs", "3", data_dir=data_dir)
    assert resumed.returncode == 0, resumed.stderr
    assert_same_run(uninterrupted, out)


def test_ctrl_c_names_the_run_directory_and_what_was_kept(data_dir, tmp_path):
    out = tmp_path / "run"
    process = subprocess.Popen(command("svi_train.py", *RUN, "--epochs", "3", "--out", str(out),
                                       data_dir=data_dir), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, preexec_fn=ctrl_c_acts)
    wait_for(lambda: (out / "metrics.jsonl").exists(), process)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130 and "Traceback" not in stderr
    assert "RUN_DIR" not in stderr
    assert f"The checkpoint of epoch 1 in {out} is intact: continue with python scripts/svi_train.py " \
           f"--resume {out}" in stderr


def test_ctrl_c_in_the_first_epoch_leaves_no_directory(data_dir, tmp_path):
    out = tmp_path / "run"
    process = subprocess.Popen(command("svi_train.py", *RUN, "--epochs", "3", "--out", str(out),
                                       data_dir=data_dir), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, preexec_fn=ctrl_c_acts)
    wait_for(lambda: "train loss = -ELBO" in (process.stdout.readline() or ""), process)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130 and "Traceback" not in stderr
    assert "interrupted during epoch 1. No epoch had finished, so no run directory was kept" in stderr
    assert not out.exists()


# Disk full ---------------------------------------------------------------------------------------

@pytest.fixture
def small_disk(tmp_path):
    """A mounted tmpfs of a given size (root and mount permission needed; else skipped)."""
    mounts = []

    def mount(size_bytes: int, read_only: bool = False) -> Path:
        point = tmp_path / f"disk{len(mounts)}"
        point.mkdir()
        options = f"size={size_bytes}" + (",ro" if read_only else "")
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)],
                                capture_output=True, text=True)
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({result.stderr.strip() or 'mount failed'}); "
                        "the monkeypatched ENOSPC tests cover the same code path")
        mounts.append(point)
        return point

    yield mount
    for point in mounts:
        subprocess.run(["umount", str(point)], capture_output=True)


def test_disk_full_while_writing_a_checkpoint_keeps_the_previous_one(uninterrupted, data_dir, small_disk):
    size = (uninterrupted / "checkpoint.pt").stat().st_size
    disk = small_disk(int(1.6 * size))  # one checkpoint fits; the next cannot sit beside it
    out = disk / "run"
    full = run("svi_train.py", *RUN, "--epochs", "3", "--out", str(out), data_dir=data_dir)
    assert full.returncode == 2
    message = one_line_error(full)
    assert f"could not write {out}/checkpoint.pt: the disk is full" in message
    assert f"The checkpoint of epoch 1 in {out} is intact" in message
    assert "inline_container" not in message
    assert load_checkpoint(out / "checkpoint.pt")["epoch"] == 1
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]  # no half-written file left


def test_disk_full_by_injection_names_the_cause(data_dir, tmp_path):
    out = tmp_path / "run"
    train_here(out, data_dir)
    saved = (out / "checkpoint.pt").read_bytes()
    full = run("svi_train.py", "--resume", str(out), "--epochs", "2", data_dir=data_dir,
               prelude=enospc_in("checkpoint.pt"))
    assert full.returncode == 2
    message = one_line_error(full)
    assert "checkpoint.pt: the disk is full" in message and "MiB free" in message
    assert f"The checkpoint of epoch 1 in {out} is intact" in message
    assert (out / "checkpoint.pt").read_bytes() == saved


def test_evaluation_results_survive_a_failed_write(data_dir, tmp_path):
    """eval.json cannot be written after the work: the report is printed and the results go to a
    fallback directory that the message names."""
    out = tmp_path / "run"
    train_here(out, data_dir)
    result = run("evaluate.py", str(out), "--num-samples", "30", "--limit", "8", data_dir=data_dir,
                 prelude=enospc_in("eval.json"))
    assert result.returncode == 2
    assert "log p(x) = " in result.stdout  # the report came before the failed write
    message = one_line_error(result)
    assert "eval.json: the disk is full" in message and "The results were written to " in message
    fallback = Path(message.split("The results were written to ", 1)[1].split("/eval.json")[0])
    saved = json.loads((fallback / "eval.json").read_text())
    assert saved["num_points"] == 8 and f"{saved['log_likelihood']:.3f}" in result.stdout
    assert (fallback / "eval_points.npz").is_file()


def test_evaluation_refuses_a_read_only_directory_before_working(data_dir, tmp_path, small_disk):
    disk = small_disk(8 * 2**20)
    out = disk / "run"
    train_here(out, data_dir)
    remount = subprocess.run(["mount", "-o", "remount,ro", str(disk)], capture_output=True, text=True)
    if remount.returncode != 0:
        pytest.skip(f"cannot remount read-only: {remount.stderr.strip()}")
    started = time.monotonic()
    result = run("evaluate.py", str(out), "--num-samples", "5000", data_dir=data_dir)
    assert result.returncode == 2 and time.monotonic() - started < 60  # refused, not computed
    message = one_line_error(result)
    assert "read-only" in message and "Nothing was computed; pass --out DIR" in message
    elsewhere = run("evaluate.py", str(out), "--num-samples", "30", "--limit", "8", "--out",
                    str(tmp_path / "results"), data_dir=data_dir)
    assert elsewhere.returncode == 0, elsewhere.stderr
    assert json.loads((tmp_path / "results" / "eval.json").read_text())["num_points"] == 8


def test_write_error_in_process_is_typed(small_run, monkeypatch):
    """The same fault through the Python API: a WriteError (an OSError) with errno ENOSPC."""
    train(small_run, log=quiet, progress=False)
    real = checkpoint_module.atomic_write

    def full(path, content):
        def fail(f):
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, fail)

    monkeypatch.setattr(checkpoint_module, "atomic_write", full)
    with pytest.raises(WriteError) as error:
        train({"resume": small_run["out"], "epochs": 3}, log=quiet, progress=False)
    assert error.value.errno == errno.ENOSPC and "epoch 2" in str(error.value)


# Two writers -------------------------------------------------------------------------------------

def hold_lock(directory: Path) -> subprocess.Popen:
    """Another process that holds the run directory's lock until it is killed."""
    code = (f"from pyro_vae.runs.lock import RunLock\nimport time\nRunLock({str(directory)!r}).__enter__()\n"
            "print('locked', flush=True)\ntime.sleep(600)\n")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_a_second_writer_is_refused_and_a_stale_lock_recovered(small_run, data_dir):
    train(small_run, log=quiet, progress=False)
    out = small_run["out"]
    holder = hold_lock(Path(out))
    try:
        with pytest.raises(RunLockedError, match=f"is in use by process {holder.pid} on .*two processes must not"):
            train({"resume": out, "epochs": 3}, log=quiet, progress=False)
        result = run("evaluate.py", out, "--num-samples", "5", data_dir=data_dir)
        assert result.returncode == 2 and f"in use by process {holder.pid}" in one_line_error(result)
    finally:
        holder.kill()  # kill -9: the kernel drops its lock, the lock file stays behind, stale
        holder.wait()
    assert (Path(out) / ".lock").exists()
    assert train({"resume": out, "epochs": 3}, log=quiet, progress=False).epoch == 3


def pause_after_first_epoch(go: Path) -> str:
    """Prelude: after writing its first epoch, training waits until the file ``go`` exists."""
    return textwrap.dedent(f"""
        import os, time
        from pyro_vae.runs.rundir import RunDir
        real = RunDir.write_metrics
        def write_then_wait(self, records):
            real(self, records)
            while len(records) == 1 and not os.path.exists({str(go)!r}):
                time.sleep(0.01)
        RunDir.write_metrics = write_then_wait
    """)


def test_two_trainings_on_one_directory(data_dir, tmp_path):
    """The issue's case: other processes on a training run's directory are refused with the
    trainer's PID, and the training finishes untouched."""
    out, go = tmp_path / "run", tmp_path / "go"
    first = subprocess.Popen(command("svi_train.py", *RUN, "--epochs", "3", "--out", str(out),
                                     data_dir=data_dir, prelude=pause_after_first_epoch(go)),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: (out / "metrics.jsonl").exists(), first)
    others = [subprocess.Popen(command(script, *args, data_dir=data_dir), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
              for script, args in (("svi_train.py", ["--resume", str(out), "--epochs", "6"]),
                                   ("evaluate.py", [str(out), "--num-samples", "5"]),
                                   ("plot_run.py", [str(out)]))]
    for other in others:
        _, stderr = other.communicate(timeout=120)
        assert other.returncode == 2 and "Traceback" not in stderr, stderr
        assert f"is in use by process {first.pid} on " in stderr
    go.touch()
    _, stderr = first.communicate(timeout=300)
    assert first.returncode == 0, stderr
    assert load_checkpoint(out / "checkpoint.pt")["epoch"] == 3
    assert [r["epoch"] for r in RunDir(out).read_metrics()] == [1, 2, 3]
    assert not (out / "eval.json").exists() and not (out / "figures").exists()


def test_lock_is_reentrant_within_a_process(tmp_path):
    with RunLock(tmp_path):
        with RunLock(tmp_path):
            pass
        assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()
    # released: another process may take it now
    code = f"from pyro_vae.runs.lock import RunLock\nRunLock({str(tmp_path)!r}).__enter__()\nprint('ok')"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "ok"


def test_resume_refuses_a_checkpoint_changed_after_it_was_read(small_run):
    train(small_run, log=quiet, progress=False)
    trainer = Trainer.resume(small_run["out"], {"epochs": 3}, log=quiet, progress=False)
    train({"resume": small_run["out"], "epochs": 3}, log=quiet, progress=False)  # another writer, meanwhile
    with pytest.raises(CheckpointError, match="changed after this process read it"):
        trainer.fit()


# Damaged bytes -----------------------------------------------------------------------------------

def test_bytes_overwritten_in_place_are_detected(data_dir, tmp_path):
    out = tmp_path / "run"
    train_here(out, data_dir)
    path = out / "checkpoint.pt"
    data = bytearray(path.read_bytes())
    middle = len(data) // 2  # inside the tensors' data, which torch's zip reader does not verify
    data[middle:middle + 16] = b"\x7f" * 16
    path.write_bytes(bytes(data))
    for script, args in (("svi_train.py", ["--resume", str(out), "--epochs", "2"]),
                         ("evaluate.py", [str(out), "--num-samples", "5"])):
        result = run(script, *args, data_dir=data_dir)
        assert result.returncode == 2
        assert "do not match the SHA-256 checksum" in one_line_error(result)


def test_leftovers_of_a_run_killed_in_its_first_epoch_do_not_block_the_same_out(small_run):
    """kill -9 before the first checkpoint leaves the lock file (and maybe a temporary file of a
    write): the same --out is still a fresh directory."""
    out = Path(small_run["out"])
    out.mkdir()
    (out / ".lock").write_text("process 1 on elsewhere since then (killed)")
    (out / ".checkpoint.pt.1-abcd1234.tmp").write_bytes(b"half")
    assert train(small_run, log=quiet, progress=False).epoch == 2
