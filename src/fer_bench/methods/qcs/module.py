"""QCS (Wang et al. 2024): quadruplet training through Cross Similarity Attention, base branch at inference.

Training draws (anchor, positive, negative, negative2) quadruplets; the loss is the mean of 8 cross-entropies
(base and cross heads of four weight-sharing branches). Optimisation is manual so that SAM can take its two
passes on the same batch (Foret et al., ICLR 2021); the learning rate decays per epoch. Inference and every
evaluation use the base branch alone (``forward``), so the cross modules cost nothing at test time.
"""

from __future__ import annotations

import torch

from fer_bench.data.datamodule import DataNeeds
from fer_bench.methods.base import FERMethod
from fer_bench.methods.qcs.net import build_qcs_net, qcs_loss
from fer_bench.models.backbones import STRIP_PREFIXES
from fer_bench.models.weights_file import load_weights_into

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class QCS(FERMethod):
    def __init__(self, cfg, class_names):
        super().__init__(cfg, class_names)
        m = cfg.method
        self.automatic_optimization = False
        self.net = build_qcs_net(
            self.num_classes, trunk=m.trunk, dim=m.dim, heads=m.heads, base_depth=m.base_depth,
            cross_depth=m.cross_depth, cross_dropout=m.cross_dropout, csa_variant=m.csa.variant,
            csa_scope=m.csa.scope, branches=m.branches, image_size=m.image_size, trunk_weights=m.trunk_weights,
            trunk_out_indices=tuple(m.trunk_out_indices),
        )
        if m.weights:
            load_weights_into(self.net, m.weights, strip=STRIP_PREFIXES, what="the QCS network")

    def data_needs(self) -> DataNeeds:
        m = self.cfg.method
        extras = {"anchors": m.anchors, "negatives": m.negatives, "epoch_fraction": m.epoch_fraction}
        return DataNeeds(m.image_size, IMAGENET_MEAN, IMAGENET_STD, sampler="quadruplet", extras=extras)

    def compile_targets(self) -> list[torch.nn.Module]:
        return list(self.net.children())  # training enters through forward_quadruplet, not net.__call__

    def forward(self, images):
        return self.net(images)

    def _loss(self, batch):
        layout = torch.channels_last if self.cfg.trainer.channels_last else torch.contiguous_format
        images = [x.contiguous(memory_format=layout) for x in batch["images"].unbind(1)[: self.net.branches]]
        base_logits, cross_logits = self.net.forward_quadruplet(*images)
        return qcs_loss(base_logits, cross_logits, batch["label"], batch["neg_label"])

    def training_step(self, batch, batch_idx):
        total, base, cross = self.manual_step(self.optimizers(), lambda: self._loss(batch))
        batch_size = len(batch["label"])
        self.log_dict({"train/loss": total, "train/loss_base": base, "train/loss_cross": cross}, prog_bar=True,
                      batch_size=batch_size)
        ks = {f"train/k_scale{i + 1}": k for i, k in enumerate(self.net.k_scales()) if k is not None}
        if ks:
            self.log_dict(ks, batch_size=batch_size)
        return total

    def on_train_epoch_end(self) -> None:
        self.lr_schedulers().step()
