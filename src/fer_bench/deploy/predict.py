"""``fer-bench predict``: a trained run applied to an image, a folder or a CSV of paths, in batches.

Inputs are face crops by default. With ``detector=<file>`` (an OpenCV YuNet face-detection ONNX model the user
supplies) the largest detected face, enlarged by ``margin``, is cropped first; images without a face are predicted
whole and flagged ``face_found=False``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from fer_bench.config import ConfigError
from fer_bench.data.readers.common import IMAGE_SUFFIXES
from fer_bench.data.records import read_rgb
from fer_bench.deploy.inference import RunModel


def collect_inputs(source: Path) -> list[str]:
    """Image paths from one image file, a folder (searched recursively, sorted) or a CSV with a ``path`` column
    (relative paths resolve against the CSV's folder)."""
    source = Path(source)
    if not source.exists():
        raise ConfigError(f"input={source} does not exist")
    if source.is_dir():
        paths = sorted(str(p) for p in source.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not paths:
            raise ConfigError(f"input={source}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in this folder")
        return paths
    if source.suffix.lower() == ".csv":
        table = pd.read_csv(source)
        if "path" not in table:
            raise ConfigError(f"{source}: a prediction CSV needs a 'path' column; it has {list(table.columns)}")
        return [str(p if Path(p).is_absolute() else source.parent / p) for p in table["path"].astype(str)]
    if source.suffix.lower() in IMAGE_SUFFIXES:
        return [str(source)]
    raise ConfigError(f"input={source}: expected an image, a folder of images or a .csv with a 'path' column")


def largest_face_crop(image: np.ndarray, boxes: np.ndarray, margin: float) -> np.ndarray | None:
    """Crop the largest of ``boxes`` (rows x, y, w, h) enlarged by ``margin`` of its size on every side,
    clipped to the image; None when there is no box."""
    if len(boxes) == 0:
        return None
    x, y, w, h = boxes[np.argmax(boxes[:, 2] * boxes[:, 3])][:4]
    height, width = image.shape[:2]
    x0, y0 = max(int(x - margin * w), 0), max(int(y - margin * h), 0)
    x1, y1 = min(int(x + w + margin * w), width), min(int(y + h + margin * h), height)
    return image[y0:y1, x0:x1] if x1 > x0 and y1 > y0 else None


class YuNetDetector:
    """OpenCV's YuNet face detector from a model file the user points to (no file ships with OpenCV 5)."""

    def __init__(self, model_file: str | Path, score_threshold: float = 0.7):
        import cv2

        if not Path(model_file).is_file():
            raise ConfigError(f"detector={model_file} not found: point it to a YuNet face-detection .onnx model "
                              "(e.g. face_detection_yunet_2023mar.onnx from the OpenCV model zoo)")
        self.net = cv2.FaceDetectorYN.create(str(model_file), "", (320, 320), score_threshold)

    def boxes(self, rgb: np.ndarray) -> np.ndarray:
        import cv2

        self.net.setInputSize((rgb.shape[1], rgb.shape[0]))
        _, faces = self.net.detect(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        return np.zeros((0, 4)) if faces is None else faces[:, :4]


class _Images(Dataset):
    def __init__(self, paths: list[str], transform, detector=None, margin: float = 0.2):
        self.paths, self.transform, self.detector, self.margin = paths, transform, detector, margin

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, bool]:
        image = read_rgb(self.paths[i])
        found = True
        if self.detector is not None:
            crop = largest_face_crop(image, self.detector.boxes(image), self.margin)
            found = crop is not None
            image = crop if found else image
        tensor = self.transform(image=image)["image"].transpose(2, 0, 1)
        return torch.from_numpy(np.ascontiguousarray(tensor)), found


def image_batch(model: RunModel, paths: list[str]) -> torch.Tensor:
    """Images as the model sees them (read, eval transform), stacked N×C×H×W."""
    images = _Images(paths, model.transform())
    return torch.stack([images[i][0] for i in range(len(images))])


def _columns(name: str, value: torch.Tensor) -> dict[str, np.ndarray]:
    value = value.float().cpu().numpy()
    if value.ndim == 1:
        return {name: value}
    return {f"{name}_{j}": value[:, j] for j in range(value.shape[1])}


def predict(model: RunModel, paths: list[str], batch_size: int = 64, num_workers: int = 0, detector=None,
            margin: float = 0.2) -> pd.DataFrame:
    """One row per image: ``path, pred`` (class name), ``prob_<class>`` and the method's other outputs."""
    loader = DataLoader(_Images(paths, model.transform(), detector, margin), batch_size=batch_size,
                        num_workers=num_workers)
    parts = []
    for images, found in tqdm(loader, desc="predict", unit="batch", leave=False):
        outputs = model.outputs(images)
        probs = torch.softmax(outputs.pop("logits").float(), dim=1).numpy()
        part = {f"prob_{c}": probs[:, k] for k, c in enumerate(model.class_names)}
        part["pred"] = np.asarray(model.class_names)[probs.argmax(1)]
        for name, value in outputs.items():
            part.update(_columns(name, value))
        if detector is not None:
            part["face_found"] = found.numpy()
        parts.append(pd.DataFrame(part))
    table = pd.concat(parts, ignore_index=True)
    return pd.concat([pd.DataFrame({"path": paths}), table], axis=1)[
        ["path", "pred", *[c for c in table.columns if c != "pred"]]]
