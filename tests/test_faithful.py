"""protocol=faithful is the authors' recipe: each experiment's ``faithful:`` rows resolve as declared, the table in
docs/faithful.md is generated from them, no validation split is carved (training on the whole train split, the
epoch chosen on test and flagged), and the continual memory is sized from the whole train fold."""

import json
from functools import cache
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from fer_bench import labels as L
from fer_bench.config import ConfigError, build_config
from fer_bench.config import faithful as protocol
from fer_bench.data.datamodule import DataNeeds, FERDataModule
from fer_bench.data.readers import read_records
from fer_bench.data.readers.common import subject_folds
from fer_bench.data.records import DataError, Problems
from fer_bench.data.scenario import class_keys
from fer_bench.data.transforms import PilBilinear, ReversedChannels, eval_transform, reseed, train_transform
from fer_bench.engine import cross_domain as xd
from fer_bench.engine import scenario as continual_runner
from fer_bench.methods.continual.memory import budget
from fer_bench.methods.continual.module import Continual
from fer_bench.protocols import benchmark
from fer_bench.results import leaderboard

ROOT = Path(__file__).resolve().parents[1]
BLOCKS = protocol.blocks(ROOT / "experiments")
# (method, data set, row): the method's rows on the default data set, a data set's own rows on that data set
ROWS = [(method, "synthetic", row) for method, block in BLOCKS.items() for row in block["settings"]] + [
    (method, data, row) for method, block in BLOCKS.items() for data, scope in (block.get("data") or {}).items()
    for row in scope["settings"]]


@cache
def _faithful(method: str, data: str = "synthetic"):
    return build_config([f"method={method}", f"data={data}", "method.protocol=faithful"])


def test_every_faithful_method_declares_a_block():
    assert set(BLOCKS) == {"qcs", "clip_gfer", "continual", "multitask"}


@pytest.mark.parametrize(("method", "data", "row"), ROWS, ids=[f"{m}:{d}:{r['key']}" for m, d, r in ROWS])
def test_faithful_config_resolves_the_official_value(method, data, row):
    value = OmegaConf.select(_faithful(method, data), row["key"], throw_on_missing=True)
    value = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
    assert value == (pytest.approx(row["value"]) if isinstance(row["value"], float) else row["value"])


def test_docs_faithful_table_is_generated_from_the_configs():
    assert (ROOT / "docs" / "faithful.md").read_text() == protocol.table(BLOCKS), \
        "docs/faithful.md is stale: run fer-bench faithful-table"


@pytest.mark.parametrize("method", sorted(BLOCKS))
def test_the_default_protocol_stays_corrected_with_a_val_split(method):
    """The corrected protocol is the default: a val split carved from train selects (never test)."""
    cfg = build_config([f"method={method}"])
    assert cfg.method.protocol == "corrected" and cfg.data.val_fraction == 0.15


def test_corrected_protocol_refuses_training_without_a_val_split():
    with pytest.raises(ConfigError, match="data.val_fraction must be > 0 under method.protocol=corrected"):
        build_config(["method=qcs", "data.val_fraction=0"])


def test_a_faithful_block_row_without_its_official_file_is_named():
    with pytest.raises(protocol.FaithfulError, match=r"x.yaml: faithful.settings\[0\] lacks file"):
        protocol.check_block({"settings": [{"key": "optim.lr", "value": 1, "official": "lr 1"}]}, "x.yaml")


SYNTH = ["data.synth.subjects=10", "data.synth.per_subject=1", "data.synth.size=32", "data.num_workers=0",
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
        dm.val_dataloader()


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


def _check_faithful_splits(run_dir: Path, records: pd.DataFrame) -> None:
    splits = {name: (run_dir / "splits" / f"{name}.txt").read_text().split() for name in ("train", "val", "test")}
    assert splits["val"] == []
    assert sorted(splits["train"]) == sorted(records.loc[records["split"] == "train", "path"])
    assert len(splits["train"]) + len(splits["test"]) == len(records)


QCS = ["method=qcs", "method.dim=32", "method.image_size=32", "method.heads=2", "data.batch_size=8",
       "method.base_depth=1", "trainer.limit_train_batches=2"]  # the split files show what trains
CAFE = ["method=clip_gfer", "data.batch_size=16"]


@pytest.mark.slow
@pytest.mark.parametrize("extra", [QCS, CAFE], ids=["qcs", "clip_gfer"])
def test_faithful_bench_trains_on_every_train_image_and_flags_test_selection(tmp_path, extra):
    cfg = build_config([*extra, "profile=cpu", "method.protocol=faithful", *SYNTH, "trainer.max_epochs=1",
                        "seeds=[0]", "trainer.progress_bar=false", "logger.wandb=false",
                        f"runs_dir={tmp_path / 'runs'}", f"results_dir={tmp_path / 'results'}"])
    [run_dir] = benchmark.bench(cfg)
    _check_faithful_splits(run_dir, read_records(cfg.data)[0])
    board = pd.read_csv(tmp_path / "results" / "leaderboard.csv")
    assert board["ckpt"].tolist() == ["best_test_epoch", "last"]
    assert board["selection"].iloc[0] == "test (faithful; optimistic)"
    per_epoch = pd.read_csv(run_dir / "logs" / "metrics.csv")["test_epoch/acc"].dropna()
    assert len(per_epoch) == 1 and "val/acc" not in pd.read_csv(run_dir / "logs" / "metrics.csv")
    assert board["test/acc"].iloc[0] == pytest.approx(per_epoch.max(), abs=1e-6)
    markdown = (tmp_path / "results" / "leaderboard.md").read_text()
    assert "### Faithful protocol" in markdown and "### Corrected protocol" not in markdown


@pytest.mark.slow
def test_faithful_continual_trains_on_the_whole_fold_and_sizes_memory_from_it(tmp_path):
    cfg = build_config(["method=continual", "profile=cpu", "method.protocol=faithful", "data.synth.subjects=10",
                        "data.synth.per_subject=1", "data.synth.size=32", "data.image_size=24", "data.batch_size=16",
                        "method.step_batch_size=8", "trainer.max_epochs=1", "method.step_epochs=1",
                        "method.max_steps=2", "method.fewshot.enabled=false", "trainer.progress_bar=false",
                        "method.base_trainable=[]", "method.base_finetune_trainable=[layer4]",
                        "logger.wandb=false", "seeds=[0,1]", f"runs_dir={tmp_path / 'runs'}",
                        f"results_dir={tmp_path / 'results'}"])
    run_dir, second = benchmark.bench(cfg)
    # one base model for every class order: the second order starts from the first's, without training one
    base = [torch.load(d / "checkpoints" / "base.ckpt", weights_only=True) for d in (run_dir, second)]
    assert all(torch.equal(v, base[1]["backbone"][k]) for k, v in base[0]["backbone"].items())
    assert sorted(p.name for p in (second / "logs").iterdir()) == ["step01"]
    records = read_records(cfg.data)[0]
    classes = continual_runner.scenario_of(cfg).classes  # the base 6 and the first compounds (max_steps)
    _check_faithful_splits(run_dir, records[class_keys(records).isin(classes)])
    metrics = pd.read_json(run_dir / "metrics.json", typ="series")
    n_train = len((run_dir / "splits" / "train.txt").read_text().split())
    m = budget(n_train, len(classes), 0.3)[1]  # every synthetic class has more than m training images
    assert m > 0 and set(metrics["memory_per_class"].values()) == {m}
    # two base stages (head only, then layer4 + head), then one compound step
    assert sorted(p.name for p in (run_dir / "logs").iterdir()) == ["step00", "step00b", "step01"]


def _continual(*extra):
    cfg = build_config(["method=continual", "method.protocol=faithful", "backbone.name=resnetv2_18",
                        "backbone.pretrained=false", *extra])
    return Continual(cfg, list("abcdefg"), base_classes=6)


def _batch_norms(module):
    return [m for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]


def test_faithful_base_trains_the_head_then_conv4_conv5_with_batchnorm_in_inference_mode():
    """complex-FER: stage A every ResNet50V2 layer frozen; stage B layers[86:] (conv4, conv5) except BatchNorm."""
    method = _continual()
    method.begin_step(0, 6)
    method.train()
    assert not any(p.requires_grad for p in method.backbone.parameters())
    assert all(p.requires_grad for p in method.head.parameters())
    assert not any(bn.training for bn in _batch_norms(method.backbone))
    method.begin_base_finetune()
    method.train()
    bn_params = {id(p) for bn in _batch_norms(method.backbone) for p in bn.parameters()}
    for name, p in method.backbone.named_parameters():
        wanted = name.startswith(("stages.2", "stages.3", "norm")) and id(p) not in bn_params
        assert p.requires_grad == wanted, name
    assert not any(bn.training for bn in _batch_norms(method.backbone))


def test_l2_counts_the_hidden_dense_kernels_only():
    method = _continual()
    state = method.head.state_dict()
    kernels = [v for k, v in state.items() if k.startswith("body.") and k.endswith(".weight")]
    assert len(kernels) == 2  # Dense 512 and Dense 32; the output layer has no regulariser
    expected = 1e-5 * sum(float((k.double() ** 2).sum()) for k in kernels)
    assert float(method.l2_penalty()) == pytest.approx(expected, rel=1e-5)


def _steps(transform) -> dict[str, list]:
    found: dict[str, list] = {}
    for t in transform.transforms:
        found.setdefault(type(t).__name__, []).append(t)
    return found


def _pipelines(method: str, data: str = "synthetic"):
    cfg = _faithful(method, data)
    size, aug = 224, cfg.data.augment
    return (_steps(train_transform(size, (0.5,) * 3, (0.5,) * 3, aug)),
            _steps(eval_transform(size, (0.5,) * 3, (0.5,) * 3, aug)))


def test_qcs_rafdb_pipeline_has_the_official_ranges():
    """main_QCS_raf_db.py: Resize((224, 224)), RandomHorizontalFlip, ColorJitter(0.2, 0.2, 0.2, 0.1), Normalize,
    RandomErasing(scale=(0.02, 0.1)); test Resize((224, 224))."""
    train, test = _pipelines("qcs")
    assert set(train) == {"Lambda", "HorizontalFlip", "ColorJitter", "Normalize", "Erasing"}
    assert train["Lambda"][0].custom_apply_fns["image"].size == 224
    jitter = train["ColorJitter"][0]
    assert (jitter.brightness, jitter.contrast, jitter.saturation) == ((0.8, 1.2),) * 3
    assert jitter.hue == pytest.approx((-0.1, 0.1)) and jitter.p == 1.0
    erasing = train["Erasing"][0]
    assert (erasing.scale, erasing.ratio, erasing.fill, erasing.p) == ((0.02, 0.1), (0.3, 3.3), 0, 0.5)
    assert train["HorizontalFlip"][0].p == 0.5
    assert set(test) == {"Lambda", "Normalize"}


@pytest.mark.parametrize(("data", "crop_from", "degrees", "scale"), [("ferplus", 232, 10, (0.02, 0.1)),
                                                                    ("affectnet7", 236, 12, (0.03, 0.1)),
                                                                    ("affectnet", 236, 12, (0.03, 0.1))])
def test_qcs_ferplus_and_affectnet_pipelines_have_the_official_ranges(data, crop_from, degrees, scale):
    train, test = _pipelines("qcs", data)
    assert train["Lambda"][0].custom_apply_fns["image"].size == crop_from
    assert (train["RandomCrop"][0].height, train["RandomCrop"][0].width) == (224, 224)
    rotate = train["Rotate"][0]
    assert rotate.limit == (-degrees, degrees) and rotate.p == 1.0
    assert rotate.border_mode == cv2.BORDER_CONSTANT and rotate.fill == 0
    assert train["Erasing"][0].scale == scale
    assert test["Lambda"][0].custom_apply_fns["image"].size == crop_from
    assert (test["CenterCrop"][0].height, test["CenterCrop"][0].width) == (224, 224)


def test_cafe_pipeline_has_the_official_ranges():
    """ours_CAFE.py: add_g (p 0.5, variance 30 on uint8) -> Resize((224, 224)) -> ToTensor -> Normalize ->
    RandomHorizontalFlip -> RandomErasing(scale=(0.02, 0.25)), value 0."""
    train, _ = _pipelines("clip_gfer")
    noise = train["UInt8GaussianNoise"][0]
    assert (noise.variance, noise.mean, noise.p) == (30.0, 0.0, 0.5)
    names = list(train)
    assert names.index("UInt8GaussianNoise") < names.index("Lambda") and "ColorJitter" not in train
    assert train["Erasing"][0].scale == (0.02, 0.25) and train["Erasing"][0].fill == 0


def test_continual_pipeline_has_the_official_keras_ranges():
    """complex-FER: RandomFlip('horizontal'), RandomRotation(0.01), RandomZoom(0.05, 0.05),
    RandomTranslation(0.05, 0.05), fill_mode reflect."""
    train, _ = _pipelines("continual")
    assert train["HorizontalFlip"][0].p == 0.5
    assert train["Rotate"][0].limit == pytest.approx((-3.6, 3.6)) and train["Rotate"][0].p == 1.0
    affine = train["Affine"][0]
    assert affine.scale == {"x": pytest.approx((0.95, 1.05)), "y": pytest.approx((0.95, 1.05))}
    assert affine.translate_percent == {"x": pytest.approx((-0.05, 0.05)), "y": pytest.approx((-0.05, 0.05))}
    assert affine.border_mode == cv2.BORDER_REFLECT and affine.p == 1.0
    assert {"ColorJitter", "Erasing", "RandomResizedCrop"}.isdisjoint(train)


def test_faithful_noise_adds_variance_30_to_uint8_pixels():
    aug = OmegaConf.merge(_faithful("clip_gfer").data.augment, {"noise_p": 1.0, "erasing": 0.0, "hflip": 0.0})
    transform = train_transform(64, (0.0,) * 3, (1 / 255,) * 3, aug)  # normalise back to pixel units
    reseed(transform, 0)
    pixels = transform(image=np.full((64, 64, 3), 128, np.uint8))["image"]
    # add_g truncates to uint8: floor(128 + N(0, 30)) has mean 127.5 and variance 30 + 1/12
    assert pixels.mean() == pytest.approx(127.5, abs=0.2) and pixels.var() == pytest.approx(30.08, rel=0.05)


def test_pil_bilinear_resizes_as_torchvision_resize_on_pil_images():
    transforms = pytest.importorskip("torchvision.transforms")
    image = np.random.default_rng(0).integers(0, 256, (100, 90, 3), np.uint8)
    for size in (224, 48):  # enlarging (RAF-DB 100 -> 224) and shrinking (antialiased)
        ours = PilBilinear(size)(image)
        reference = np.asarray(transforms.Resize((size, size))(Image.fromarray(image)))
        assert np.array_equal(ours, reference)


def test_bgr_target_color_feeds_the_selected_targets_channel_reversed():
    """Generalizable-FER deviation: the FERPlus-source notebooks transform BGR arrays of AffectNet/SFEW/MMA."""
    faithful = _faithful("clip_gfer", "ferplus")
    assert xd.bgr_input(faithful, "sfew") and not xd.bgr_input(faithful, "rafdb")
    assert not xd.bgr_input(build_config(["method=clip_gfer", "data=ferplus"]), "sfew")  # corrected stays RGB
    red = np.zeros((8, 8, 3), np.uint8)
    red[..., 0] = 255
    seen = ReversedChannels(eval_transform(4, (0.0,) * 3, (1 / 255,) * 3))(image=red)["image"]
    assert seen[..., 2].min() == pytest.approx(255) and seen[..., :2].max() == 0


def test_leaderboard_shows_faithful_and_corrected_results_in_separate_sections():
    base = {"suite": "", "data": "rafdb", "seed": 0, "test/uar": 0.5, "test/f1": 0.5}
    table = pd.DataFrame([
        {**base, "run_id": "c", "name": "qcs", "method": "qcs", "ckpt": "best", "selection": "val/acc",
         "test/acc": 0.811, "protocol": "corrected"},
        {**base, "run_id": "f", "name": "qcs", "method": "qcs", "ckpt": "best_test_epoch",
         "selection": "test (faithful; optimistic)", "test/acc": 0.922, "protocol": "faithful"},
        {**base, "run_id": "o", "name": "qcs", "method": "qcs", "ckpt": "last", "selection": "last epoch",
         "test/acc": 0.733},  # a row of an older leaderboard without the column counts as corrected
    ])
    markdown = leaderboard.render(table)
    corrected = markdown.index("### Corrected protocol")
    faithful = markdown.index("### Faithful protocol")
    end = markdown.index("## All runs")
    assert corrected < faithful < end
    assert "0.811" in markdown[corrected:faithful] and "0.733" in markdown[corrected:faithful]
    assert "0.922" in markdown[faithful:end] and "best_test_epoch" in markdown[faithful:end]
    assert "0.922" not in markdown[corrected:faithful]


@pytest.mark.slow
def test_faithful_continual_continues_on_the_best_base_fold(tmp_path):
    """complex-FER `--phase all`: the base model is trained on every subject fold and the class orders continue on
    the fold whose base scores best on its held-out fold, from that fold's base model (CFEE release layout, 3 folds
    of the 8 subjects written by tests/test_inspect.py's tree)."""
    from test_inspect import _cfee_tree

    _cfee_tree(tmp_path / "cfee")
    cfg = build_config(["method=continual", "data=cfee", f"data.root={tmp_path / 'cfee'}", "profile=cpu",
                        "method.protocol=faithful", "data.folds=3", "method.base_fold=best", "data.image_size=24",
                        "data.batch_size=16", "data.num_workers=0", "method.step_batch_size=8",
                        "trainer.max_epochs=2", "method.step_epochs=1", "method.max_steps=2",
                        "method.base_finetune_trainable=null", "method.fewshot.enabled=false",
                        "trainer.progress_bar=false", "logger.wandb=false", "seeds=[0,1]",
                        f"runs_dir={tmp_path / 'runs'}", f"results_dir={tmp_path / 'results'}"])
    run_dirs = benchmark.bench(cfg)
    assert len(run_dirs) == 2  # the two class orders; the three base-only fold runs are not bench results
    record = json.loads((run_dirs[0] / "metrics.json").read_text())["base_fold"]
    base_runs = [tmp_path / "runs" / name for name in record["base_runs"]]
    assert [d.name.split("-fold")[1].split("-")[0] for d in base_runs] == ["0", "1", "2"]
    for run_dir, acc in zip(base_runs, record["base_acc"], strict=True):  # step 0 only, scored on its held-out fold
        state = torch.load(run_dir / "checkpoints" / "scenario.ckpt", map_location="cpu", weights_only=True)
        assert state["step"] == 0 and state["rows"][0][0] == pytest.approx(acc)
    best = record["selected"]
    assert best == int(np.argmax(record["base_acc"]))
    chosen = base_runs[best]
    shared = torch.load(chosen / "checkpoints" / "base.ckpt", map_location="cpu", weights_only=True)
    for run_dir in run_dirs:  # every order continues on that fold, from that base model, without training one
        assert f"-fold{best}-" in run_dir.name
        assert (run_dir / "splits" / "test.txt").read_text() == (chosen / "splits" / "test.txt").read_text()
        assert json.loads((run_dir / "metrics.json").read_text())["base_fold"] == record
        assert sorted(p.name for p in (run_dir / "logs").iterdir()) == ["step01"]
        base = torch.load(run_dir / "checkpoints" / "base.ckpt", map_location="cpu", weights_only=True)
        assert all(torch.equal(v, shared["backbone"][k]) for k, v in base["backbone"].items())
