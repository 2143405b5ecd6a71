"""A trained run applied outside training: predict reproduces the test accuracy, ONNX export matches PyTorch."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import timm
import yaml
from conftest import BASELINE_SIZE

from fer_bench import cli
from fer_bench.config import ConfigError
from fer_bench.deploy import predict
from fer_bench.deploy.inference import load_run_model

ROOT = Path(__file__).resolve().parents[1]


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "fer_bench.cli", *args], capture_output=True, text=True, cwd=ROOT)


@pytest.fixture(scope="module")
def trained_run(learned_baseline):
    return learned_baseline[0]


@pytest.mark.slow
def test_predict_on_a_folder_reproduces_the_reported_test_accuracy(trained_run, tmp_path):
    reported = json.loads((trained_run / "metrics.json").read_text())["best"]["test/acc"]
    assert reported > 1 / 7 + 0.2  # a model that learned something, so agreement is not trivial
    folder = tmp_path / "faces"
    folder.mkdir()
    truth = {}
    labels = pd.read_csv(Path(trained_run.joinpath("splits", "test.txt").read_text().split("\n")[0]).parents[2]
                         / "labels.csv")
    expression_of = dict(zip(labels["path"].map(lambda p: Path(p).name), labels["expression"], strict=True))
    for path in (trained_run / "splits" / "test.txt").read_text().splitlines():
        (folder / Path(path).name).symlink_to(path)
        truth[Path(path).name] = expression_of[Path(path).name]
    out = tmp_path / "preds.csv"
    result = _cli("predict", f"run={trained_run}", f"input={folder}", f"out={out}", "batch=7")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "images/s" in result.stdout
    preds = pd.read_csv(out)
    assert len(preds) == len(truth)
    probs = preds.filter(like="prob_")
    assert list(probs.columns) == [f"prob_{c}" for c in load_run_model(trained_run).class_names]
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    accuracy = np.mean([p == truth[Path(f).name] for f, p in zip(preds["path"], preds["pred"], strict=True)])
    assert accuracy == pytest.approx(reported, abs=1e-6)  # float32 report; one image would be 8e-3


@pytest.mark.slow
def test_run_config_holds_the_resolved_input_recipe(trained_run):
    saved = yaml.safe_load((trained_run / "config.yaml").read_text())["backbone"]
    cfg = timm.get_pretrained_cfg("test_resnet")  # the cpu profile's backbone; data.image_size sets the size
    assert (saved["input_size"], saved["mean"], saved["std"]) == (BASELINE_SIZE, list(cfg.mean), list(cfg.std))
    needs = load_run_model(trained_run).needs
    assert (needs.image_size, list(needs.mean), list(needs.std)) == (BASELINE_SIZE, list(cfg.mean), list(cfg.std))


def test_collect_inputs_reads_a_csv_relative_to_its_folder_and_names_a_bad_one(tmp_path):
    (tmp_path / "a.png").write_bytes(b"")
    (tmp_path / "list.csv").write_text("path\na.png\n")
    assert predict.collect_inputs(tmp_path / "list.csv") == [str(tmp_path / "a.png")]
    (tmp_path / "bad.csv").write_text("file\na.png\n")
    with pytest.raises(ConfigError, match=r"bad.csv: a prediction CSV needs a 'path' column; it has \['file'\]"):
        predict.collect_inputs(tmp_path / "bad.csv")
    with pytest.raises(ConfigError, match="input=.*nowhere does not exist"):
        predict.collect_inputs(tmp_path / "nowhere")


def test_largest_face_is_cropped_with_a_clipped_margin():
    image = np.arange(100 * 80 * 3, dtype=np.uint8).reshape(100, 80, 3)
    boxes = np.array([[5, 5, 10, 10], [20, 30, 40, 50]], dtype=np.float32)
    crop = predict.largest_face_crop(image, boxes, margin=0.25)
    # largest box x 20..60, y 30..80, enlarged by 10 / 12.5 px and clipped to the 80×100 image
    assert np.array_equal(crop, image[17:92, 10:70])
    assert predict.largest_face_crop(image, np.zeros((0, 4)), 0.2) is None


def test_a_missing_detector_model_is_named():
    with pytest.raises(ConfigError, match="detector=/no/yunet.onnx not found"):
        predict.YuNetDetector("/no/yunet.onnx")


# The ONNX export of every registered method: tests/test_methods.py::test_onnx_export_matches_pytorch.


@pytest.mark.slow
def test_export_cli_writes_the_model_next_to_the_run(trained_run, capsys):
    """The verb in this process (``python -m fer_bench.cli`` itself is run by the predict test above)."""
    assert cli.main(["export", f"run={trained_run}", "format=onnx"]) == 0, capsys.readouterr().err[-3000:]
    assert "max abs difference: logits" in capsys.readouterr().out
    assert (trained_run / "export" / "model.onnx").is_file()
    assert cli.main(["export", f"run={trained_run}", "format=tflite"]) == 2
    assert "format=tflite: only onnx is supported" in capsys.readouterr().err
