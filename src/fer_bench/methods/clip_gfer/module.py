"""CLIP-based generalizable FER (Zhang et al., ECCV 2024, "CAFE"; zyh-uaiaaaa/Generalizable-FER) and its CLIP baselines.

``method.variant``: ``cafe`` — frozen CLIP image tower, sigmoid mask from a trainable CNN, FC on the masked
features, loss l_cls + λ·l_sep + β·l_div (paper Eq. 9); ``linear_probe`` — frozen tower + FC, cross-entropy;
``finetune`` — the tower trained too (at ``method.finetune_lr``) + FC, cross-entropy. The channel losses are
training-only: inference is FC(F ⊙ mask) (or FC(F)).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from fer_bench.data.datamodule import DataNeeds
from fer_bench.methods.base import FERMethod
from fer_bench.methods.clip_gfer.losses import ChannelGroups, cafe_loss
from fer_bench.methods.clip_gfer.net import CafeNet, MaskNet
from fer_bench.models.clip_tower import ClipImageTower, create_clip_vit


class ClipGfer(FERMethod):
    def __init__(self, cfg, class_names):
        super().__init__(cfg, class_names)
        m = cfg.method
        arch = OmegaConf.to_container(m.clip, resolve=True)
        half_on_gpu = arch.pop("half_on_gpu")
        vit = create_clip_vit(**arch, image_size=cfg.data.image_size)
        tower = ClipImageTower(vit, frozen=m.variant != "finetune", half_on_gpu=half_on_gpu)
        mask = MaskNet(m.mask_trunk, tower.out_dim, m.mask_weights) if m.variant == "cafe" else None
        self.net = CafeNet(tower, self.num_classes, mask)
        self.groups = ChannelGroups(tower.out_dim, self.num_classes, m.groups)
        self.image_size = int(vit.patch_embed.img_size[0])
        self._drop_generator: torch.Generator | None = None
        self._drop_state: torch.Tensor | None = None  # from a checkpoint, set when the generator is made

    def data_needs(self) -> DataNeeds:
        if self.cfg.method.preprocess == "clip":
            return DataNeeds(self.image_size, self.net.tower.mean, self.net.tower.std)
        return DataNeeds(self.image_size)  # ImageNet mean/std into both branches, as the official code

    def forward(self, images):
        return self.net(images)

    def compile_targets(self) -> list[torch.nn.Module]:
        return [self.net]

    def trainable_parameters(self):
        if self.cfg.method.variant != "finetune":
            return super().trainable_parameters()
        tower = list(self.net.tower.parameters())
        ids = {id(p) for p in tower}
        rest = [p for p in self.parameters() if p.requires_grad and id(p) not in ids]
        return [{"params": rest}, {"params": tower, "lr": self.cfg.method.finetune_lr}]

    def drop_generator(self, device: torch.device) -> torch.Generator:
        """The seeded generator of the per-step drop masks, on the model's device."""
        if self._drop_generator is None or self._drop_generator.device != device:
            self._drop_generator = torch.Generator(device=device).manual_seed(int(self.cfg.seed))
            if self._drop_state is not None:
                self._drop_generator.set_state(self._drop_state)
                self._drop_state = None
        return self._drop_generator

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """The drop masks' generator travels with the checkpoint (the engine restores only the global generators),
        so a resumed run draws the masks an uninterrupted one would."""
        if self._drop_generator is not None:
            checkpoint["drop_generator"] = self._drop_generator.get_state()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if "drop_generator" in checkpoint:
            self._drop_state, self._drop_generator = checkpoint["drop_generator"], None

    def losses(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """Total loss, logits and the named terms of one batch."""
        m = self.cfg.method
        features, mask = self.net.parts(images)
        masked = features if mask is None else features * mask
        logits = self.net.fc(masked)
        if mask is None:
            l_cls = F.cross_entropy(logits, labels)
            return l_cls, logits, {"train/l_cls": l_cls}
        drop = self.groups.drop_mask(m.drop, self.drop_generator(images.device))
        total, parts = cafe_loss(logits, masked, labels, self.groups, drop, m.lam, m.beta, m.div)
        terms = {f"train/{k}": v for k, v in parts.items()}
        return total, logits, {**terms, "train/mask_mean": mask.detach().mean()}

    def training_step(self, batch, batch_idx):
        loss, logits, terms = self.losses(batch["image"], batch["label"])
        acc = (logits.argmax(1) == batch["label"]).float().mean()
        self.log_dict({"train/loss": loss, "train/acc": acc, **terms}, prog_bar=True,
                      batch_size=len(batch["label"]))
        return loss
