"""Test-only fault injection: ``FER_BENCH_FAULT=<point>[:<n>]`` kills this process with SIGKILL the n-th time
(default: the first) it reaches ``<point>``, as a pre-empted job or a lost node would. Unset, nothing happens.

Points: ``train_batch``, ``val_batch`` (not the sanity check), ``test_batch`` (after a batch), ``epoch_start``
(a training epoch begins: the previous epoch's checkpoints are on disk) and ``leaderboard`` (between writing
``leaderboard.csv`` and ``leaderboard.md``). Used by tests/test_resume.py.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

ENV = "FER_BENCH_FAULT"
_reached: Counter[str] = Counter()


def fault_point(name: str) -> None:
    """Kill this process if ``FER_BENCH_FAULT`` names ``name`` and this is its n-th arrival here."""
    point, _, nth = os.environ.get(ENV, "").partition(":")
    if point != name:
        return
    _reached[name] += 1
    if _reached[name] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)


def fault_callbacks() -> list:
    """A Lightning callback calling ``fault_point`` at the loop points when ``FER_BENCH_FAULT`` is set, else
    nothing (Lightning is imported only then: ``leaderboard`` imports this module)."""
    if not os.environ.get(ENV):
        return []
    from lightning.pytorch.callbacks import Callback

    class FaultPoints(Callback):
        def on_train_epoch_start(self, trainer, pl_module) -> None:
            fault_point("epoch_start")

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            fault_point("train_batch")

        def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
            if not trainer.sanity_checking:
                fault_point("val_batch")

        def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
            fault_point("test_batch")

    return [FaultPoints()]
