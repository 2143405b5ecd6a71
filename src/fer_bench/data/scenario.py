"""Class-incremental scenarios: a base task of basic classes, then compound classes added ``increment`` per step.

A record's class key is its compound name when it has a compound label, else its basic expression name when that
is in the base space (neutral and contempt are not part of basic 6). Class orders are shuffles of the compounds
present in the data, reproducible from ``(seed, order index)`` and identical on every rank. Head index = position
in the scenario's class list (base classes first, then compounds in order). This module knows nothing of methods.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from fer_bench import labels as L


def class_keys(records: pd.DataFrame, base_space: str = "basic6") -> pd.Series:
    """Class name of every row (compound name, else basic name in ``base_space``), NA where it has neither."""
    base = set(L.space(base_space))
    keys = pd.Series(pd.NA, index=records.index, dtype="object")
    if "expression" in records:
        basic = records["expression"].map(lambda e: L.EXPRESSIONS[int(e)] if pd.notna(e) and int(e) in base else pd.NA)
        keys = basic.astype("object")
    if "compound" in records:
        compound = records["compound"].map(lambda c: L.COMPOUNDS[int(c)] if pd.notna(c) else pd.NA)
        keys = compound.where(compound.notna(), keys)
    return keys


def class_orders(compounds: list[str], n_orders: int, seed: int) -> list[list[str]]:
    """``n_orders`` shuffles of ``compounds`` (Python ``random.shuffle`` after seeding, as complex-FER does)."""
    rng = random.Random(seed)
    orders = []
    for _ in range(n_orders):
        order = list(compounds)
        rng.shuffle(order)
        orders.append(order)
    return orders


@dataclass(frozen=True)
class Scenario:
    """Head-ordered class names and how many classes each step adds (step 0 = the base task)."""

    classes: tuple[str, ...]
    step_sizes: tuple[int, ...]

    @property
    def num_steps(self) -> int:
        return len(self.step_sizes)

    def seen(self, step: int) -> int:
        """Number of classes seen after ``step`` (head size)."""
        return int(sum(self.step_sizes[: step + 1]))

    def new_classes(self, step: int) -> range:
        return range(self.seen(step) - self.step_sizes[step], self.seen(step))

    def task_of(self, head: np.ndarray) -> np.ndarray:
        """Step at which each head index is added."""
        bounds = np.cumsum(self.step_sizes)
        return np.searchsorted(bounds, np.asarray(head), side="right")


def build_scenario(keys: pd.Series, base_space: str, order_index: int, n_orders: int, seed: int,
                   increment: int = 1, max_steps: int | None = None) -> Scenario:
    """The scenario of class order ``order_index`` over the classes present in ``keys``.

    ``max_steps`` (counting the base task) truncates the compound sequence (reduced CPU runs).
    """
    present = set(keys.dropna())
    base = [L.EXPRESSIONS[i] for i in L.space(base_space) if L.EXPRESSIONS[i] in present]
    compounds = [c for c in L.COMPOUNDS if c in present]
    if not base or not compounds:
        raise ValueError(f"a continual scenario needs basic ({base_space}) and compound labels; the data has "
                         f"{len(base)} basic and {len(compounds)} compound classes")
    if not 0 <= order_index < n_orders:
        raise ValueError(f"class order {order_index} is outside 0..{n_orders - 1} (method.n_orders={n_orders})")
    if increment < 1:
        raise ValueError(f"method.increment must be >= 1, got {increment}")
    order = class_orders(compounds, n_orders, seed)[order_index]
    sizes = [len(base)] + [min(increment, len(order) - k) for k in range(0, len(order), increment)]
    if max_steps is not None:
        sizes = sizes[:max_steps]
    classes = base + order[: sum(sizes) - len(base)]
    return Scenario(tuple(classes), tuple(sizes))


@dataclass
class StepData:
    """What one training run of a step draws: ``fixed`` train indices every epoch (replay memory, or all data),
    plus ``new_count`` indices drawn from ``new_pool`` — re-drawn each epoch (``redraw``) or once per step —
    and the number of head classes evaluated (val/test restricted to labels below ``seen``)."""

    seen: int
    fixed: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # int64 index arrays
    new_pool: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    new_count: int = 0
    redraw: bool = False
    batch_size: int = 32
    seed: int = 0
    val_split: str = "val"
    eval_only: list[int] | None = None  # head classes kept in val (None: all seen)
