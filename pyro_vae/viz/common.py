"""What every figure shares: matplotlib's non-interactive Agg backend (no display needed), the
resolution, atomic PNG writes, image grids, and labels that matplotlib shows as written.

pyplot is imported here, after the backend is chosen, and the figure modules take ``plt`` from
here: whichever of them is imported first, no figure is drawn with an interactive backend.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from torchvision.utils import make_grid  # noqa: E402

from pyro_vae.core.atomic import save_figure  # noqa: E402

__all__ = ["DPI", "plain", "plt", "show_grid", "write_figure"]

DPI = 100


def write_figure(fig, path: Path) -> Path:
    """``fig`` laid out and written to ``path`` as a PNG (atomically), then closed."""
    fig.tight_layout()
    try:
        return save_figure(fig, path, dpi=DPI)
    finally:
        plt.close(fig)


def plain(text) -> str:
    """``text`` as a matplotlib label shows it: a '$' (in a run's name, say) would start mathtext."""
    return str(text).replace("$", r"\$")


def show_grid(images: torch.Tensor, nrow: int, title: str, path: Path, size: float = 6.0) -> Path:
    """Pixel probabilities ``(N, 1, 28, 28)`` as one grid image with a title."""
    grid = make_grid(images.detach().cpu().clamp(0, 1), nrow=nrow, padding=2, pad_value=1.0)
    fig, ax = plt.subplots(figsize=(size, size * grid.shape[1] / grid.shape[2] + 0.5))
    ax.imshow(grid.permute(1, 2, 0).numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_title(title)
    ax.axis("off")
    return write_figure(fig, path)
