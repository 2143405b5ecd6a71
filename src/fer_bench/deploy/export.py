"""``fer-bench export``: a run's inference path as ONNX, checked against PyTorch with onnxruntime.

Only what ``inference_outputs`` computes is exported (for QCS the base branch; the cross modules are training
only). What a user outside fer-bench needs — input size, mean/std (RGB, pixel values scaled to [0, 1] first), class
names and output names — is stored in the ONNX file's ``metadata_props`` (JSON values) and, with the parity check,
in ``model.json`` next to it.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fer_bench.deploy.inference import RunModel


class InferencePath(nn.Module):
    """A method's ``inference_outputs`` as a module returning a tuple (ONNX needs positional outputs)."""

    def __init__(self, method: nn.Module, names: list[str]):
        super().__init__()
        self.method, self.names = method, names

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outputs = self.method.inference_outputs(images)
        return tuple(outputs[n] for n in self.names)


def write_onnx_metadata(path: Path, props: dict) -> None:
    """Add ``props`` (JSON-encoded values) to the ``metadata_props`` of the ONNX file ``path``."""
    import onnx

    model = onnx.load(str(path))
    for key, value in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value)
    onnx.save(model, str(path))


def _onnx_session(path: Path):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def export_onnx(model: RunModel, out_dir: Path, check_images: torch.Tensor, atol: float = 1e-4) -> dict:
    """Write ``model.onnx`` + ``model.json`` in ``out_dir`` (dynamic batch) and compare onnxruntime with PyTorch on
    ``check_images``; raises if any output differs by more than ``atol``. Returns the parity report."""
    out_dir.mkdir(parents=True, exist_ok=True)
    method = model.method.to(memory_format=torch.contiguous_format).eval()
    with torch.no_grad():
        reference = method.inference_outputs(check_images)
    names = list(reference)
    path = out_dir / "model.onnx"
    batch = torch.export.Dim("batch", min=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(InferencePath(method, names), (check_images,), str(path), input_names=["images"],
                          output_names=names, dynamic_shapes={"images": {0: batch}}, external_data=False,
                          dynamo=True, verbose=False)
    needs = model.needs
    meta = {
        "run": str(model.run_dir), "method": model.cfg.method.name, "class_names": model.class_names,
        "input": {"name": "images", "layout": "NCHW", "color": "RGB", "size": needs.image_size,
                  "scale": "pixel / 255", "mean": list(needs.mean), "std": list(needs.std)},
        "outputs": names,
    }
    write_onnx_metadata(path, meta)
    onnx_outputs = _onnx_session(path).run(names, {"images": check_images.numpy()})
    diffs = {n: float(np.abs(o - reference[n].numpy()).max()) for n, o in zip(names, onnx_outputs, strict=True)}
    meta["parity"] = {"batch": len(check_images), "max_abs_diff": diffs, "atol": atol}
    (out_dir / "model.json").write_text(json.dumps(meta, indent=2))
    worst = max(diffs.values())
    if worst > atol:
        raise ValueError(f"ONNX export of {model.run_dir} differs from PyTorch by {worst:.2e} > atol={atol} "
                         f"({diffs}); the file is kept at {path} for inspection")
    return {"path": str(path), "max_abs_diff": diffs}


def parity_images(model: RunModel, count: int = 8) -> torch.Tensor:
    """A batch for the parity check: the first ``count`` images of the run's test split, as the model sees them
    (random normal inputs when the run has no split files)."""
    from fer_bench.deploy.predict import image_batch

    listing = model.run_dir / "splits" / "test.txt"
    paths = listing.read_text().splitlines()[:count] if listing.is_file() else []
    paths = [p for p in paths if p and Path(p).is_file()]
    if not paths:
        size = model.needs.image_size
        return torch.randn(count, 3, size, size, generator=torch.Generator().manual_seed(0))
    return image_batch(model, paths)
