"""Temporal smoothing of per-frame predictions (HSEmotion ABAW-6 code,
av-savchenko/face-emotion-recognition ``src/ABAW/ABAW6/abaw6_affwild2.ipynb``).

Per video: frames without a prediction (no face) are filled by linear interpolation between the neighbouring
predicted frames, copying the first/last prediction outside their range; then frame i takes the mean of
predictions[max(i − δ, 0) : i + δ + 1] (a centred box, truncated at the ends). δ = 0 changes nothing.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np


def fill_gaps(frames: np.ndarray, values: np.ndarray, length: int) -> np.ndarray:
    """Values (length, K) on frames 0 … length − 1 from predictions at ``frames`` (several rows of one frame
    are averaged); linear in the gaps, constant beyond the first and last predicted frame."""
    known, inverse = np.unique(frames, return_inverse=True)
    sums = np.zeros((len(known), values.shape[1]))
    np.add.at(sums, inverse, values)
    means = sums / np.bincount(inverse)[:, None]
    grid = np.arange(length)
    return np.stack([np.interp(grid, known, means[:, k]) for k in range(values.shape[1])], axis=1)


def box_filter(values: np.ndarray, delta: int) -> np.ndarray:
    """Centred moving mean over ±``delta`` rows, the window truncated at both ends."""
    n = len(values)
    csum = np.concatenate([np.zeros((1, values.shape[1])), np.cumsum(values, axis=0)])
    lo = np.clip(np.arange(n) - delta, 0, n)
    hi = np.clip(np.arange(n) + delta + 1, 0, n)
    return (csum[hi] - csum[lo]) / (hi - lo)[:, None]


def smooth(videos: np.ndarray, frames: np.ndarray, values: np.ndarray, delta: int) -> np.ndarray:
    """Smoothed copy of ``values`` (N, K): rows grouped by video, ``frames`` their non-negative frame numbers."""
    values = np.asarray(values, dtype=np.float64)
    if delta == 0:
        return values.copy()
    out = np.empty_like(values)
    for video in np.unique(videos):
        rows = np.flatnonzero(videos == video)
        grid = fill_gaps(frames[rows], values[rows], int(frames[rows].max()) + 1)
        out[rows] = box_filter(grid, delta)[frames[rows]]
    return out


def frame_keys(paths) -> tuple[np.ndarray, np.ndarray]:
    """(video, frame) of frame images stored as ``<video folder>/<frame number>[suffix].<ext>``."""
    videos, frames = [], []
    for p in paths:
        path = Path(p)
        match = re.match(r"\d+", path.stem)
        if match is None:
            raise ValueError(f"frames=true needs images named by frame number (<video>/<number>.jpg), got {p}")
        videos.append(str(path.parent))
        frames.append(int(match.group()))
    return np.asarray(videos), np.asarray(frames)
