"""Cross-domain protocol (``eval_on``): target naming, shared-class mapping, held-out subjects, and an end-to-end
run whose ``xdom`` columns equal a recomputation."""

import json
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from fer_bench.config import ConfigError, build_config
from fer_bench.data.datamodule import DataNeeds, FERDataModule
from fer_bench.data.records import DataError
from fer_bench.engine import cross_domain as xd
from fer_bench.engine import runner
from fer_bench.methods import predictions as P
from fer_bench.results import domain_matrices

TINY = ["profile=cpu", "data.synth.subjects=15", "data.synth.per_subject=1", "data.synth.size=48",
        "data.synth.difficulty=easy", "data.image_size=48", "data.num_workers=0", "data.batch_size=16",
        "trainer.progress_bar=false", "logger.wandb=false"]


def test_shared_classes_map_label_spaces_through_canonical_ids():
    heads, to_shared = xd.shared_classes("basic8", "basic7")  # contempt (head 7) has no target images
    assert heads == [0, 1, 2, 3, 4, 5, 6] and to_shared.tolist() == [0, 1, 2, 3, 4, 5, 6]
    heads, to_shared = xd.shared_classes("basic7", "basic6")  # the target has no neutral
    assert heads == [1, 2, 3, 4, 5, 6] and to_shared.tolist() == [0, 1, 2, 3, 4, 5]
    heads, to_shared = xd.shared_classes("basic6", "abaw8")  # neutral and other images are left out
    assert heads == [0, 1, 2, 3, 4, 5] and to_shared.tolist() == [-1, 0, 1, 2, 3, 4, 5, -1]
    with pytest.raises(ConfigError, match="different kinds"):
        xd.shared_classes("basic7", "compound")


class _FixedLogits(torch.nn.Module):
    """A stand-in method: logits are looked up by the image's first pixel."""

    def __init__(self, table):
        super().__init__()
        self.table = torch.tensor(table, dtype=torch.float32)

    def on_after_batch_transfer(self, batch, idx):
        return batch

    def inference_outputs(self, images):
        return {"logits": self.table[images[:, 0, 0, 0].long()]}


def test_logits_are_restricted_to_the_shared_classes():
    # an 8-class (basic8) model scored on a basic6 target: heads 1..6 shared, neutral (0) and contempt (7) not
    table = [[9, 1, 0, 0, 0, 0, 0, 5],  # image 0: neutral wins overall, happy among shared
             [0, 0, 0, 0, 0, 0, 1, 9],  # image 1: contempt wins overall, anger among shared
             [0, 0, 3, 0, 0, 0, 0, 0]]  # image 2: sad
    images = torch.arange(3, dtype=torch.float32).reshape(3, 1, 1, 1).expand(3, 3, 2, 2)
    loader = [{"image": images, "label": torch.tensor([0, 5, 3])}]  # basic6 heads: happy, anger, fear
    heads, to_shared = xd.shared_classes("basic8", "basic6")
    cfg = build_config(["trainer.accelerator=cpu"])
    cm = xd.confusion_on(_FixedLogits(table), loader, heads, to_shared, cfg)
    assert cm.sum() == 3 and cm[0, 0] == 1 and cm[5, 5] == 1 and cm[3, 1] == 1  # fear predicted as sad


def test_targets_name_cards_and_synthetic_domains(tmp_path):
    cfg = build_config([*TINY, "data.synth.seed=4", "data.batch_size=8",
                        "eval_on=[synthetic:wild, synthetic:gray48+film, fer2013]"])
    with pytest.raises(DataError, match="set data.root"):
        xd.resolve_targets(cfg)  # a licensed data set without its root fails before training
    cfg.eval_on = ["synthetic:wild", "synthetic:gray48+film", f"folder:{tmp_path}"]
    wild, mixed, folder = xd.resolve_targets(cfg)
    assert (wild.name, mixed.name, folder.name) == ("synthetic:wild", "synthetic:gray48+film", "folder")
    assert list(mixed.data.synth.domains) == ["gray48", "film"] and folder.data.root == str(tmp_path)
    assert wild.data.synth.seed == 4 and wild.data.synth.subjects == 15 and wild.data.batch_size == 8
    assert xd.set_name(cfg.data) == "synthetic:lab"
    for bad, message in (("synthetic:moon", "domains"), ("synthetic", "name the domains"),
                         ("nosuchcard", "no data card")):
        cfg.eval_on = [bad]
        with pytest.raises(ConfigError, match=message):
            xd.resolve_targets(cfg)


def test_synthetic_target_test_split_holds_only_subjects_never_trained_on():
    cfg = build_config([*TINY, "eval_on=[synthetic:wild]"])
    (target,) = xd.resolve_targets(cfg)
    source = FERDataModule(cfg.data, DataNeeds(48), seed=0)
    other = FERDataModule(target.data, DataNeeds(48), seed=0)
    for dm in (source, other):
        dm.prepare_data()
        dm.setup()
    subjects = {name: {dm_name: set(dm.records.loc[dm.records["split"] == name, "subject"])
                       for dm_name, dm in (("source", source), ("target", other))} for name in ("train", "test")}
    assert subjects["test"]["target"] == subjects["test"]["source"]
    assert not subjects["test"]["target"] & (subjects["train"]["source"])
    assert set(other.records["domain"]) == {"wild"}


def test_eval_on_end_to_end_writes_xdom_columns_equal_to_a_recomputation(tmp_path):
    cfg = build_config([*TINY, "trainer.max_epochs=2", "eval_on=[synthetic:wild,synthetic:gray48]",
                        f"runs_dir={tmp_path / 'runs'}", f"results_dir={tmp_path / 'results'}"])
    run_dir = runner.train_one(cfg)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    xdom = metrics["xdom"]
    assert xdom["train_set"] == "synthetic:lab"
    method = runner.build_method(cfg)
    runner.load_weights(method, run_dir / "checkpoints" / "best.ckpt")
    method.eval()
    for target in xd.resolve_targets(cfg):
        dm = FERDataModule(target.data, method.data_needs(), seed=0)
        dm.prepare_data()
        dm.setup()
        with torch.no_grad():
            preds = [method(b["image"]).argmax(1) for b in dm.test_dataloader()]
        labels = dm.datasets["test"].label
        assert xdom[f"xdom/{target.name}/acc"] == pytest.approx((torch.cat(preds) == labels).float().mean().item())
        # the target's predictions file: every test image once, its accuracy the column's, with an interval
        kept, meta = P.read_predictions(run_dir / P.file_name("best", target.name))
        assert meta["target_domain"] == target.name and len(kept) == len(labels)
        acc = np.float32((kept["pred"] == kept["target"]).mean())
        assert acc == np.float32(xdom[f"xdom/{target.name}/acc"])
        assert xdom[f"xdom/{target.name}/acc_lo"] <= acc <= xdom[f"xdom/{target.name}/acc_hi"]
    board = pd.read_csv(tmp_path / "results" / "leaderboard.csv")
    best = board[board["ckpt"] == "best"].iloc[0]
    for key in ("xdom/synthetic:wild/acc", "xdom/synthetic:gray48/uar"):
        assert best[key] == pytest.approx(xdom[key])
    assert board.loc[board["ckpt"] == "last", "xdom/synthetic:wild/acc"].isna().all()
    matrix = pd.read_csv(tmp_path / "results" / "xdom_baseline.csv", index_col=0)
    assert matrix.loc["synthetic:lab", "synthetic:lab"] == pytest.approx(metrics["best"]["test/acc"], abs=1e-4)
    assert (tmp_path / "results" / "xdom_baseline.png").is_file()


def test_domain_matrix_averages_seeds_per_training_set():
    rows = pd.DataFrame([
        {"train_set": "a", "test/acc": 0.9, "xdom/b/acc": 0.5, "xdom/c/acc": 0.3},
        {"train_set": "a", "test/acc": 0.7, "xdom/b/acc": 0.3, "xdom/c/acc": 0.1},
        {"train_set": "b", "test/acc": 0.8, "xdom/a/acc": 0.6, "xdom/c/acc": np.nan},
    ])
    matrix = domain_matrices.domain_matrix(rows)
    assert list(matrix.index) == ["a", "b"] and list(matrix.columns) == ["a", "b", "c", domain_matrices.TARGETS_MEAN]
    assert matrix.loc["a"].tolist() == pytest.approx([0.8, 0.4, 0.2, 0.3])
    assert matrix.loc["b", ["a", "b"]].tolist() == pytest.approx([0.6, 0.8])
    assert np.isnan(matrix.loc["b", "c"]) and matrix.loc["b", domain_matrices.TARGETS_MEAN] == pytest.approx(0.6)


def test_matrices_from_a_leaderboard_whose_suite_column_is_empty(tmp_path):
    # runs outside a suite leave `suite` empty in every row, which pandas reads back as a float column of NaN
    (tmp_path / "leaderboard.csv").write_text(
        "run_id,suite,name,method,data,seed,ckpt,selection,test/acc,train_set,xdom/b/acc\n"
        "r0,,baseline,baseline,a,0,best,val,0.9,a,0.5\n"
        "r1,,baseline,baseline,a,1,best,val,0.7,a,0.3\n"
        "r0,,baseline,baseline,a,0,last,val,0.1,a,0.1\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # pandas deprecations included: the cause is gone, not hidden
        written = domain_matrices.write_matrices(tmp_path)
    assert [p.name for p in written] == ["xdom_baseline.csv", "xdom_baseline.png"]
    matrix = pd.read_csv(tmp_path / "xdom_baseline.csv", index_col=0)
    assert matrix.loc["a", ["a", "b"]].tolist() == pytest.approx([0.8, 0.4])
