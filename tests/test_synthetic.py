"""Synthetic faces (data/synthetic.py): determinism, labels, splits, cache, drawings and learnability."""

from __future__ import annotations

import socket
from dataclasses import fields, replace
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from fer_bench import labels
from fer_bench.data import synthetic as syn
from fer_bench.data.cache import COMPLETE_MARKER, process_alive
from fer_bench.data.synthetic import SynthSpec, contact_sheet, ensure_cached, generate, render_face

# The prototypes written out again by hand (an independent copy, so a wrong table in the module fails here).
SPEC_PROTOTYPES = {
    "neutral": (), "happy": (6, 12), "sad": (1, 4, 15), "surprise": (1, 2, 5, 26),
    "fear": (1, 2, 4, 5, 7, 20, 26), "anger": (4, 5, 7, 23), "disgust": (9, 10, 15), "contempt": (12, 14),
    "happily surprised": (1, 2, 12, 25), "happily disgusted": (10, 12, 25), "sadly fearful": (1, 4, 20, 25),
    "sadly angry": (4, 15), "sadly surprised": (1, 4, 25, 26), "sadly disgusted": (4, 10),
    "fearfully angry": (4, 20, 25), "fearfully surprised": (1, 2, 5, 20, 25),
    "fearfully disgusted": (1, 4, 10, 20, 25), "angrily surprised": (4, 25, 26),
    "angrily disgusted": (4, 10, 17), "disgustedly surprised": (1, 2, 5, 10), "appalled": (4, 9, 10),
    "hatred": (4, 7, 10), "awed": (1, 2, 5, 25),
}
SPEC_LEVELS = {"easy": ((0.7, 1.0), 0, 0.0), "medium": ((0.45, 1.0), 2, 0.3), "hard": ((0.25, 0.8), 3, 0.4)}
COLUMNS = ["id", "path", "expression", "compound", *labels.AU_COLUMNS, "valence", "arousal", "intensity",
           "subject", "domain", "split"]


def read_table(folder: Path) -> pd.DataFrame:
    return pd.read_csv(folder / "labels.csv", dtype={"id": str, "expression": str, "compound": str},
                       keep_default_na=False)


def read_rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def class_of(row) -> str:
    return row["expression"] or row["compound"]


@pytest.fixture(scope="module")
def mixed(tmp_path_factory) -> tuple[SynthSpec, Path, pd.DataFrame]:
    """Every class kind and every domain, small."""
    spec = SynthSpec(classes="basic7+compound", domains=list(syn.DOMAINS), size=32, subjects=5, per_subject=1,
                     seed=3)
    out = tmp_path_factory.mktemp("mixed")
    return spec, out, generate(spec, out, progress=False)


# ------------------------------------------------------------------------------------------ determinism


def test_same_spec_gives_identical_bytes_and_another_seed_differs(tmp_path):
    spec = SynthSpec(classes="basic8", domains=list(syn.DOMAINS), size=40, subjects=3, per_subject=1, seed=5)
    a, b, c = (generate(s, tmp_path / n, progress=False)
               for s, n in ((spec, "a"), (spec, "b"), (replace(spec, seed=6), "c")))
    assert a.equals(b)
    assert (tmp_path / "a/labels.csv").read_bytes() == (tmp_path / "b/labels.csv").read_bytes()
    same = [(tmp_path / "a" / p).read_bytes() == (tmp_path / "b" / p).read_bytes() for p in a.path]
    assert all(same)
    assert len(c) == len(a)
    pairs = zip(a.path, c.path, strict=True)
    assert all((tmp_path / "a" / p).read_bytes() != (tmp_path / "c" / q).read_bytes() for p, q in pairs)


def test_png_holds_the_rendered_rgb_picture(mixed):
    spec, out, df = mixed
    row = df.iloc[len(df) // 2]
    cls = syn.FaceClass(class_of(row), compound=bool(row["compound"]))
    sid = int(row["subject"])
    subject = syn.make_subject(spec.seed, sid)
    pic = syn.picture(spec.seed, subject, sid, cls, 0, row["domain"], spec.difficulty, spec.size)
    np.testing.assert_array_equal(read_rgb(out / row["path"]), pic.image)
    assert pic.image.dtype == np.uint8 and pic.image.shape == (spec.size, spec.size, 3)


@pytest.mark.parametrize("size", [16, 48, 112, 150])
def test_render_face_any_size_and_gray48_is_grey(size):
    params = syn.FaceParams(syn.make_subject(0, 0), np.zeros(len(labels.AUS)))
    images = {d: render_face(params, size, d, "medium", np.random.default_rng(1)) for d in syn.DOMAINS}
    for image in images.values():
        assert image.shape == (size, size, 3) and image.dtype == np.uint8
    grey = images["gray48"]
    assert np.array_equal(grey[..., 0], grey[..., 1]) and np.array_equal(grey[..., 1], grey[..., 2])
    assert not np.array_equal(images["lab"], images["wild"])
    again = render_face(params, size, "wild", "medium", np.random.default_rng(1))
    np.testing.assert_array_equal(again, images["wild"])


@pytest.mark.parametrize("au", labels.AUS)
def test_every_au_changes_the_picture(au):
    subject = syn.make_subject(0, 1)
    neutral = syn.FaceParams(subject, np.zeros(len(labels.AUS)))
    aus = np.zeros(len(labels.AUS))
    aus[labels.AUS.index(au)] = 1.0
    base, moved = (render_face(p, 64, "lab", "easy", np.random.default_rng(0)).astype(float)
                   for p in (neutral, syn.FaceParams(subject, aus)))
    changed = np.abs(moved - base).max(axis=2) > 24
    assert changed.sum() >= 8, f"AU{au} barely shows at 64 px ({changed.sum()} pixels changed)"


# ------------------------------------------------------------------------------------------ labels


def test_labels_csv_columns_types_and_ranges(mixed):
    spec, out, returned = mixed
    df = read_table(out)
    assert list(df.columns) == COLUMNS
    assert list(returned.columns) == COLUMNS
    assert df["id"].str.fullmatch(r"\d{6}").all() and df["id"].is_unique and df["id"].is_monotonic_increasing
    assert (df["path"] == "images/" + df["split"] + "/" + df["id"] + ".png").all()
    assert all((out / p).is_file() for p in df["path"])
    assert set(df["split"]) == {"train", "val", "test"}
    assert set(df["domain"]) == set(syn.DOMAINS)
    assert df["expression"].isin(("", *labels.EXPRESSIONS)).all()
    assert df["compound"].isin(("", *labels.COMPOUNDS)).all()
    assert ((df["expression"] == "") != (df["compound"] == "")).all()
    assert set(df["expression"]) - {""} == set(labels.class_names("basic7"))
    assert set(df["compound"]) - {""} == set(labels.COMPOUNDS)
    assert pd.api.types.is_integer_dtype(df["subject"]) and set(df["subject"]) == set(range(spec.subjects))
    for col in (*labels.AU_COLUMNS, "intensity"):
        assert pd.api.types.is_float_dtype(df[col]) and df[col].between(0, 1).all(), col
    for col in ("valence", "arousal"):
        assert pd.api.types.is_float_dtype(df[col]) and df[col].between(-1, 1).all(), col
    assert len(df) == spec.subjects * (7 + 15) * len(syn.DOMAINS) * spec.per_subject


@pytest.mark.parametrize("classes,expected", [
    ("basic6", labels.class_names("basic6")), ("basic8", labels.class_names("basic8")),
    ("compound", list(labels.COMPOUNDS)),
    ("basic6+compound", labels.class_names("basic6") + list(labels.COMPOUNDS)),
])
def test_class_sets(classes, expected):
    assert [c.name for c in syn.class_list(classes)] == expected


@pytest.mark.parametrize("difficulty", ["easy", "medium", "hard"])
def test_au_labels_follow_the_prototypes(tmp_path, difficulty):
    spec = SynthSpec(classes="basic8", difficulty=difficulty, size=16, subjects=6, per_subject=3, seed=11)
    df = generate(spec, tmp_path / "b", progress=False)
    df = pd.concat([df, generate(replace(spec, classes="compound"), tmp_path / "c", progress=False)])
    (lo, hi), leaks, leak_max = SPEC_LEVELS[difficulty]
    leak_counts = []
    for _, row in df.iterrows():
        proto = SPEC_PROTOTYPES[class_of(row)]
        got = {au: row[f"au{au}"] for au in labels.AUS}
        if proto:
            assert lo - 1e-6 <= row["intensity"] <= hi + 1e-6
        for au in proto:
            assert got[au] >= lo * (1 - syn.JITTER) - 1e-4, (class_of(row), au, got[au])
            low, high = row["intensity"] * (1 - syn.JITTER), row["intensity"] * (1 + syn.JITTER)
            assert low - 1e-4 <= got[au] <= high + 1e-4
        others = [v for au, v in got.items() if au not in proto]
        assert max(others) <= leak_max + 1e-6, (class_of(row), others)
        leak_counts.append(sum(v > 0 for v in others))
    assert max(leak_counts) <= leaks
    if leaks:
        assert max(leak_counts) == leaks, "leak AUs never reach the allowed count"


def test_valence_arousal_follow_the_circumplex(mixed):
    _, _, df = mixed
    mean = df.groupby(df["expression"] + df["compound"])[["valence", "arousal"]].mean()
    assert mean.loc["happy", "valence"] > 0.3 and mean.loc["sad", "valence"] < -0.3
    assert mean.loc["surprise", "arousal"] > 0.3 and mean.loc["sad", "arousal"] < -0.1
    assert abs(mean.loc["neutral", "valence"]) < 0.1 and abs(mean.loc["neutral", "arousal"]) < 0.1


# ------------------------------------------------------------------------------------------ splits


def test_splits_are_subject_independent_and_hold_every_class(mixed):
    spec, _, df = mixed
    assert (df.groupby("subject")["split"].nunique() == 1).all()
    classes = set(df["expression"] + df["compound"])
    for split, part in df.groupby("split"):
        assert set(part["expression"] + part["compound"]) == classes, split
        assert set(part["domain"]) == set(spec.domains), split


def test_split_assignment_is_seeded_and_sized():
    spec = SynthSpec(subjects=50, val_fraction=0.2, test_fraction=0.1)
    splits = syn.split_of_subjects(spec)
    counts = pd.Series(splits).value_counts()
    assert counts["test"] == 5 and counts["val"] == 10 and counts["train"] == 35
    assert syn.split_of_subjects(spec) == splits
    assert syn.split_of_subjects(replace(spec, seed=1)) != splits
    no_val = syn.split_of_subjects(replace(spec, val_fraction=0.0))
    assert "val" not in no_val.values()


# ------------------------------------------------------------------------------------------ spec


@pytest.mark.parametrize("change,field", [
    ({"classes": "basic9"}, "classes"), ({"domains": ["lab", "mars"]}, "domains"),
    ({"domains": []}, "domains"), ({"domains": ["lab", "lab"]}, "domains"),
    ({"difficulty": "extreme"}, "difficulty"), ({"size": 4}, "size"), ({"subjects": 2}, "subjects"),
    ({"per_subject": 0}, "per_subject"), ({"test_fraction": 1.2}, "test_fraction"),
    ({"val_fraction": 0.5, "test_fraction": 0.5}, "val_fraction"), ({"seed": -1}, "seed"),
])
def test_validate_names_the_bad_field(change, field):
    with pytest.raises(ValueError, match=rf"data\.synth\.{field}="):
        replace(SynthSpec(), **change).validate()


def test_key_is_stable_and_changes_with_every_field():
    base = SynthSpec()
    assert base.key() == SynthSpec().key()
    changed = {"classes": "basic8", "domains": ["wild"], "difficulty": "hard", "size": 64, "subjects": 61,
               "per_subject": 3, "val_fraction": 0.1, "test_fraction": 0.3, "seed": 1}
    assert set(changed) == {f.name for f in fields(SynthSpec)}
    keys = {replace(base, **{k: v}).key() for k, v in changed.items()}
    assert base.key() not in keys and len(keys) == len(changed)


# ------------------------------------------------------------------------------------------ cache

TINY = SynthSpec(classes="basic7", size=16, subjects=3, per_subject=1)


def test_cache_reuses_the_folder_without_rendering(tmp_path, monkeypatch):
    folder = ensure_cached(TINY, tmp_path, progress=False)
    assert folder == tmp_path / f"synthetic-{TINY.key()}"
    assert (folder / COMPLETE_MARKER).is_file() and (folder / "labels.csv").is_file()
    mtime = (folder / "labels.csv").stat().st_mtime_ns

    def fail(*args, **kwargs):
        raise AssertionError("rendered again")

    monkeypatch.setattr(syn, "generate", fail)
    assert ensure_cached(TINY, tmp_path, progress=False) == folder
    assert (folder / "labels.csv").stat().st_mtime_ns == mtime
    with pytest.raises(AssertionError, match="rendered again"):
        ensure_cached(replace(TINY, seed=1), tmp_path, progress=False)
    assert [p.name for p in tmp_path.iterdir()] == [folder.name]


def test_cache_changed_field_gives_a_new_folder(tmp_path):
    a = ensure_cached(TINY, tmp_path, progress=False)
    b = ensure_cached(replace(TINY, difficulty="hard"), tmp_path, progress=False)
    assert a != b and a.is_dir() and b.is_dir()


def test_cache_ignores_a_folder_without_marker_and_stale_temporaries(tmp_path):
    final = tmp_path / f"synthetic-{TINY.key()}"
    (final / "images").mkdir(parents=True)
    (final / "labels.csv").write_text("half written\n")
    dead = 1
    while process_alive(dead):
        dead += 1
    stale = tmp_path / f".{final.name}.tmp-{socket.gethostname()}-{dead}-deadbeef"
    stale.mkdir()
    assert ensure_cached(TINY, tmp_path, progress=False) == final
    assert (final / COMPLETE_MARKER).is_file()
    assert len(read_table(final)) == 3 * 7
    assert not stale.exists()


def test_cache_leaves_nothing_behind_when_generation_fails(tmp_path, monkeypatch):
    def broken(spec, out_dir, progress=True):
        (Path(out_dir) / "images").mkdir(parents=True)
        raise RuntimeError("disk full")

    monkeypatch.setattr(syn, "generate", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        ensure_cached(TINY, tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_cache_uses_the_other_process_folder_when_it_wins_the_race(tmp_path, monkeypatch):
    real = syn.generate
    calls = []

    def racing(spec, out_dir, progress=True):
        table = real(spec, out_dir, progress=progress)
        calls.append(out_dir)
        if len(calls) == 1:  # another process finishes while this one is still writing its marker
            monkeypatch.setattr(syn, "generate", real)
            ensure_cached(spec, tmp_path, progress=False)
        return table

    monkeypatch.setattr(syn, "generate", racing)
    final = ensure_cached(TINY, tmp_path, progress=False)
    assert final == tmp_path / f"synthetic-{TINY.key()}"
    assert (final / COMPLETE_MARKER).is_file()
    assert [p.name for p in tmp_path.iterdir()] == [final.name]


def test_cache_is_safe_for_two_processes_at_once(tmp_path):
    import multiprocessing as mp

    with mp.get_context("spawn").Pool(2) as pool:
        folders = pool.starmap(ensure_cached, [(TINY, tmp_path, False)] * 2)
    assert folders[0] == folders[1]
    assert (folders[0] / COMPLETE_MARKER).is_file()
    assert [p.name for p in tmp_path.iterdir()] == [folders[0].name]
    assert len(read_table(folders[0])) == 21


# ------------------------------------------------------------------------------------------ contact sheet


def test_contact_sheet(tmp_path):
    out = contact_sheet(tmp_path / "sheet.png", size=40)
    image = cv2.imread(str(out))
    assert image.shape[0] > 23 * 40 and image.shape[1] > 5 * 40
    assert image.std() > 20


# ------------------------------------------------------------------------------------------ learnability


def _tensors(folder: Path, df: pd.DataFrame, classes: list[str]):
    x = np.stack([read_rgb(folder / p) for p in df["path"]])
    x = torch.from_numpy(x).permute(0, 3, 1, 2).float().div(255).sub(0.5).div(0.25)
    y = torch.tensor(df["expression"].map({c: i for i, c in enumerate(classes)}).to_numpy())
    va = torch.tensor(df[["valence", "arousal"]].to_numpy(), dtype=torch.float32)
    return x, y, va, df["split"].to_numpy()


def _net(n_classes: int) -> tuple[nn.Module, nn.Module, nn.Module]:
    def block(i, o):
        return [nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU(), nn.MaxPool2d(2)]

    body = nn.Sequential(*block(3, 16), *block(16, 32), *block(32, 64), *block(64, 64), nn.Flatten(),
                         nn.Dropout(0.2))
    return body, nn.Linear(64 * 4 * 4, n_classes), nn.Linear(64 * 4 * 4, 2)


def _ccc(pred: np.ndarray, true: np.ndarray) -> float:
    cov = np.mean((pred - pred.mean()) * (true - true.mean()))
    return float(2 * cov / (pred.var() + true.var() + (pred.mean() - true.mean()) ** 2))


@pytest.mark.slow
def test_small_cnn_learns_expression_and_va_and_loses_accuracy_on_wild(tmp_path):
    torch.manual_seed(0)  # threads: one per xdist worker (conftest)
    spec = SynthSpec(classes="basic7", domains=["lab"], difficulty="medium", size=64, subjects=80,
                     per_subject=2, seed=0)
    classes = labels.class_names("basic7")
    lab, wild = tmp_path / "lab", tmp_path / "wild"
    x, y, va, split = _tensors(lab, generate(spec, lab, progress=False), classes)
    wild_df = generate(replace(spec, domains=["wild"]), wild, progress=False)
    xw, yw, _, split_w = _tensors(wild, wild_df, classes)

    body, head, va_head = _net(len(classes))
    train = torch.from_numpy(split == "train")
    xt, yt, vat = x[train], y[train], va[train]
    epochs, batch = 10, 32
    opt = torch.optim.AdamW([*body.parameters(), *head.parameters(), *va_head.parameters()], lr=3e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 3e-3, total_steps=epochs * -(-len(xt) // batch))
    for _ in range(epochs):
        body.train()
        order = torch.randperm(len(xt))
        for i in range(0, len(xt), batch):
            idx = order[i:i + batch]
            xb = torch.where((torch.rand(len(idx)) < 0.5)[:, None, None, None], xt[idx].flip(3), xt[idx])
            feats = body(xb)
            loss = nn.functional.cross_entropy(head(feats), yt[idx])
            loss = loss + nn.functional.mse_loss(torch.tanh(va_head(feats)), vat[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()

    body.eval()
    with torch.no_grad():
        test = torch.from_numpy(split == "test")
        feats = body(x[test])
        acc = (head(feats).argmax(1) == y[test]).float().mean().item()
        va_pred, va_true = torch.tanh(va_head(feats)).numpy(), va[test].numpy()
        test_w = torch.from_numpy(split_w == "test")
        acc_wild = (head(body(xw[test_w])).argmax(1) == yw[test_w]).float().mean().item()
    ccc_v, ccc_a = _ccc(va_pred[:, 0], va_true[:, 0]), _ccc(va_pred[:, 1], va_true[:, 1])
    print(f"lab acc={acc:.3f} ccc_v={ccc_v:.3f} ccc_a={ccc_a:.3f} wild acc={acc_wild:.3f}")
    assert acc >= 0.95
    assert ccc_v >= 0.7 and ccc_a >= 0.7
    assert acc - acc_wild >= 0.15
