"""Running pyro-vae's commands as a user would, in a subprocess, and injecting faults into them
(tests/system/test_faults.py, tests/evaluation/test_paired_results.py)."""

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from pyro_vae.training.trainer import train
from support import REPO, quiet

# Long enough epochs (64 steps) that a kill lands inside one, small enough to take a second.
RUN = ["--limit-train", "2048", "--limit-test", "64", "--batch-size", "32", "--hidden", "32",
       "--latent-dim", "4", "--no-plots"]


def command(script: str, *args: str, data_dir: str, prelude: str = "") -> list[str]:
    """``python scripts/<script> args``; ``prelude`` is Python run first in the same process
    (to inject a fault into pyro-vae's own functions)."""
    launch = (f"import runpy, sys\n{prelude}\nsys.argv = [{script!r}] + sys.argv[1:]\n"
              f"runpy.run_path({str(REPO / 'scripts' / script)!r}, run_name='__main__')\n")
    return [sys.executable, "-c", launch, *args, "--data-dir", data_dir]


def run(script: str, *args: str, data_dir: str, prelude: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(command(script, *args, data_dir=data_dir, prelude=prelude),
                          capture_output=True, text=True, timeout=300, cwd=REPO)


def one_line_error(result: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]



def train_here(out: Path, data_dir: str, epochs: int = 1) -> None:
    """The same run as ``RUN`` trained in this process (quicker than a subprocess)."""
    train({"data_dir": data_dir, "limit_train": 2048, "limit_test": 64, "batch_size": 32, "hidden": [32],
           "latent_dim": 4, "plots": False, "epochs": epochs, "out": str(out)}, log=quiet, progress=False)


def ctrl_c_acts() -> None:
    """In the child, before Python starts: SIGINT at its default, so that Python turns it into
    KeyboardInterrupt even where the tests run in the background (``cmd &`` ignores SIGINT, and
    an ignored signal stays ignored across exec)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_for(predicate, process: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def enospc_in(name: str) -> str:
    """Prelude: the first write of a file called ``name`` fails with ENOSPC halfway through (in
    :mod:`pyro_vae.core.atomic`, through which every file is written)."""
    return textwrap.dedent(f"""
        import errno, pyro_vae.core.atomic as atomic
        real, failed = atomic._stage, []
        def full_disk(path, content):
            if path.name == {name!r} and not failed:  # the first such write only
                failed.append(path)
                def half(f):
                    f.write(b"x" * 100)
                    raise OSError(errno.ENOSPC, "No space left on device")
                content = half
            return real(path, content)
        atomic._stage = full_disk
    """)
