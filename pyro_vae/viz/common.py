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


def _grid(images: torch.Tensor, nrow: int) -> torch.Tensor:
    """Images ``(N, C, H, W)`` in [0, 1] (grey or colour) as one ``(3, H', W')`` grid."""
    return make_grid(images.detach().float().cpu().clamp(0, 1), nrow=nrow, padding=2, pad_value=1.0)


def show_grid(images: torch.Tensor, nrow: int, title: str, path: Path, size: float = 6.0) -> Path:
    """Images ``(N, C, H, W)`` in [0, 1] (pixel probabilities, grey levels or colour) as one grid
    image with a title."""
    return show_grids([images], nrow, [title], path, size)


def show_grids(panels: list[torch.Tensor], nrow: int, titles: list[str], path: Path, size: float = 6.0) -> Path:
    """Several :func:`show_grid` panels side by side, one title each."""
    grids = [_grid(images, nrow) for images in panels]
    height = size * grids[0].shape[1] / grids[0].shape[2] + 0.5
    fig, axes = plt.subplots(1, len(grids), figsize=(size * len(grids), height), squeeze=False)
    for ax, grid, title in zip(axes[0], grids, titles):
        ax.imshow(grid.permute(1, 2, 0).numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(title)
        ax.axis("off")
    return write_figure(fig, path)
