"""Numeric annotation files read with array operations: the lines written plainly (``width`` comma-separated
numbers) are parsed at once, every other line is handed back as text for a reader's line-by-line parse."""

from __future__ import annotations

from itertools import compress
from typing import NamedTuple

import numpy as np

_NUMBER_BYTE = np.zeros(256, dtype=bool)
_NUMBER_BYTE[list(b"0123456789.+-eE")] = True
_COMMA, _NEWLINE = ord(","), ord("\n")


class PlainLines(NamedTuple):
    numbers: np.ndarray  # int64 line numbers (1-based) of the plain lines
    tokens: np.ndarray  # their fields as bytes, shape (lines, width)
    values: np.ndarray  # the same fields as float64
    others: list[tuple[int, str]]  # (line number, text) of the other non-blank lines, in file order


def _per_line(mask: np.ndarray, starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
    """How many of the bytes of each line ``[start, stop)`` the mask marks."""
    running = np.concatenate([[0], np.cumsum(mask)])
    return running[stops] - running[starts]


def _floats(tokens: np.ndarray) -> np.ndarray:
    """``float`` of every token; short ones (at most two bytes, such as the labels 0, 1 and -1) are parsed once per
    distinct value."""
    if tokens.dtype.itemsize > 2:
        return tokens.astype(np.float64)
    distinct, at = np.unique(tokens.ravel(), return_inverse=True)
    return distinct.astype(np.float64)[at.ravel()].reshape(tokens.shape)


def plain_lines(file: str, width: int) -> PlainLines:
    """The lines after the header line of a text file (read like ``open``: universal newlines), split into
    plain lines — exactly ``width`` comma-separated fields of ``[0-9.+-eE]`` that all parse as floats, with
    no spaces — and the others (blank lines dropped). Line numbers count the header as line 1."""
    with open(file) as f:
        text = f.read()
    cut = text.find("\n")
    body = text[cut + 1:] if cut >= 0 else ""
    rows = None
    if body.isascii():
        data = body.encode("ascii")
        buf = np.frombuffer(data, dtype=np.uint8)
        breaks = np.flatnonzero(buf == _NEWLINE)
        starts, stops = np.concatenate([[0], breaks + 1]), np.concatenate([breaks, [len(buf)]])
        number = _NUMBER_BYTE[buf]
        begins = number.copy()
        begins[1:] &= ~number[:-1]
        comma = buf == _COMMA
        plain = ((_per_line(~number & ~comma & (buf != _NEWLINE), starts, stops) == 0)
                 & (_per_line(comma, starts, stops) == width - 1) & (_per_line(begins, starts, stops) == width))
        other = ~plain & (stops > starts)
        if other.any():
            rows = data.split(b"\n")
            data = b"\n".join(compress(rows, plain))
        try:
            tokens = np.array(data.replace(b",", b" ").split(), dtype=bytes).reshape(-1, width)
            values = _floats(tokens)
        except ValueError:  # a field such as "1e" or "--1": the whole file takes the line-by-line parse
            pass
        else:
            others = [] if rows is None else [(int(i) + 2, text) for i in np.flatnonzero(other)
                                              if (text := rows[i].decode()).strip()]
            return PlainLines(np.flatnonzero(plain) + 2, tokens, values, others)
    return PlainLines(np.zeros(0, dtype=np.int64), np.zeros((0, width), dtype=bytes), np.zeros((0, width)),
                      [(i + 2, line) for i, line in enumerate(body.split("\n")) if line.strip()])
