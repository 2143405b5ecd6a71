"""The restored epoch of a scenario stage follows Keras' EarlyStopping(min_delta, restore_best_weights=True): the
last epoch that beat the kept best by more than min_delta (complex-FER's base stages, min_delta 0.01), not simply the
epoch of the lowest value."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from fer_bench.engine.min_delta_checkpoint import MinDeltaCheckpoint

VAL_LOSSES = [1.0, 0.995, 0.98, 0.975, 0.972]  # Keras, min_delta 0.01: best 1.0 (e0) → 0.98 (e2); nothing after


def keras_restored_epoch(values: list[float], min_delta: float) -> int:
    """Keras' rule, written out: best starts at +inf; an epoch is the new best when value < best − min_delta."""
    best, epoch = float("inf"), -1
    for e, value in enumerate(values):
        if value + min_delta < best:  # monitor_op(current - min_delta, best): for "min", min_delta is negated
            best, epoch = value, e
    return epoch


class ScriptedLoss(pl.LightningModule):
    """Logs ``VAL_LOSSES[epoch]`` as val/loss and stores the epoch in a buffer, so a checkpoint names its epoch."""

    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(1, 1)
        self.register_buffer("epoch_seen", torch.tensor(-1))

    def training_step(self, batch, batch_idx):
        self.epoch_seen.fill_(self.current_epoch)
        return self.layer(batch[0]).sum() * 0.0

    def validation_step(self, batch, batch_idx):
        self.log("val/loss", VAL_LOSSES[self.current_epoch])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


@pytest.mark.parametrize("min_delta", [0.0, 0.01])
def test_the_kept_epoch_is_keras_restore_best_weights(min_delta, tmp_path):
    data = DataLoader(TensorDataset(torch.zeros(2, 1)), batch_size=2)
    checkpoint = MinDeltaCheckpoint(min_delta, dirpath=tmp_path, filename="best", monitor="val/loss", mode="min",
                                    save_weights_only=True, enable_version_counter=False)
    trainer = pl.Trainer(max_epochs=len(VAL_LOSSES), callbacks=[checkpoint], logger=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu", num_sanity_val_steps=0)
    trainer.fit(ScriptedLoss(), data, data)
    kept = torch.load(tmp_path / "best.ckpt", map_location="cpu", weights_only=True)["state_dict"]["epoch_seen"]
    assert int(kept) == keras_restored_epoch(VAL_LOSSES, min_delta)
    assert int(kept) == (4 if min_delta == 0 else 2)  # the lowest loss, or Keras' last improvement by 0.01


def test_a_negative_min_delta_is_refused():
    with pytest.raises(ValueError, match="min_delta=-0.1"):
        MinDeltaCheckpoint(-0.1, monitor="val/loss")
