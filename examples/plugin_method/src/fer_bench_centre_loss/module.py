"""The centre-loss baseline: a backbone and a linear head trained with cross-entropy + λ·centre loss on the
backbone's pooled features (Wen et al., ECCV 2016). Backbone, head and inference path are fer-bench's baseline;
evaluation, metrics and the optimiser come from FERMethod."""

from __future__ import annotations

import torch.nn.functional as F

from fer_bench.methods.baseline.module import Baseline
from fer_bench_centre_loss.centres import ClassCentres


class CentreLossMethod(Baseline):
    """The baseline's network plus one centre per class; the centres play no part in inference."""

    def __init__(self, cfg, class_names):
        super().__init__(cfg, class_names)
        self.centres = ClassCentres(self.num_classes, self.info.num_features)

    def training_step(self, batch, batch_idx):
        labels = batch["label"]
        features = self.backbone(batch["image"])
        logits = self.head(features)
        ce = F.cross_entropy(logits, labels)
        centre = self.centres.loss(features, labels)
        loss = ce + self.cfg.method.lam * centre
        self.centres.update(features, labels, self.cfg.method.alpha, self._sum_over_ranks)
        acc = (logits.argmax(1) == labels).float().mean()
        self.log_dict({"train/loss": loss, "train/ce": ce, "train/centre": centre, "train/acc": acc},
                      prog_bar=True, batch_size=len(labels))
        return loss

    def _sum_over_ranks(self, tensor):
        return self.trainer.strategy.reduce(tensor, reduce_op="sum")
