"""HSEmotion-style multitask network: a light backbone and ONE ``Linear(D, C + 2)`` head (specs/multitask.md §3.2).

Head outputs: C expression logits, then valence, then arousal — no activation on V/A (clip at inference).
``embed()`` is the penultimate embedding f, ``scores()`` = W·f + b: what ``fer-bench extract`` stores, the same
split as the HSEmotion libraries' ``extract_features`` (classifier stripped), so features are interchangeable.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from fer_bench.metrics.regression import ccc_loss
from fer_bench.models import backbones, mobilefacenet
from fer_bench.models.backbones import BackboneInfo


class MultitaskNet(nn.Module):
    def __init__(self, backbone: nn.Module, num_features: int, num_classes: int = 8):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(num_features, num_classes + 2)
        self.num_classes = num_classes
        self.backbone_frozen = False

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone(images)

    def scores(self, embedding: torch.Tensor) -> torch.Tensor:
        return self.head(embedding)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """The (N, C + 2) scores."""
        return self.scores(self.embed(images))

    def split(self, scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Expression logits (N, C) and valence/arousal (N, 2) of a scores tensor."""
        return scores[:, : self.num_classes], scores[:, self.num_classes:]

    def freeze_backbone(self, frozen: bool, bn_train: bool = False) -> None:
        """Phase A of the schedule: no gradients into the backbone; its BatchNorm statistics kept fixed (eval mode)
        unless ``bn_train`` (HSEmotion's script freezes parameters only, so its statistics keep updating)."""
        self.backbone_frozen = frozen and not bn_train
        self.backbone.requires_grad_(not frozen)
        self.train(self.training)

    def train(self, mode: bool = True) -> MultitaskNet:
        super().train(mode)
        if self.backbone_frozen:
            self.backbone.eval()
        return self


def create_backbone(name: str, image_size: int | None = None, pretrained: bool = False, weights: str | None = None,
                    drop_rate: float = 0.0) -> tuple[nn.Module, BackboneInfo]:
    """A timm backbone by name, or one of the MobileFaceNet variants (``mobilefacenet*``); ``image_size``
    (default: the backbone's own) is the input size the returned info reports."""
    if name not in mobilefacenet.VARIANTS:
        model, info = backbones.create(name, pretrained=pretrained, weights=weights, drop_rate=drop_rate)
        return model, replace(info, image_size=image_size or info.image_size)
    if pretrained:
        raise ValueError(f"backbone '{name}' has no hub weights: set backbone.weights to a local state_dict file")
    size = image_size or mobilefacenet.NATIVE_SIZE
    model = mobilefacenet.create(name, image_size=size)
    if weights:
        backbones.load_state_dict_file(model, weights, ignore_prefixes=("fc.",))
    return model, BackboneInfo(model.num_features, size, mobilefacenet.MEAN, mobilefacenet.STD)


def build_multitask_net(name: str, num_classes: int = 8, image_size: int | None = None, pretrained: bool = False,
                        backbone_weights: str | None = None, weights: str | None = None,
                        drop_rate: float = 0.0) -> tuple[MultitaskNet, BackboneInfo]:
    """Backbone + head. ``backbone_weights``: a backbone-only state_dict (e.g. face-ID pre-training);
    ``weights``: a whole-network state_dict (``backbone.*`` and ``head.*``, e.g. from ``models.convert``)."""
    backbone, info = create_backbone(name, image_size, pretrained, backbone_weights, drop_rate)
    net = MultitaskNet(backbone, info.num_features, num_classes)
    if weights:
        load_net_weights(net, weights)
    return net, info


def load_net_weights(net: MultitaskNet, path: str | Path) -> None:
    """Load a whole-network state_dict file strictly (tensors only: ``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} not found")
    state = torch.load(path, map_location="cpu", weights_only=True)
    try:
        net.load_state_dict(state)
    except RuntimeError as e:
        raise ValueError(f"weights file {path} does not fit the network: {e}") from None


# losses (specs/multitask.md §3.2) ---------------------------------------------------------------------------------


def class_weights(counts: torch.Tensor) -> torch.Tensor:
    """HSEmotion's w_c = n_max / n_c from per-class training counts (0 for a class with no training image)."""
    counts = counts.double()
    return torch.where(counts > 0, counts.max() / counts.clamp(min=1), torch.zeros_like(counts)).float()


def expression_loss(logits: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor | None = None,
                    label_smoothing: float = 0.0) -> torch.Tensor:
    """Class-weighted cross-entropy over the rows with a label (``labels >= 0``).

    ``label_smoothing == 0``: ``CrossEntropyLoss(weight=w)`` (the MTL notebook: weighted mean, divided by Σ w_y).
    ``label_smoothing = ε > 0``: the FER-only notebook's soft targets q = (1 − ε)·onehot + ε/C and
    mean_i Σ_c −w_c·q_ic·log softmax(z_i)_c (not normalised by the weights).
    """
    keep = labels >= 0
    if not keep.any():
        return logits.sum() * 0.0
    logits, labels = logits[keep], labels[keep]
    if label_smoothing == 0:
        return F.cross_entropy(logits, labels, weight=weight)
    num_classes = logits.shape[1]
    soft = F.one_hot(labels, num_classes) * (1 - label_smoothing) + label_smoothing / num_classes
    w = weight if weight is not None else torch.ones(num_classes, device=logits.device)
    return (-(w * soft * F.log_softmax(logits, dim=1)).sum(dim=1)).mean()


def va_loss(preds: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(1 − CCC_V)/2 and (1 − CCC_A)/2, each over the rows whose target is known (finite and ≥ −1).

    Batch CCC with unbiased statistics and an ε (``metrics.ccc_loss``); fewer than two known rows give 0.
    """
    terms = []
    for k in range(2):
        known = torch.isfinite(target[:, k]) & (target[:, k] >= -1)
        if known.sum() < 2:
            terms.append(preds[:, k].sum() * 0.0)
        else:
            terms.append(ccc_loss(preds[known, k], target[known, k]) / 2)
    return terms[0], terms[1]
