"""Initialisation and precision are part of a result: rows and metrics.json carry ``init`` and ``precision``; a method
whose paper starts from pretrained weights warns, and is marked in the leaderboard and the report, when it runs from
random weights on real faces."""

from __future__ import annotations

import hashlib
import json
import warnings

import numpy as np
import pandas as pd
import pytest
import timm
import torch
from conftest import write_png

from fer_bench.config import build_config
from fer_bench.engine import init_record, runner
from fer_bench.methods import registry
from fer_bench.results import leaderboard, report

QUIET = ["data.num_workers=0", "trainer.progress_bar=false", "logger.wandb=false"]
TINY_SYNTH = ["data.synth.subjects=10", "data.synth.per_subject=1", "data.synth.size=32", "data.synth.difficulty=easy"]


def _sha8(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:8]


def _face_folder(root, per_class=(8, 3)) -> None:
    """root/<split>/<class>/<n>.png, as the folder reader expects: three expressions, flat colours plus noise."""
    rng = np.random.default_rng(0)
    colours = {"happy": (220, 40, 40), "sad": (40, 40, 220), "surprise": (40, 200, 40)}
    for split, n in zip(("train", "test"), per_class, strict=True):
        for cls, colour in colours.items():
            for i in range(n):
                pixels = np.clip(np.array(colour) + rng.integers(-30, 30, (32, 32, 3)), 0, 255).astype(np.uint8)
                write_png(root / split / cls / f"{i}.png", pixels)


def test_init_names_every_pretrained_component_with_file_and_sha_prefix(tmp_path):
    trunk, net = tmp_path / "ir50.pth", tmp_path / "qcs_rafdb.pt"
    trunk.write_bytes(b"ir50 weights")
    net.write_bytes(b"converted qcs")
    cfg = build_config(["method=qcs", f"method.trunk_weights={trunk}", f"method.weights={net}"])
    before = init_record._sha256.cache_info().misses
    assert init_record.describe_init(cfg) == f"trunk=ir50.pth@{_sha8(trunk)}; net=qcs_rafdb.pt@{_sha8(net)}"
    init_record.describe_init(cfg)
    assert init_record._sha256.cache_info().misses == before + 2  # hashed once per file
    assert init_record.describe_init(build_config(["method=qcs"])) == "random"
    assert init_record.describe_init(build_config(["method=baseline", "backbone.pretrained=true"])) == \
        "backbone=timm-hub:resnet18"
    assert init_record.describe_init(build_config(["method=clip_gfer", "method.clip.hub=true"])) == \
        "clip=timm-hub:vit_base_patch32_clip_quickgelu_224.openai"


def test_random_init_warning_only_for_pretrained_papers_on_real_faces(tmp_path):
    _face_folder(tmp_path / "faces", (2, 1))
    real = ["data=folder", f"data.root={tmp_path / 'faces'}"]
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"x")
    declared = {name for name, spec in registry().items() if spec.config.paper_init}
    assert declared == {"qcs", "clip_gfer", "multitask", "continual"}
    for name in sorted(registry()):
        random_init = ["backbone.pretrained=false"] if name == "continual" else []  # its recipe loads hub weights
        for data, expect in ((real, name in declared), ([], False)):
            cfg = build_config([f"method={name}", *data, *random_init])
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                init_record.warn_if_random_init(cfg)
            fired = [w for w in caught if "random init; paper uses" in str(w.message)]
            assert bool(fired) == expect, (name, data)
            assert bool(init_record.init_note(cfg)) == expect
    pretrained = build_config(["method=qcs", *real, f"method.trunk_weights={weights}"])
    assert init_record.init_note(pretrained) == ""
    continual = build_config(["method=continual", *real])
    assert (init_record.describe_init(continual), init_record.init_note(continual)) == (
        "backbone=timm-hub:resnetv2_50.a1h_in1k", "")
    # CAFE's face-recognition mask weights do not stand in for CLIP
    assert init_record.init_note(build_config(["method=clip_gfer", *real, f"method.mask_weights={weights}"]))


def test_rows_and_metrics_carry_init_and_the_trainer_precision(tmp_path):
    """A baseline from a backbone weights file the test writes, at trainer.precision=bf16 (Lightning: bf16-mixed)."""
    weights = tmp_path / "face_id_test_resnet.pth"
    torch.save(timm.create_model("test_resnet", num_classes=0).state_dict(), weights)
    cfg = build_config(["profile=cpu", *TINY_SYNTH, *QUIET, "data.image_size=32", "trainer.max_epochs=1",
                        "trainer.precision=bf16", f"backbone.weights={weights}", f"runs_dir={tmp_path / 'runs'}",
                        f"results_dir={tmp_path / 'results'}"])
    run_dir = runner.train_one(cfg)
    expected = {"init": f"backbone=face_id_test_resnet.pth@{_sha8(weights)}", "precision": "bf16-mixed"}
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert {k: metrics[k] for k in expected} == expected and metrics["init_note"] == ""
    board = pd.read_csv(tmp_path / "results" / "leaderboard.csv")
    assert len(board) == 2 and (board[list(expected)] == pd.Series(expected)).all().all()
    assert board["init_note"].isna().all()  # nothing to mark: the baseline's paper has no pretrained start
    assert f"init {expected['init']}" in leaderboard.summary(board)["provenance"].iloc[0]


@pytest.mark.slow  # a QCS run end to end (train, test best and last)
def test_random_init_qcs_on_a_face_folder_warns_and_is_marked(tmp_path):
    _face_folder(tmp_path / "faces")
    cfg = build_config(["method=qcs", "profile=cpu", "data=folder", f"data.root={tmp_path / 'faces'}", *QUIET,
                        "data.batch_size=4", "method.dim=16", "method.heads=2", "method.image_size=64",
                        "trainer.max_epochs=1", f"runs_dir={tmp_path / 'runs'}", f"results_dir={tmp_path / 'results'}"])
    with pytest.warns(UserWarning, match="qcs on folder: random init; paper uses IR-50"):
        run_dir = runner.train_one(cfg)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert (metrics["init"], metrics["precision"]) == ("random", "32-true")
    board = pd.read_csv(tmp_path / "results" / "leaderboard.csv")
    assert (board["init_note"] == "random init; paper uses IR-50 trunk pre-trained on MS-Celeb-1M (ir50.pth)").all()
    markdown = (tmp_path / "results" / "leaderboard.md").read_text()
    built = report.build_report(tmp_path / "results", tmp_path / "runs", tmp_path / "report.md").markdown
    for text in (markdown, built):
        assert "| qcs †" in text and "† random init; paper uses IR-50" in text
