"""Plots saved as PNG in the run directory."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def confusion_matrix_png(confmat, class_names: list[str], path: Path, title: str) -> Path:
    """Row-normalised confusion matrix with counts, rows = true class."""
    cm = np.asarray(confmat, dtype=float)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    size = 1.0 + 0.55 * len(class_names)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    image = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center", fontsize=7,
                    color="white" if norm[i, j] > 0.5 else "black")
    return _save(fig, path, colorbar=(image, ax))


def accuracy_matrix_png(R, task_names: list[str], path: Path, title: str) -> Path:
    """Heat map of a continual accuracy matrix R[i][j] (row = after step i, column = task j; upper part blank)."""
    T = len(R)
    matrix = np.full((T, T), np.nan)
    for i, row in enumerate(R):
        matrix[i, : len(row)] = row
    size = 2.0 + 0.5 * T
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    image = ax.imshow(matrix, cmap="viridis", vmin=0, vmax=1)
    ax.set_xticks(range(T), task_names, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(T), [f"after {i}" for i in range(T)], fontsize=7)
    ax.set_xlabel("task (classes added)")
    ax.set_ylabel("training step")
    ax.set_title(title)
    if T <= 24:
        for i in range(T):
            for j in range(i + 1):
                ax.text(j, i, f"{100 * matrix[i, j]:.0f}", ha="center", va="center", fontsize=6,
                        color="black" if matrix[i, j] > 0.6 else "white")
    return _save(fig, path, colorbar=(image, ax))


def image_grid_png(images: list[np.ndarray], titles: list[str], path: Path, title: str, cols: int = 7) -> Path:
    """RGB uint8 images (any sizes) in a titled grid."""
    rows = -(-len(images) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.7 * cols, 1.9 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, name in zip(axes.flat, images, titles, strict=False):
        ax.imshow(image)
        ax.set_title(name, fontsize=7)
    fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def heatmap_png(table, path: Path, title: str, xlabel: str, ylabel: str) -> Path:
    """A labelled table of values in [0, 1] (pandas DataFrame: index = rows) as a heat map with its numbers."""
    values = table.to_numpy(dtype=float)
    rows, cols = values.shape
    fig, ax = plt.subplots(figsize=(2.5 + 1.2 * cols, 2.4 + 0.6 * rows))
    image = ax.imshow(values, cmap="viridis", vmin=0, vmax=1)
    ax.set_xticks(range(cols), [str(c) for c in table.columns], rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(rows), [str(r) for r in table.index], fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    for i in range(rows):
        for j in range(cols):
            if np.isfinite(values[i, j]):
                ax.text(j, i, f"{values[i, j]:.3f}", ha="center", va="center", fontsize=8,
                        color="black" if values[i, j] > 0.6 else "white")
    return _save(fig, path, colorbar=(image, ax))


def _save(fig, path: Path, colorbar=None) -> Path:
    """Lay out, add the colour bar of ``(image, ax)`` if given, write the PNG and free the figure."""
    if colorbar is not None:
        fig.colorbar(colorbar[0], ax=colorbar[1], fraction=0.046)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
