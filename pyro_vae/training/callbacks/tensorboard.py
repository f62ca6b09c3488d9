"""TensorBoard logs of a run (``tensorboard``): every epoch's scalars, and image grids of samples
and reconstructions every few epochs, through ``torch.utils.tensorboard``.

``tensorboard`` names the log directory; ``RUN/...`` is inside the run directory
(``RUN/tensorboard``, what the flag alone gives), where no folder on the way may be a link (a
shared run directory must not steer the writes out of itself); any other directory is the user's
choice. The writer opens after the first checkpoint (a run that stops before it leaves nothing
behind). A resumed run logs its checkpoint's epoch again, hiding what a stopped process may have
logged after it (``purge_step``), or the whole history where the directory holds no logs yet.

Event files are append-only logs written as training goes, not atomically replaced files: a
killed process leaves a valid file that ends at its last flush (after every epoch).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import torch

from pyro_vae.config import check_path
from pyro_vae.core.atomic import make_directory, refuse_link, write_failure
from pyro_vae.core.errors import ConfigError, WriteError
from pyro_vae.core.options import option
from pyro_vae.models.decode import reconstruct, sample_images
from pyro_vae.training.callbacks import Callback
from pyro_vae.training.rng import seed_torch
from pyro_vae.training.schedule import learning_rate

if TYPE_CHECKING:
    from pyro_vae.runs.rundir import RunDir
    from pyro_vae.training.trainer import Trainer

IN_RUN = "RUN"  # the first part of a log directory inside the run directory
# Metrics (keys of metrics.jsonl) -> TensorBoard tags; the learning rate is logged as LR_TAG.
SCALAR_TAGS = {"train_loss": "loss/train", "test_elbo": "elbo/test", "valid_elbo": "elbo/valid",
               "beta": "kl_warmup/beta", "temperature": "relax/temperature", "train_seconds": "time/train_seconds",
               "epoch_seconds": "time/epoch_seconds", "wall_seconds": "time/wall_seconds"}
LR_TAG = "optim/lr"
IMAGE_TAGS = ("samples", "reconstructions")
# Image grids every 10 epochs (and at the first and last): a few dozen snapshots over a run of
# hundreds of epochs show the samples sharpen, while a 3,280-epoch IWAE schedule stays at a few
# tens of MB of PNGs; every epoch would make the images most of the log.
IMAGE_EVERY = 10


def require_tensorboard() -> None:
    if importlib.util.find_spec("tensorboard") is None:
        raise ConfigError(f"{option('tensorboard')} needs the tensorboard package: "
                          'pip install "pyro-vae[tensorboard]"')


def log_directory(value: str, run: Optional["RunDir"]) -> Path:
    """The directory ``value`` names; ``RUN/...`` inside ``run`` (refused for a run in memory)."""
    parts = Path(value).parts
    if parts and parts[0] == IN_RUN:
        if run is None:
            raise ConfigError(f"{option('tensorboard', value)} is a folder of the run directory, and a run "
                              f"in memory has none: name a directory, e.g. {option('tensorboard', 'logs/tb')}")
        if ".." in parts:
            raise ConfigError(f"{option('tensorboard', value)} leaves the run directory; name a folder in it, "
                              "or a directory of your own outside it")
        return run.path.joinpath(*parts[1:])
    return Path(value).expanduser()


class TensorBoardCallback(Callback):
    """Scalars every epoch (:data:`SCALAR_TAGS` and the learning rate, at step = epoch), and every
    ``image_every`` epochs a grid of ``num_images`` samples (the same prior draws each time) and
    one of test images (odd rows) above their reconstructions (even rows)."""

    def __init__(self, directory: str, image_every: int = IMAGE_EVERY, num_images: int = 64):
        require_tensorboard()
        check_path("tensorboard", directory)
        self.directory, self.image_every, self.num_images = directory, image_every, num_images
        self.writer = None
        self._resumed_at = 0

    def on_fit_start(self, trainer: "Trainer") -> None:
        self._in_run(trainer, make=False)  # a planted link is refused before training, not after an epoch
        self._resumed_at = trainer.state.epoch

    def _in_run(self, trainer: "Trainer", make: bool) -> Optional[Path]:
        """The log directory if it is inside the run directory (made if ``make``), each folder on
        the way down checked not to be a link; None if it is elsewhere."""
        path = log_directory(self.directory, trainer.run)
        if Path(self.directory).parts[0] != IN_RUN:
            return None
        folder = trainer.run.path
        for part in path.relative_to(folder).parts:
            folder = folder / part
            if make:
                make_directory(folder)
            else:
                refuse_link(folder)
        return path

    def _open(self, trainer: "Trainer"):
        from torch.utils.tensorboard import SummaryWriter

        path = self._in_run(trainer, make=True)
        if path is None:  # the user's own directory
            path = log_directory(self.directory, trainer.run)
            try:
                path.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise write_failure(path, e) from None
        earlier = any(path.glob("events.out.tfevents.*"))
        history = trainer.state.history
        if not self._resumed_at:
            writer, again = SummaryWriter(str(path)), []
        elif earlier:
            writer, again = SummaryWriter(str(path), purge_step=self._resumed_at), history[-2:-1]
        else:
            writer, again = SummaryWriter(str(path)), history[:-1]
        for record in again:
            self._scalars(writer, trainer, record)
        return writer

    def on_epoch_end(self, trainer: "Trainer", record: dict[str, Any]) -> None:
        if self.writer is None:
            try:
                self.writer = self._open(trainer)
            except WriteError as e:
                raise WriteError(f"{e}. {trainer.kept()}", e.errno) from None
        self._scalars(self.writer, trainer, record)
        epoch = record["epoch"]
        if epoch == 1 or epoch % self.image_every == 0 or epoch == trainer.cfg.optim.epochs:
            self._images(trainer, epoch)
        self.writer.flush()

    def _scalars(self, writer, trainer: "Trainer", record: dict[str, Any]) -> None:
        epoch, cfg = record["epoch"], trainer.cfg
        for key, tag in SCALAR_TAGS.items():
            if key in record:
                writer.add_scalar(tag, record[key], epoch)
        writer.add_scalar(LR_TAG, learning_rate(cfg.optim.lr_schedule, cfg.optim.lr, epoch, cfg.optim.lr_schedule_scale), epoch)

    def _images(self, trainer: "Trainer", epoch: int) -> None:
        """Drawn from a generator forked at the run's seed: the same draws at every epoch, and
        the training stream untouched (a run with and without TensorBoard is the same run)."""
        from torchvision.utils import make_grid

        model, data, device = trainer.model, trainer.data, trainer.device
        shape, x_dim = data.image_shape, data.test.shape[1]
        model.eval()
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            seed_torch(trainer.cfg.run.seed, device)
            samples = sample_images(model, self.num_images, x_dim, device)
            x = data.test[:self.num_images // 2]
            pairs = torch.stack([x, reconstruct(model, x)], 1)  # (n, 2, x_dim)
        rows = pairs.reshape(-1, 8, 2, x_dim).transpose(1, 2) if len(x) % 8 == 0 else pairs
        for tag, images in zip(IMAGE_TAGS, (samples, rows.reshape(-1, x_dim))):
            grid = make_grid(images.reshape(-1, *shape).float().cpu(), nrow=8)
            self.writer.add_image(tag, grid, epoch)

    def on_fit_exit(self, trainer: "Trainer") -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
