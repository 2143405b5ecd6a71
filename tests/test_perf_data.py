"""``fer-bench perf suite=data`` at toy sizes: the trees it builds and the table it writes (not its timings)."""

from __future__ import annotations

import pandas as pd

from fer_bench.data.checked import table_path
from fer_bench.tools.perf_data import CLASSES, build_tree, run_perf_data


def test_tree_is_hard_links_to_a_few_real_jpegs(tmp_path):
    build_tree(tmp_path, 30)
    images = sorted((tmp_path / "images").rglob("*.jpg"))
    assert len(images) == 30 and {p.parts[-3] for p in images} == set(CLASSES)
    assert {p.stat().st_ino for p in images} == {(tmp_path / "source-0.jpg").stat().st_ino}
    assert images[0].read_bytes()[:2] == b"\xff\xd8"


def test_table_has_one_row_per_size_and_the_budget_rows(tmp_path):
    md = run_perf_data([14, 28], tmp_path / "out", tmp_path / "cache", workers=1, batch=8)
    table = pd.read_csv(tmp_path / "out" / "perf_data.csv")
    sizes = table[table["budget"].isna()]
    assert sizes["images"].tolist() == [14, 28]
    assert (sizes["worker_start_mb"] > 0).all() and (sizes["second_index_us_per_image"] > 0).all()
    assert table["budget"].dropna().tolist() == ["second_index_us_per_image", "worker_growth_mb_per_million",
                                                 "index_linearity", "index_linearity"]
    # The first run checked every header, the second found them all stored.
    log = table_path(tmp_path / "cache", tmp_path / "cache" / "perf-data" / "tree-28" / "images")
    assert log.with_suffix(".log").read_text().split()[-2:] == ["checked=28", "cached=0"]
    assert "upper bounds" in md.read_text()
