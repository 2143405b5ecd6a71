"""HSEmotion-style multitask network: a light backbone and ONE ``Linear(D, C + 2)`` head,
as HSEmotion's ``src/affectnet/train_emotions-pytorch.ipynb`` (av-savchenko/face-emotion-recognition).

Head outputs: C expression logits, then valence, then arousal — no activation on V/A (clip at inference). Most
released HSEmotion models are expression-only (``Linear(D, C)``): ``va=False`` builds that layout.
``embed()`` is the penultimate embedding f, ``scores()`` = W·f + b: what ``fer-bench extract`` stores, the same
split as the HSEmotion libraries' ``extract_features`` (classifier stripped), so features are interchangeable.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from fer_bench import labels as L
from fer_bench.metrics.regression import ccc_loss
from fer_bench.models import backbones, preprocessing, weights_file
from fer_bench.models.backbones import BackboneInfo


class MultitaskNet(nn.Module):
    def __init__(self, backbone: nn.Module, num_features: int, num_classes: int = 8, va: bool = True):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(num_features, num_classes + 2 * va)
        self.num_classes = num_classes
        self.va = va
        self.backbone_frozen = False

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone(images)

    def scores(self, embedding: torch.Tensor) -> torch.Tensor:
        return self.head(embedding)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """The (N, C + 2) scores ((N, C) without valence/arousal)."""
        return self.scores(self.embed(images))

    def split(self, scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Expression logits (N, C) and valence/arousal (N, 2) of a scores tensor (None without them)."""
        return scores[:, : self.num_classes], (scores[:, self.num_classes:] if self.va else None)

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


def build_multitask_net(name: str, num_classes: int = 8, image_size: int | None = None, pretrained: bool = False,
                        backbone_weights: str | None = None, weights: str | None = None,
                        drop_rate: float = 0.0, va: bool = True) -> tuple[MultitaskNet, BackboneInfo]:
    """Backbone + head. ``backbone_weights``: a backbone-only state_dict (e.g. face-ID pre-training);
    ``weights``: a whole-network state_dict (``backbone.*`` and ``head.*``, e.g. from ``models.convert``)."""
    backbone, info = backbones.create(name, pretrained, backbone_weights, image_size=image_size, drop_rate=drop_rate)
    net = MultitaskNet(backbone, info.num_features, num_classes, va)
    if weights:
        load_net_weights(net, weights)
    return net, info


def head_layout(state: dict[str, torch.Tensor], meta: dict, num_classes: int, path: str | Path = "") -> bool:
    """Whether a whole-network weight file (``state``, ``meta``) has valence/arousal outputs after its
    ``num_classes`` logits (its metadata says so, else the head's width: C + 2 or C); other widths are refused."""
    if "va" in meta:
        if meta.get("num_classes", num_classes) != num_classes:
            raise ValueError(f"weights file {path} has a {meta['num_classes']}-class head ({meta.get('space')}); "
                             f"the configured label space has {num_classes} classes: set data.space="
                             f"{meta.get('space')}")
        return bool(meta["va"])
    width = state["head.weight"].shape[0] if "head.weight" in state else None
    if width not in (num_classes, num_classes + 2):
        raise ValueError(f"weights file {path}: head width {width} is neither {num_classes} classes nor "
                         f"{num_classes} + valence/arousal")
    return width == num_classes + 2


def build_from_config(cfg) -> tuple[MultitaskNet, BackboneInfo]:
    """The network of a multitask config: classes of ``data.space``, the head layout and weights of
    ``method.weights`` (valence/arousal outputs when none is given), and the input recipe resolved and recorded in
    ``cfg.backbone`` (``models.preprocessing``)."""
    b, m = cfg.backbone, cfg.method
    num_classes = len(L.space(cfg.data.space))
    state, meta = weights_file.load(m.weights) if m.weights else ({}, {})
    va = head_layout(state, meta, num_classes, m.weights) if m.weights else True
    recipe = preprocessing.recipe_of(meta) or preprocessing.weights_recipe(b.weights)
    size = preprocessing.requested_size(b, cfg.data.image_size, recipe)
    net, own = build_multitask_net(b.name, num_classes, size, b.pretrained, b.weights, drop_rate=b.drop_rate, va=va)
    if m.weights:
        _load_net_state(net, state, m.weights)
    info = preprocessing.resolve(b, own, cfg.data.image_size, recipe)
    preprocessing.record(b, info)
    return net, info


def load_net_weights(net: MultitaskNet, path: str | Path) -> None:
    """Load a whole-network weight file strictly (tensors only: ``weights_only=True``)."""
    _load_net_state(net, weights_file.load(path)[0], path)


def _load_net_state(net: MultitaskNet, state: dict[str, torch.Tensor], path: str | Path) -> None:
    weights_file.load_state_into(net, state, path, what="the multitask network (backbone.* and head.*)")


# losses (HSEmotion's train_emotions-pytorch.ipynb) ------------------------------------------------------------------


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

    Batch CCC with unbiased statistics and an ε floor under the denominator (``metrics.ccc_loss``); fewer than two
    known rows give 0.
    """
    terms = []
    for k in range(2):
        known = torch.isfinite(target[:, k]) & (target[:, k] >= -1)
        if known.sum() < 2:
            terms.append(preds[:, k].sum() * 0.0)
        else:
            terms.append(ccc_loss(preds[known, k], target[known, k]) / 2)
    return terms[0], terms[1]


def multitask_loss(logits: torch.Tensor, va: torch.Tensor, labels: torch.Tensor, va_target: torch.Tensor | None,
                   weight: torch.Tensor | None = None, label_smoothing: float = 0.0
                   ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """HSEmotion's MTL loss (``MultiTaskLossWrapper``): expression loss + (1 − CCC_V)/2 + (1 − CCC_A)/2, weight 1
    on each; without V/A targets (``va_target`` None) the V/A terms are 0. Returns (total, {name: term})."""
    ce = expression_loss(logits, labels, weight, label_smoothing)
    loss_v, loss_a = va_loss(va, va_target) if va_target is not None else (ce * 0.0, ce * 0.0)
    return ce + loss_v + loss_a, {"loss_ce": ce, "loss_v": loss_v, "loss_a": loss_a}
