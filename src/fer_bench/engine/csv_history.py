"""The fit's ``logs/metrics.csv`` across a resume: the epochs before the checkpoint are kept, the rest appended.

Lightning's CSV writer deletes an existing ``metrics.csv`` when it starts (``_ExperimentWriter.
_check_log_dir_exists``), so a resumed run would lose its learning curve up to the kill — and with it the faithful
protocol's best-test-epoch figure, which is read from that file. ``ContinuingCSVLogger`` appends instead; before a
resumed fit, ``keep_history`` cuts the file back to the epochs the checkpoint holds (a killed epoch runs again).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import torch
from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter

from fer_bench.atomic import atomic_write_text


class _ContinuingWriter(ExperimentWriter):
    """Lightning's writer, appending to an existing ``metrics.csv`` under its header instead of deleting it."""

    def _check_log_dir_exists(self) -> None:
        if self._fs.isfile(self.metrics_file_path):
            with open(self.metrics_file_path, newline="") as f:
                self.metrics_keys = next(csv.reader(f), [])


class ContinuingCSVLogger(CSVLogger):
    """``CSVLogger`` whose ``metrics.csv`` survives a new writer (a resumed run, a ``ddp_spawn`` launch)."""

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _ContinuingWriter(log_dir=self.log_dir)
        return self._experiment


def keep_history(metrics_csv: Path, ckpt: Path | None) -> None:
    """Keep the rows of the epochs up to the checkpoint's (``ckpt`` None: none, the run starts again)."""
    if not metrics_csv.is_file():
        return
    if ckpt is None:
        metrics_csv.unlink()
        return
    through_epoch = torch.load(ckpt, map_location="cpu", mmap=True, weights_only=True)["epoch"]
    with open(metrics_csv, newline="") as f:
        reader = csv.DictReader(f)
        rows = [r for r in reader if r.get("epoch") not in (None, "") and float(r["epoch"]) <= through_epoch]
        header = reader.fieldnames or []
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=header, lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(metrics_csv, out.getvalue())
