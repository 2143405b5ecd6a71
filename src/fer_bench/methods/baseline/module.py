"""The reference method: a timm backbone, a linear head, cross-entropy."""

from __future__ import annotations

import torch.nn.functional as F

from fer_bench.data.datamodule import DataNeeds
from fer_bench.methods.base import FERMethod
from fer_bench.models import backbones, preprocessing
from fer_bench.models.heads import LinearHead


class Baseline(FERMethod):
    def __init__(self, cfg, class_names):
        super().__init__(cfg, class_names)
        b = cfg.backbone
        self.backbone, own = backbones.create(b.name, pretrained=b.pretrained, weights=b.weights,
                                              drop_rate=b.drop_rate)
        self.info = preprocessing.for_config(cfg, own, b.weights)
        self.head = LinearHead(self.info.num_features, self.num_classes)

    def data_needs(self) -> DataNeeds:
        return DataNeeds(self.info.image_size, self.info.mean, self.info.std)

    def forward(self, images):
        return self.head(self.backbone(images))

    def training_step(self, batch, batch_idx):
        logits = self(batch["image"])
        loss = F.cross_entropy(logits, batch["label"], label_smoothing=self.cfg.method.label_smoothing)
        acc = (logits.argmax(1) == batch["label"]).float().mean()
        self.log_dict({"train/loss": loss, "train/acc": acc}, prog_bar=True, batch_size=len(batch["label"]))
        return loss
