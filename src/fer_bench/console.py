"""What the CLI prints: progress bars, fer-bench's messages and the result summary, not Lightning's chatter.

Lightning logs the same notices for every Trainer it builds (accelerators found, tips for its cloud services, one
line per ``limit_*_batches``), and a bench run builds one Trainer per fit and per tested checkpoint. It also warns
about choices fer-bench makes on purpose. ``quiet_lightning`` drops exactly those messages, matched by their text;
every other Lightning message, each warning fer-bench emits (e.g. the random-init warning) and every error still
reach the console. Importing this module loads neither Lightning nor torch.
"""

from __future__ import annotations

import logging
import re
import warnings

# INFO records of Lightning's ``rank_zero_info`` (logger ``lightning.*.utilities.rank_zero``) at Trainer set-up
CHATTER = re.compile(
    r"(GPU|TPU|HPU|IPU) available: "
    r"|💡 Tip: "
    r"|`Trainer\(limit_(train|val|test|predict)_batches=.*\)` was configured"
    r"|`Trainer\.fit` stopped: `max_epochs=\d+` reached"
)
RANK_ZERO_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero")
# Warnings (regexes matched at the start of the message) that say nothing a fer-bench user can act on
QUIET_WARNINGS = (
    # a tiny or short run has fewer batches than trainer.log_every_n_steps: the epoch-level logs still cover it
    r"The number of training batches \(\d+\) is smaller than the logging interval",
    # FERMethod.on_after_batch_transfer is meant to run with fer-bench's DataModule
    r"You have overridden `on_after_batch_transfer` in `LightningModule` but have passed in a `LightningDataModule`",
    # Lightning's own use of an API that newer torch deprecates
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",
)


class _DropChatter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not CHATTER.search(record.getMessage())


def quiet_lightning() -> None:
    """Drop Lightning's set-up notices and the warnings of ``QUIET_WARNINGS`` in this process (idempotent)."""
    for name in RANK_ZERO_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropChatter) for f in logger.filters):
            logger.addFilter(_DropChatter())
    for message in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=message)
