"""Albumentations pipelines built from config: augmenting train, resize-and-normalise for evaluation.

The defaults are fer-bench's own recipe. The keys a faithful protocol sets reproduce torchvision pipelines of
official scripts: ``interpolation=pil_bilinear`` resizes as ``transforms.Resize`` on PIL images does (PIL's
bilinear filter, antialiased when shrinking), ``crop_from`` is ``Resize(crop_from)`` then ``RandomCrop`` /
``CenterCrop``, ``jitter_p=1``, ``rotate_p=1`` with ``rotate_border=constant`` is ``RandomRotation`` (fill 0), and
``noise_var`` adds Gaussian noise to the uint8 pixels before resizing (Generalizable-FER's ``add_g``); ``zoom`` and
``translate`` are Keras' ``RandomZoom`` and ``RandomTranslation`` (complex-FER).
"""

from __future__ import annotations

import math
import random

import albumentations as A
import cv2
import numpy as np
from PIL import Image

INTERPOLATION = {"area": cv2.INTER_AREA, "bilinear": cv2.INTER_LINEAR, "nearest": cv2.INTER_NEAREST}
BORDER = {"reflect": cv2.BORDER_REFLECT_101, "constant": cv2.BORDER_CONSTANT}


class PilBilinear:
    """``transforms.Resize((size, size))`` of a PIL image: PIL's bilinear filter (antialiased when shrinking).
    A class, not a closure, so that loader workers can pickle it."""

    def __init__(self, size: int):
        self.size = size

    def __call__(self, image: np.ndarray, **_) -> np.ndarray:
        return np.asarray(Image.fromarray(image).resize((self.size, self.size), Image.BILINEAR))


class UInt8GaussianNoise(A.ImageOnlyTransform):
    """uint8 pixels + N(mean, variance), clipped to [0, 255] and truncated to uint8 (Generalizable-FER's
    ``add_g``: ``np.clip(image + noise, 0, 255).astype(np.uint8)``)."""

    def __init__(self, variance: float, mean: float = 0.0, p: float = 0.5):
        super().__init__(p=p)
        self.variance, self.mean = variance, mean

    def get_params_dependent_on_data(self, params: dict, data: dict) -> dict:
        shape = data["image"].shape
        return {"noise": self.random_generator.normal(self.mean, math.sqrt(self.variance), shape)}

    def apply(self, img: np.ndarray, noise: np.ndarray, **params) -> np.ndarray:
        return np.clip(img + noise, 0, 255).astype(np.uint8)


def _resize(size: int, interpolation: str) -> A.BasicTransform:
    if interpolation == "pil_bilinear":
        return A.Lambda(image=PilBilinear(size), name=f"pil_bilinear_{size}", p=1.0)
    return A.Resize(size, size, interpolation=_flag(interpolation))


def _flag(interpolation: str) -> int:
    if interpolation not in (*INTERPOLATION, "pil_bilinear"):
        raise ValueError(f"data.augment.interpolation={interpolation!r}; allowed: {', '.join(INTERPOLATION)}, "
                         "pil_bilinear")
    return INTERPOLATION.get(interpolation, cv2.INTER_LINEAR)


def _geometry(size: int, aug) -> list[A.BasicTransform]:
    """Resize/crop to ``size``: a fixed resize then a random crop (``crop_from``), a plain resize (scale [1, 1]),
    or a random resized crop over ``scale``."""
    if aug.crop_from:
        return [_resize(aug.crop_from, aug.interpolation), A.RandomCrop(size, size)]
    if tuple(aug.scale) == (1.0, 1.0):
        return [_resize(size, aug.interpolation)]
    return [A.RandomResizedCrop(size=(size, size), scale=tuple(aug.scale), ratio=(0.9, 1.1),
                                interpolation=_flag(aug.interpolation))]


def train_transform(size: int, mean, std, aug) -> A.Compose:
    steps = []
    if aug.noise_var > 0:  # uint8 pixels + N(0, var), before resizing
        steps.append(UInt8GaussianNoise(aug.noise_var, p=aug.noise_p))
    steps += [*_geometry(size, aug), A.HorizontalFlip(p=aug.hflip)]
    if aug.rotate > 0:
        steps.append(A.Rotate(limit=aug.rotate, border_mode=BORDER[aug.rotate_border], fill=0, p=aug.rotate_p))
    if aug.zoom > 0 or aug.translate > 0:  # Keras RandomZoom + RandomTranslation (fill_mode reflect)
        z, t = aug.zoom, aug.translate
        steps.append(A.Affine(scale={"x": (1 - z, 1 + z), "y": (1 - z, 1 + z)},
                              translate_percent={"x": (-t, t), "y": (-t, t)}, border_mode=cv2.BORDER_REFLECT,
                              p=1.0))
    if aug.color_jitter > 0:
        j = aug.color_jitter
        hue = j / 4 if aug.hue is None else aug.hue
        steps.append(A.ColorJitter(brightness=j, contrast=j, saturation=j, hue=hue, p=aug.jitter_p))
    steps.append(A.Normalize(mean=mean, std=std))
    if aug.erasing > 0:  # after Normalize: fill 0 is torchvision RandomErasing's value=0 on the normalised tensor
        steps.append(A.Erasing(scale=tuple(aug.erasing_scale), ratio=(0.3, 3.3), fill=0, p=aug.erasing))
    return A.Compose(steps)


def eval_transform(size: int, mean, std, aug=None) -> A.Compose:
    """Resize (and, with ``aug.crop_from``, centre-crop) and normalise; ``aug`` None: fer-bench's INTER_AREA."""
    if aug is not None and aug.crop_from:
        geometry = [_resize(aug.crop_from, aug.interpolation), A.CenterCrop(size, size)]
    else:
        geometry = [_resize(size, aug.interpolation if aug is not None else "area")]
    return A.Compose([*geometry, A.Normalize(mean=mean, std=std)])


class ReversedChannels:
    """A pipeline fed the image with its channels reversed (an RGB file read as a BGR array)."""

    def __init__(self, transform: A.Compose):
        self.transform = transform

    def __call__(self, **data) -> dict:
        return self.transform(**{**data, "image": np.ascontiguousarray(data["image"][..., ::-1])})


def reseed(transform: A.Compose, seed: int) -> None:
    """Start the pipeline's random draws from ``seed`` (albumentations seeds a Compose from OS entropy otherwise)."""
    transform.set_random_state(np.random.default_rng(seed), random.Random(seed))
