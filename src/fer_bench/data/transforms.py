"""Albumentations pipelines built from config: augmenting train, resize-and-normalise for evaluation."""

from __future__ import annotations

import random

import albumentations as A
import cv2
import numpy as np


def train_transform(size: int, mean, std, aug) -> A.Compose:
    steps = [
        A.RandomResizedCrop(size=(size, size), scale=tuple(aug.scale), ratio=(0.9, 1.1),
                            interpolation=cv2.INTER_AREA),
        A.HorizontalFlip(p=aug.hflip),
    ]
    if aug.rotate > 0:
        steps.append(A.Rotate(limit=aug.rotate, border_mode=cv2.BORDER_REFLECT_101, p=0.5))
    if aug.color_jitter > 0:
        j = aug.color_jitter
        steps.append(A.ColorJitter(brightness=j, contrast=j, saturation=j, hue=j / 4, p=0.8))
    steps.append(A.Normalize(mean=mean, std=std))
    if aug.erasing > 0:
        steps.append(A.Erasing(scale=(0.02, 0.1), p=aug.erasing))
    return A.Compose(steps)


def eval_transform(size: int, mean, std) -> A.Compose:
    return A.Compose([A.Resize(size, size, interpolation=cv2.INTER_AREA), A.Normalize(mean=mean, std=std)])


def reseed(transform: A.Compose, seed: int) -> None:
    """Start the pipeline's random draws from ``seed`` (albumentations seeds a Compose from OS entropy otherwise)."""
    transform.set_random_state(np.random.default_rng(seed), random.Random(seed))
