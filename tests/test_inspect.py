"""``fer-bench inspect``: counts, subjects, dropped rows and bad items of a data set as a run would read it, and a
non-zero exit when that run would stop. The trees imitate real releases (sources named at each tree)."""

import json
from pathlib import Path

import pandas as pd
import pytest

from fer_bench.cli import main
from fer_bench.data import layouts
from fer_bench.data.readers import cfee

# CFEE_Database_230 (Du, Tao & Martinez, PNAS 2014): <class id:2>_<subject:3>_<index>.jpg in group folders such as
# 01-04/Images1/, class table exported from the 'summary' sheet; the release also holds ids past 22 (23_178_6632.jpg).
CFEE_CLASSES = [(1, "neutral"), (2, "happy"), (3, "sad"), (4, "fearful"), (5, "angry"), (6, "surprised"),
                (7, "disgusted"), (8, "happily surprised"), (9, "happily disgusted")]
SUBJECTS = (110, 111, 120, 135, 150, 164, 178, 201)


def _cfee_tree(root: Path) -> None:
    """Every subject shows the 9 listed classes and class 23 (not in the table); group folders by class id."""
    items, index = [], 2500
    for subject in SUBJECTS:
        for class_id in (1, 2, 3, 4, 5, 6, 7, 8, 9, 23):
            index += 1
            group = "01-04/Images1" if class_id <= 4 else "05-08/Images2"
            items.append((group, class_id, subject, index))
    layouts.write_cfee(root, items, CFEE_CLASSES, size=32)


def test_inspect_cfee_counts_splits_subjects_and_the_unmapped_id(tmp_path, capsys):
    _cfee_tree(tmp_path / "cfee")
    out = tmp_path / "inspect"
    status = main(["inspect", "data=cfee", f"data.root={tmp_path / 'cfee'}", "data.folds=4", "data.fold=0",
                   f"out={out}"])
    printed = capsys.readouterr().out
    assert status == 0, printed
    counts = pd.read_csv(out / "counts.csv", index_col="split")
    # 4 folds of 8 sorted subjects: fold 0 tests 110, 111; val carved from the 6 training subjects (whole subjects)
    assert counts.columns.tolist() == ["happy", "sad", "surprise", "fear", "disgust", "anger", "total"]
    assert counts.loc["test"].tolist() == [2] * 6 + [12]
    assert counts.loc["train", "total"] + counts.loc["val", "total"] == 36
    assert counts.loc["val", "total"] % 6 == 0 and counts.loc["val", "total"] > 0
    assert counts.loc["total", "total"] == 48
    dropped = pd.read_csv(out / "dropped.csv")
    unmapped = cfee.unmapped("23", tmp_path / "cfee/classes.csv", "05-08/Images2/23_110_2510.jpg")
    assert dict(zip(dropped["reason"], dropped["count"], strict=True)) == {
        unmapped: 8, "no expression label": 16, "expression outside label space 'basic6'": 8}
    assert f"       8  {unmapped}" in printed.splitlines()
    assert "subjects: 8 (train " in printed and "test 2); in more than one split: 0" in printed
    assert "image size (width x height): 32x32 .. 32x32, 1 distinct" in printed
    assert printed.rstrip().endswith("a run with these settings would start")
    assert pd.read_csv(out / "problems.csv").empty


def test_inspect_exits_non_zero_on_a_broken_image_and_names_it(tmp_path, capsys):
    # RAF-DB basic layout (list_patition_label.txt lines such as "train_00001.jpg 5", aligned images).
    layouts.write_rafdb(tmp_path / "raf", [("train", 4)] * 6 + [("test", 4), ("test", 5), ("train", 5)])
    broken = tmp_path / "raf/basic/Image/aligned/train_00003_aligned.jpg"
    whole = broken.read_bytes()
    broken.write_bytes(whole[: len(whole) // 2])
    out = tmp_path / "inspect"
    args = ["inspect", "data=rafdb", f"data.root={tmp_path / 'raf'}", f"out={out}"]
    assert main(args) == 1
    printed = capsys.readouterr().out
    list_file = tmp_path / "raf/basic/EmoLabel/list_patition_label.txt"
    named = f"  {list_file}:3: truncated image file {broken} (no JPEG end marker)"
    assert named in printed.splitlines()
    assert "bad items: 1; all in" in printed
    assert "  1 bad item(s) with data.on_error=raise (data.on_error=skip skips and lists them)" in printed
    problems = pd.read_csv(out / "problems.csv")
    assert problems.values.tolist() == [[f"{list_file}:3", f"truncated image file {broken} (no JPEG end marker)"]]
    assert main([*args, "data.on_error=skip"]) == 0  # the run would skip and list it
    counts = pd.read_csv(out / "counts.csv", index_col="split")
    assert counts.loc["total", "total"] == 8


def test_inspect_exits_non_zero_on_a_fold_error_after_listing_the_bad_files(tmp_path, capsys):
    _cfee_tree(tmp_path / "cfee")
    status = main(["inspect", "data=cfee", f"data.root={tmp_path / 'cfee'}", "data.folds=9",
                   f"out={tmp_path / 'inspect'}"])
    printed = capsys.readouterr().out
    assert status == 1
    assert "a run with these settings would stop:" in printed
    assert "data set 'cfee': 8 subject(s) cannot make data.folds=9 subject folds" in printed


@pytest.mark.slow
def test_continual_bench_starts_on_a_cfee_release_tree(tmp_path, capsys):
    _cfee_tree(tmp_path / "cfee")
    status = main(["bench", "method=continual", "data=cfee", f"data.root={tmp_path / 'cfee'}", "profile=cpu",
                   "data.folds=4", "data.image_size=24", "data.batch_size=16", "data.num_workers=0",
                   "method.step_batch_size=8", "trainer.max_epochs=1", "method.step_epochs=1",
                   "method.fewshot.enabled=false", "trainer.progress_bar=false", "logger.wandb=false", "seeds=[0]",
                   f"runs_dir={tmp_path / 'runs'}", f"results_dir={tmp_path / 'results'}"])
    assert status == 0, capsys.readouterr().err
    (run_dir,) = (tmp_path / "runs").iterdir()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["step_sizes"] == [6, 1, 1]  # 6 basic classes, then happily surprised / disgusted
    dropped = pd.read_csv(run_dir / "dropped.csv")
    assert dropped["count"].tolist()[0] == 8 and dropped["reason"][0].startswith("CFEE: class id 23 is not in")
