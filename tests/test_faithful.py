"""protocol=faithful is the authors' recipe: each experiment's ``faithful:`` rows resolve as declared, the table in
docs/faithful.md is generated from them, no validation split is carved (training on the whole train split, the
epoch chosen on test and flagged), and the continual memory is sized from the whole train fold."""

from functools import cache
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

from fer_bench import labels as L
from fer_bench import protocol
from fer_bench.bench import runner
from fer_bench.config import ConfigError, build_config
from fer_bench.data.datamodule import DataNeeds, FERDataModule
from fer_bench.data.readers import read_records
from fer_bench.data.readers.common import subject_folds
from fer_bench.data.records import DataError, Problems
from fer_bench.methods.memory import budget

ROOT = Path(__file__).resolve().parents[1]
BLOCKS = protocol.blocks(ROOT / "experiments")
ROWS = [(method, row) for method, block in BLOCKS.items() for row in block["settings"]]


@cache
def _faithful(method: str):
    return build_config([f"method={method}", "method.protocol=faithful"])


def test_every_faithful_method_declares_a_block():
    assert set(BLOCKS) == {"qcs", "clip_gfer", "continual"}


@pytest.mark.parametrize(("method", "row"), ROWS, ids=[f"{m}:{r['key']}" for m, r in ROWS])
def test_faithful_config_resolves_the_official_value(method, row):
    value = OmegaConf.select(_faithful(method), row["key"], throw_on_missing=True)
    value = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
    assert value == (pytest.approx(row["value"]) if isinstance(row["value"], float) else row["value"])


def test_docs_faithful_table_is_generated_from_the_configs():
    assert (ROOT / "docs" / "faithful.md").read_text() == protocol.table(BLOCKS), \
        "docs/faithful.md is stale: run fer-bench faithful-table"


@pytest.mark.parametrize("method", sorted(BLOCKS))
def test_the_default_protocol_stays_corrected_with_a_val_split(method):
    cfg = build_config([f"method={method}"])
    assert cfg.method.protocol == "corrected" and cfg.data.val_fraction == 0.15


def test_corrected_protocol_refuses_training_without_a_val_split():
    with pytest.raises(ConfigError, match="data.val_fraction must be > 0 under method.protocol=corrected"):
        build_config(["method=qcs", "data.val_fraction=0"])


def test_a_faithful_block_row_without_its_official_file_is_named():
    with pytest.raises(protocol.FaithfulError, match=r"x.yaml: faithful.settings\[0\] lacks file"):
        protocol.check_block({"settings": [{"key": "optim.lr", "value": 1, "official": "lr 1"}]}, "x.yaml")


SYNTH = ["data.synth.subjects=12", "data.synth.per_subject=1", "data.synth.size=32", "data.num_workers=0",
         "data.image_size=32"]


def test_faithful_data_has_no_val_split_and_scores_test_every_epoch():
    cfg = build_config(["method=baseline", "profile=cpu", "method.protocol=faithful", "data.val_fraction=0",
                        "data.synth.val_fraction=0", *SYNTH])
    dm = FERDataModule(cfg.data, DataNeeds(32, test_every_epoch=True), seed=0)
    dm.setup()
    records, _ = read_records(cfg.data)
    assert "val" not in dm.datasets
    assert len(dm.datasets["train"]) == int((records["split"] == "train").sum()) > 0
    assert dm.val_stages == ("test_epoch",) and dm.val_dataloader().dataset is dm.datasets["test"]
    dm.needs.test_every_epoch = False  # no val and nothing scored per epoch: nothing could select
    with pytest.raises(DataError, match="data.val_fraction=0 leaves no validation split"):
        dm.val_stages


def _cfee_records() -> pd.DataFrame:
    """CFEE_Database_230's shape: 230 subjects, one image of each of the 6 basic and 15 compound classes
    (neutral left out, as the continual scenario drops it), 10 subject folds."""
    rows = [{"path": f"{c:02d}_{s:03d}.jpg", "subject": f"{s:03d}", "expression": e, "compound": k}
            for s in range(1, 231)
            for c, (e, k) in enumerate([(e, pd.NA) for e in L.space("basic6")] + [(pd.NA, k) for k in range(15)])]
    records = pd.DataFrame(rows).astype({"expression": "Int64", "compound": "Int64"})
    return records.assign(split=subject_folds(records["subject"], 0, 10))


@pytest.mark.parametrize(("protocol_name", "m"), [("faithful", 62), ("corrected", 53)])
def test_continual_memory_is_sized_from_the_whole_train_fold(protocol_name, m):
    """m = floor(0.3 N_train / 21): 207 training subjects x 21 images -> 62 (complex-FER on full CFEE); the
    corrected protocol's val subjects leave 176 -> 53."""
    cfg = build_config(["method=continual", "data=cfee", f"method.protocol={protocol_name}"])
    classes = tuple(L.EXPRESSIONS[e] for e in L.space("basic6")) + L.COMPOUNDS
    dm = FERDataModule(cfg.data, DataNeeds(224, classes=classes), seed=0)
    records = dm.label_and_split(_cfee_records(), Problems())
    n_train = int((records["split"] == "train").sum())
    assert (n_train == 207 * 21) == (protocol_name == "faithful")
    assert budget(n_train, len(classes), cfg.method.mem_fraction)[1] == m
    assert (records["split"] == "val").any() == (protocol_name == "corrected")


def _check_faithful_splits(run_dir: Path, cfg) -> None:
    records, _ = read_records(cfg.data)
    splits = {name: (run_dir / "splits" / f"{name}.txt").read_text().split() for name in ("train", "val", "test")}
    assert splits["val"] == []
    assert sorted(splits["train"]) == sorted(records.loc[records["split"] == "train", "path"])
    assert len(splits["train"]) + len(splits["test"]) == len(records)


QCS = ["method=qcs", "method.dim=32", "method.image_size=32", "method.heads=2", "data.batch_size=8"]
CAFE = ["method=clip_gfer", "data.batch_size=16"]


@pytest.mark.slow
@pytest.mark.parametrize("extra", [QCS, CAFE], ids=["qcs", "clip_gfer"])
def test_faithful_bench_trains_on_every_train_image_and_flags_test_selection(tmp_path, extra):
    cfg = build_config([*extra, "profile=cpu", "method.protocol=faithful", *SYNTH, "trainer.max_epochs=2",
                        "seeds=[0]", "trainer.progress_bar=false", "logger.wandb=false",
                        f"runs_dir={tmp_path / 'runs'}", f"results_dir={tmp_path / 'results'}"])
    [run_dir] = runner.bench(cfg)
    _check_faithful_splits(run_dir, cfg)
    board = pd.read_csv(tmp_path / "results" / "leaderboard.csv")
    assert board["ckpt"].tolist() == ["best_test_epoch", "last"]
    assert board["selection"].iloc[0] == "test (faithful; optimistic)"
    per_epoch = pd.read_csv(run_dir / "logs" / "metrics.csv")["test_epoch/acc"].dropna()
    assert len(per_epoch) == 2 and "val/acc" not in pd.read_csv(run_dir / "logs" / "metrics.csv")
    assert board["test/acc"].iloc[0] == pytest.approx(per_epoch.max(), abs=1e-6)
    markdown = (tmp_path / "results" / "leaderboard.md").read_text()
    assert "### Faithful protocol" in markdown and "### Corrected protocol" not in markdown


@pytest.mark.slow
def test_faithful_continual_trains_on_the_whole_fold_and_sizes_memory_from_it(tmp_path):
    cfg = build_config(["method=continual", "profile=cpu", "method.protocol=faithful", "data.synth.subjects=10",
                        "data.synth.per_subject=1", "data.synth.size=32", "data.image_size=24", "data.batch_size=16",
                        "method.step_batch_size=8", "trainer.max_epochs=1", "method.step_epochs=1",
                        "method.max_steps=2", "method.fewshot.enabled=false", "trainer.progress_bar=false",
                        "logger.wandb=false", "seeds=[0]", f"runs_dir={tmp_path / 'runs'}",
                        f"results_dir={tmp_path / 'results'}"])
    [run_dir] = runner.bench(cfg)
    _check_faithful_splits(run_dir, cfg)
    metrics = pd.read_json(run_dir / "metrics.json", typ="series")
    n_train = len((run_dir / "splits" / "train.txt").read_text().split())
    m = budget(n_train, 6 + 15, 0.3)[1]  # every synthetic class has more than m training images
    assert m > 0 and set(metrics["memory_per_class"].values()) == {m}
