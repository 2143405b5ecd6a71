"""Zero-shot compound expressions from basic-expression probabilities (Savchenko, arXiv 2403.11590;
av-savchenko/face-emotion-recognition ``src/ABAW/ABAW6/cexpr.ipynb``).

Compound score = mean of the probabilities of its two basic parents (``labels.COMPOUND_PARENTS``); with several
faces in a frame, each compound takes its maximum over the faces; the prediction is the argmax.
"""

from __future__ import annotations

import numpy as np

from fer_bench import labels as L


def compound_scores(probs: np.ndarray, space_name: str, compounds: list[int]) -> np.ndarray:
    """(N, K) scores of the canonical ``compounds`` from (N, C) probabilities in the head order of ``space_name``."""
    position = {cid: i for i, cid in enumerate(L.space(space_name))}
    columns = []
    for cid in compounds:
        parents = L.COMPOUND_PARENTS.get(cid)
        if parents is None or any(p not in position for p in parents):
            raise ValueError(f"compound '{L.COMPOUNDS[cid]}' has no two basic parents in label space '{space_name}'")
        columns.append((probs[:, position[parents[0]]] + probs[:, position[parents[1]]]) / 2)
    return np.stack(columns, axis=1)


def max_over_faces(scores: np.ndarray, frame_ids: np.ndarray) -> np.ndarray:
    """Every row replaced by the column-wise maximum over the rows (faces) of its frame."""
    _, inverse = np.unique(frame_ids, return_inverse=True)
    best = np.full((inverse.max() + 1, scores.shape[1]), -np.inf)
    np.maximum.at(best, inverse, scores)
    return best[inverse]


def compound_set(name: str) -> list[int]:
    """Canonical compound ids of a compound data set's classes (a ``labels.NATIVE_TABLES`` entry), in its order."""
    table = L.NATIVE_TABLES.get(name)
    if table is None or not table.compound:
        known = ", ".join(n for n, t in L.NATIVE_TABLES.items() if t.compound)
        raise ValueError(f"compounds='{name}' is not a compound label table; known: {known}")
    return list(table.to_canonical)
