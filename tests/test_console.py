"""The CLI console: Lightning's set-up notices and three known warnings are dropped, fer-bench's own warnings, other
Lightning messages and the result summary stay."""

import logging
import subprocess
import sys
import warnings

import pytest
from lightning.pytorch.utilities.rank_zero import rank_zero_info, rank_zero_warn
from test_ddp import TINY

from fer_bench import console
from fer_bench.config import build_config
from fer_bench.engine import init_record

# Messages as Lightning 2.x words them (trainer/setup.py, logger_connector.py, fit_loop.py, data_connector.py)
CHATTER = ["GPU available: False, used: False", "TPU available: False, using: 0 TPU cores",
           "💡 Tip: For seamless cloud logging and experiment tracking, try installing [litlogger](https://pypi.org/"
           "project/litlogger/) to enable LitLogger",
           "`Trainer(limit_train_batches=1.0)` was configured so 100% of the batches per epoch will be used..",
           "`Trainer.fit` stopped: `max_epochs=1` reached."]
NOISY_WARNINGS = ["The number of training batches (4) is smaller than the logging interval "
                  "Trainer(log_every_n_steps=10). Set a lower value for log_every_n_steps if you want to see logs "
                  "for the training epoch.",
                  "You have overridden `on_after_batch_transfer` in `LightningModule` but have passed in a "
                  "`LightningDataModule`. It will use the implementation from `LightningModule` instance."]
# What a console run must not show (the subprocess test)
ABSENT = ["💡", "Tip:", "LitLogger", "litmodels", "GPU available", "TPU available", "limit_train_batches",
          "limit_val_batches", "limit_test_batches", "smaller than the logging interval", "on_after_batch_transfer",
          "LeafSpec"]


class _Records(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_quiet_lightning_drops_known_chatter_and_keeps_everything_else(tmp_path, monkeypatch):
    logger = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    monkeypatch.setattr(logger, "filters", [])  # the filter this test adds goes with it
    records = _Records()
    logger.addHandler(records)
    monkeypatch.setattr(logger, "level", logging.INFO)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            console.quiet_lightning()
            console.quiet_lightning()  # idempotent
            for message in [*CHATTER, "Restoring states from the checkpoint path at best.ckpt"]:
                rank_zero_info(message)
            for message in NOISY_WARNINGS:
                rank_zero_warn(message)
            rank_zero_warn("Detected KeyboardInterrupt, attempting graceful shutdown ...")
            # fer-bench's own warning, emitted through Lightning's rank_zero_warn as in a real run
            init_record.warn_if_random_init(build_config(["method=qcs", "data=folder", f"data.root={tmp_path}"]))
    finally:
        logger.removeHandler(records)
    assert records.messages == ["Restoring states from the checkpoint path at best.ckpt"]
    assert sum(isinstance(f, console._DropChatter) for f in logger.filters) == 1
    shown = [str(w.message) for w in caught]
    assert shown[0] == "Detected KeyboardInterrupt, attempting graceful shutdown ..."
    assert len(shown) == 2 and "random init; paper uses" in shown[1]


@pytest.mark.slow
def test_bench_console_shows_progress_and_summary_without_lightning_notices(tmp_path):
    tiny = [a for a in TINY if not a.startswith("trainer.progress_bar")]  # the bars are part of the console
    out = subprocess.run([sys.executable, "-m", "fer_bench.cli", "bench", "method=baseline", "trainer.max_epochs=1",
                          *tiny, "data.image_size=48", f"runs_dir={tmp_path / 'runs'}",
                          f"results_dir={tmp_path / 'results'}"], capture_output=True, text=True)
    console_text = out.stdout + out.stderr
    assert out.returncode == 0, console_text
    assert "Epoch 0:" in console_text and "Testing DataLoader 0:" in console_text
    assert "best (val-selected)  acc" in out.stdout and "leaderboard:" in out.stdout
    assert [a for a in ABSENT if a in console_text] == []
