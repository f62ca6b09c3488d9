"""The run section: where and how a run executes (device, seed, compiled step, precision), where
it is stored, and what it does at the end (evaluation, figures). None of it changes what the
model learns from a given seed, which is why most of it may change on resume."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Optional

from pyro_vae.config.sections.base import Section, setting
from pyro_vae.core.errors import ConfigError

DEVICES = ("cpu", "cuda", "auto")


@dataclass
class RunSection(Section):
    """Where and how the run executes (device, seed, compiled step, precision), where it is stored,
    and what it does at the end. Most of it may change on resume."""

    section: ClassVar[str] = "run"

    seed: int = setting(
        0, help="random seed (data order, binarization, samples)",
        doc="seeds data order, binarization and sampling, in [0, 2^32 - 1]; same seed, flags and "
            "device give identical metrics on CPU")
    device: str = setting("auto", choices=DEVICES, help="cpu | cuda | auto",
                          doc="`cpu`, `cuda`, or `auto` (CUDA when available)")
    compile: bool = setting(
        True, aliases=("jit",),
        help="run each step as one traced graph of tensor operations (--no-compile: Pyro's "
             "eager step); --jit is the same flag",
        doc="run each step as one graph of tensor operations traced from the model, guide and "
            "objective (see [Performance](performance.md#performance)); `--no-compile` runs "
            "Pyro's eager `loss_and_grads`. Where tracing would be wrong the step runs eagerly "
            "and the run's log says why. `jit`/`--jit` is an older name for the same key (old "
            "runs saved `jit: false` and resume eagerly)")
    tf32: bool = setting(
        False, help="CUDA: let training's float32 matmuls and convolutions use TF32 (default off: "
                    "full float32); log p(x) evaluations always run without it",
        doc="CUDA: let training's float32 matrix products and convolutions use TF32 tensor cores "
            "(faster, about 1e-3 relative error per product); `false` is full float32 "
            "everywhere, cuDNN convolutions included (PyTorch's own default allows TF32 there). "
            "Log p(x) evaluations (`evaluate.py`, `--eval-samples`, AIS) always run without "
            "TF32: it has not been measured to change the estimate by less than its standard "
            "error. No effect on the CPU")
    eval_samples: Optional[int] = setting(
        None, minimum=1, shown="none",
        help="after training, estimate log p(x) on the test split with K samples",
        doc="after training, estimate log p(x) on the test split with K samples and write "
            "`eval.json` (see [Evaluating](evaluation.md#evaluating-the-marginal-log-likelihood-log-px))")
    train_elbo: bool = setting(
        False, help="after every epoch, record the one-sample ELBO of the whole training split "
                    "(train_elbo in metrics.jsonl)",
        doc="after every epoch, score the whole training split with the same one-sample ELBO as "
            "`test_elbo` and record it as `train_elbo`: the measure of the discrete-VAE papers' "
            "\"highest training ELBO\" (Tucker et al. 2017; Grathwohl et al. 2018), comparable "
            "across objectives (the training loss of a K-sample bound or a relaxation is not an "
            "ELBO). Costs one forward pass over the training split per epoch; may change on resume")
    plots: bool = setting(
        True, help="draw the run's figures at the end of training (--no-plots to skip)",
        doc="draw the run's figures into `RUN_DIR/figures/` at the end of training (see "
            "[Pictures](results.md#pictures))")
    tensorboard: Optional[str] = setting(
        None, path=True, alone="RUN/tensorboard", shown="none",
        help="log scalars and image grids for TensorBoard into DIR (the flag alone: "
             "RUN/tensorboard, inside the run directory); needs pyro-vae[tensorboard]",
        doc="log every epoch's scalars (train loss, test/valid ELBO, beta, lr, seconds) and, every "
            "10 epochs, sample and reconstruction grids for TensorBoard into this directory; "
            "`--tensorboard` alone is `RUN/tensorboard`, inside the run directory. Needs "
            "`pip install \"pyro-vae[tensorboard]\"`; may change on resume")
    out: Optional[str] = setting(
        None, path=True, shown="`runs/<timestamp>`", help="run directory (default runs/<timestamp>)",
        doc="the run directory: new or empty (an existing run, or any file of yours, there is "
            "never overwritten)")
    resume: Optional[str] = setting(
        None, path=True, shown="none", help="continue the run in this run directory",
        doc="continue the run in this directory (see below)")

    def rules(self) -> None:
        if not 0 <= self.seed < 2**32:
            raise ConfigError(f"seed must be in [0, 2^32 - 1] (NumPy's and PyTorch's seed range), "
                              f"got {self.seed}")
