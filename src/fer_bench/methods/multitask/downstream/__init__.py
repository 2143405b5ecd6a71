"""Stages 3–5 of HSEmotion (Savchenko, arXiv 2403.11590): frozen features → simple heads → post-processing.

- ``extract``: a frozen multitask network over a data set → one parquet row per image (embedding, scores, labels).
- ``keras``: Dense heads trained with Keras semantics (Glorot init, Adam eps 1e-7, sample-weighted losses, L2).
- ``tasks``: the per-task heads (expr, va, au, intensity) and zero-shot ce, run on a features table.
- ``smoothing``: gap interpolation and the centred box filter for frame sequences.
- ``compound``: zero-shot compound expressions from basic-expression probabilities.
"""
