"""Grad-CAM maps (the ``grad-cam`` package) of a continual model for basic and compound classes, as an image grid:
one test image per class, the map of its true class on the backbone's last feature stage."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.image import show_cam_on_image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from fer_bench.results.plots import image_grid_png


class _Logits(nn.Module):
    """The student's logits as a plain module (what Grad-CAM calls)."""

    def __init__(self, method):
        super().__init__()
        self.method = method

    def forward(self, images):
        return self.method.logits(images)


def gradcam_grid(method, dataset, class_names: list[str], path: Path) -> Path:
    """Grid of Grad-CAM overlays, one per class the head knows (first test image of each)."""
    method.eval()
    backbone = method.backbone
    layer = backbone.get_submodule(backbone.feature_info[-1]["module"])
    labels = dataset.label.numpy()
    mean = np.asarray(dataset.transform.transforms[-1].mean, dtype=np.float32)
    std = np.asarray(dataset.transform.transforms[-1].std, dtype=np.float32)
    images, titles = [], []
    with GradCAM(model=_Logits(method), target_layers=[layer]) as cam:
        for c in range(method.head.num_classes):
            found = np.flatnonzero(labels == c)
            if not len(found):
                continue
            x = dataset[int(found[0])]["image"][None].to(next(method.parameters()).device)
            heat = cam(input_tensor=x, targets=[ClassifierOutputTarget(c)])[0]
            rgb = np.clip(x[0].detach().cpu().permute(1, 2, 0).numpy() * std + mean, 0, 1)
            images.append(show_cam_on_image(rgb.astype(np.float32), heat, use_rgb=True))
            titles.append(class_names[c])
    return image_grid_png(images, titles, path, "Grad-CAM of the true class (basic, then compound)")
