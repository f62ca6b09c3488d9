"""The figures of the studies (:mod:`pyro_vae.studies`): the reproduction table's curves and
the gradient-variance bars.

Here rather than beside the studies because figures are this layer's job: a study computes
rows, this module draws them, and the studies' tests need not draw.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from pyro_vae.core.atomic import save_figure
from pyro_vae.viz.common import plt, write_figure


def plot_reproduction(rows: list[dict[str, Any]], path: Path) -> Path:
    """Test -ELBO (one sample, each epoch) against training time for every row of a reproduction
    table, with the row's final NLL (K-sample estimate) as a marker and the paper's NLL as a
    dashed line in the same colour."""
    fig, ax = plt.subplots(figsize=(9, 5.5))
    for i, row in enumerate(rows):
        color = f"C{i % 10}"
        hours = [p["hours"] for p in row["curve"]]
        label = Path(row["config"]).stem
        ax.plot(hours, [p["test_nelbo"] for p in row["curve"]], color=color, alpha=0.6,
                label=f"{label}: test -ELBO")
        ax.errorbar([row["hours_to_evaluated_epoch"]], [row["nll"]], yerr=[row["stderr"]], fmt="o",
                    color=color, label=f"{label}: NLL {row['nll']:.2f} (K = {row['num_samples']})")
        if row.get("paper_nll") is not None:
            ax.axhline(row["paper_nll"], color=color, linestyle="--", linewidth=1)
    values = [row["nll"] for row in rows] + [row["paper_nll"] for row in rows if row.get("paper_nll")]
    if values:  # the interesting range: from below the best number to well above it
        ax.set_ylim(min(values) - 2, max(values) + 12)
    ax.set_xlabel("training wall time (hours)")
    ax.set_ylabel("nats per test image (lower is better)")
    ax.set_title("reproduction: -ELBO per epoch, final NLL (dots), paper NLL (dashed)")
    ax.grid(alpha=0.3)
    if rows:  # a table of rows none of which could be drawn has nothing to label
        ax.legend(fontsize=7)
    return write_figure(fig, path)


def plot_grad_variance(rows: list[dict[str, Any]], path: Path, title: str, groups: Sequence[str]) -> Path:
    """Per estimator (a row of :func:`~pyro_vae.studies.gradient_moments.measure`): the gradient
    variance and signal-to-noise ratio of each parameter group in ``groups`` (log scales), and
    the wall time per gradient."""
    names = [r["estimator"] for r in rows]
    pos = range(len(rows))
    width = 0.38
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    for ax, key, label in ((axes[0], "variance", "gradient variance per parameter (log scale)"),
                           (axes[1], "snr", "signal-to-noise ratio |mean| / sd (log scale)")):
        for i, g in enumerate(groups):
            ax.bar([p + (i - 0.5) * width for p in pos], [r[f"{g}_{key}"] for r in rows], width,
                   label=g)
        ax.set_yscale("log")
        ax.set_ylabel(label)
    axes[2].bar(list(pos), [r["ms_per_gradient"] for r in rows], color="grey")
    axes[2].set_ylabel("wall time per gradient (ms)")
    for ax in axes:
        ax.set_xticks(list(pos), names, rotation=35, ha="right")
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(title)
    fig.legend(*axes[0].get_legend_handles_labels(), loc="upper right", ncol=2)
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    try:
        return save_figure(fig, path, dpi=90)
    finally:
        plt.close(fig)
