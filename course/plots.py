"""Pictures that the notebooks show: image grids, confusion matrices, learning curves."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np

from course import config, data


def draw_grid(fig, images: np.ndarray, labels: Sequence | None = None, ncols: int = 10,
              title: str | None = None, fontsize: int = 9, title_size: int | None = None):
    """Draw uint8 images (N, 28, 28) on `fig` in a grid, each titled with its label if given.

    Shared by `image_grid` (pyplot, shown inline) and `course.widgets` (a bare Figure).
    """
    images = np.asarray(images)
    n = len(images)
    if n == 0:
        raise ValueError("image_grid got no images to show.")
    nrows, ncols = grid_shape(n, ncols)
    for k in range(n):
        ax = fig.add_subplot(nrows, ncols, k + 1)
        ax.imshow(images[k], cmap="gray_r")
        ax.axis("off")
        if labels is not None:
            label = labels[k]
            text = data.class_name(label) if isinstance(label, (int, np.integer)) else str(label)
            ax.set_title(text, fontsize=fontsize)
    if title:
        fig.suptitle(title, fontsize=title_size)
    fig.tight_layout()
    return fig


def grid_shape(n: int, ncols: int) -> tuple[int, int]:
    """(rows, columns) of a grid of `n` images at most `ncols` wide."""
    ncols = max(1, min(ncols, n))
    return max(1, (n + ncols - 1) // ncols), ncols


def image_grid(images: np.ndarray, labels: Sequence | None = None, ncols: int = 10,
               title: str | None = None, size: float = 1.0):
    """Show uint8 images (N, 28, 28) in a grid, each titled with its label if given."""
    nrows, ncols = grid_shape(len(images), ncols)
    fig = plt.figure(figsize=(size * ncols, size * nrows * 1.15))
    return draw_grid(fig, images, labels, ncols, title)


def confusion_matrix(matrix: np.ndarray, labels: Sequence, title: str = "Confusion matrix",
                     normalize: bool = False):
    """Heat map of a confusion matrix (rows: true, columns: predicted) with counts."""
    matrix = np.asarray(matrix, dtype=float)
    shown = matrix / matrix.sum(axis=1, keepdims=True).clip(min=1) if normalize else matrix
    names = [data.class_name(v) if isinstance(v, (int, np.integer)) else str(v) for v in labels]
    fig, ax = plt.subplots(figsize=(0.55 * len(names) + 2, 0.55 * len(names) + 1.5))
    ax.imshow(shown, cmap="Blues")
    ax.set_xticks(range(len(names)), names)
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    threshold = shown.max() / 2 if shown.size else 0
    for i in range(len(names)):
        for j in range(len(names)):
            value = f"{shown[i, j]:.2f}" if normalize else f"{int(matrix[i, j])}"
            ax.text(j, i, value, ha="center", va="center", fontsize=7,
                    color="white" if shown[i, j] > threshold else "black")
    fig.tight_layout()
    return fig


def learning_curve(curves: Mapping[str, tuple[Sequence, Sequence]] | tuple[Sequence, Sequence],
                   target: float = config.TARGET_ACCURACY, title: str = "Accuracy vs annotations",
                   bands: Mapping[str, tuple[Sequence, Sequence]] | None = None,
                   ylabel: str = "accuracy on held-out images", xlabel: str = "annotations"):
    """Accuracy against number of annotations, one line per method, with the target line.

    curves: {name: (annotations, accuracies)} or a single (annotations, accuracies).
    bands: optional {name: (low, high)} shaded around the line (e.g. min/max over seeds).
    ylabel, xlabel: what the axes measure, e.g. "accuracy on held-out proxy images" for a
    `course.proxy` curve (`f"accuracy on {curves.measured_on}"`).
    """
    if isinstance(curves, tuple):
        curves = {"accuracy": curves}
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for name, (x, y) in curves.items():
        (line,) = ax.plot(x, y, marker="o", markersize=3, label=name)
        if bands and name in bands:
            low, high = bands[name]
            ax.fill_between(x, low, high, color=line.get_color(), alpha=0.15)
    ax.axhline(target, color="crimson", linestyle="--", linewidth=1, label=f"target {target:.0%}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_ylim(min(0.4, ax.get_ylim()[0]), 1.005)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    ax.set_title(title)
    fig.tight_layout()
    return fig
