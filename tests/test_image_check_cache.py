"""The per-image check is done once per file version and remembered (data/checked.py, ``data.check``)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from conftest import write_png

from fer_bench.config import ConfigError, build_config
from fer_bench.data import checked
from fer_bench.data.readers import read_records

CLASSES = ("happy", "sad", "neutral")


def _tree(root: Path, per_class: int = 3) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for name in CLASSES:
        for i in range(per_class):
            path = root / name / f"{i}.png"
            write_png(path, rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
            paths.append(path)
    return paths


def _cfg(root: Path, cache: Path, *extra: str):
    return build_config(["data=folder", f"data.root={root}", f"data.cache_dir={cache}", *extra]).data


@pytest.fixture
def opened(monkeypatch) -> list[str]:
    """Paths whose header the check opens, in order."""
    calls: list[str] = []
    real = checked.image_problem

    def counting(path: str):
        calls.append(path)
        return real(path)

    monkeypatch.setattr(checked, "image_problem", counting)
    return calls


def test_second_read_of_an_unchanged_tree_opens_no_image(tmp_path, opened):
    paths = _tree(tmp_path / "data")
    cfg = _cfg(tmp_path / "data", tmp_path / "cache")
    first, _ = read_records(cfg)
    assert sorted(opened) == sorted(map(str, paths))
    opened.clear()
    second, _ = read_records(cfg)
    assert opened == []
    assert second.equals(first)
    log = checked.table_path(tmp_path / "cache", tmp_path / "data").with_suffix(".log").read_text().splitlines()
    assert len(log) == 1 and log[0].endswith(f"checked={len(paths)} cached=0")


def test_touched_image_alone_is_checked_again_and_a_damaged_one_reported(tmp_path, opened):
    paths = _tree(tmp_path / "data")
    cfg = _cfg(tmp_path / "data", tmp_path / "cache", "data.on_error=skip")
    read_records(cfg)
    opened.clear()
    st = paths[4].stat()
    os.utime(paths[4], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    records, problems = read_records(cfg)
    assert opened == [str(paths[4])] and len(records) == len(paths) and not problems.items
    opened.clear()
    paths[2].write_bytes(paths[2].read_bytes()[:-20])  # truncated: other size, other verdict
    records, problems = read_records(cfg)
    assert opened == [str(paths[2])]
    assert problems.items == [(str(paths[2]), f"truncated image file {paths[2]} (no PNG end marker)")]
    assert str(paths[2]) not in set(records["path"])
    opened.clear()
    _, again = read_records(cfg)  # the bad verdict is remembered too
    assert opened == [] and again.items == problems.items


def test_deleted_image_is_reported_missing_not_taken_from_the_cache(tmp_path, opened):
    paths = _tree(tmp_path / "data")
    cfg = _cfg(tmp_path / "data", tmp_path / "cache", "data.on_error=skip")
    read_records(cfg)
    listed = read_records(cfg)[0]
    paths[0].unlink()
    # The folder reader no longer lists it; a file gone between listing and check is reported missing.
    found = checked.image_problems(listed["path"].tolist(), tmp_path / "data", "full", tmp_path / "cache")
    assert found[listed["path"].tolist().index(str(paths[0]))] == f"missing image file {paths[0]}"
    assert sum(f is not None for f in found) == 1


def test_damaged_or_unfinished_cache_table_is_not_taken_as_complete(tmp_path, opened):
    paths = _tree(tmp_path / "data")
    cfg = _cfg(tmp_path / "data", tmp_path / "cache")
    read_records(cfg)
    table = checked.table_path(tmp_path / "cache", tmp_path / "data")
    table.write_bytes(table.read_bytes()[: table.stat().st_size // 2])  # a write cut short
    opened.clear()
    read_records(cfg)
    assert sorted(opened) == sorted(map(str, paths))
    # A killed write leaves only its temporary file: never read, and the table it would replace stays intact.
    (table.parent / f".{table.name}.tmp-host-1-abcd").write_bytes(b"PAR1 cut")
    opened.clear()
    read_records(cfg)
    assert opened == []


def test_killed_write_leaves_the_previous_table(tmp_path, monkeypatch):
    _tree(tmp_path / "data")
    table = checked.table_path(tmp_path / "cache", tmp_path / "data")
    read_records(_cfg(tmp_path / "data", tmp_path / "cache"))
    before = table.read_bytes()

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(checked.pq, "write_table", killed)
    new = tmp_path / "data" / "happy" / "new.png"
    write_png(new, np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(KeyboardInterrupt):
        read_records(_cfg(tmp_path / "data", tmp_path / "cache"))
    assert table.read_bytes() == before
    assert [p.name for p in table.parent.iterdir() if p.name.startswith(".")] == []


def test_stat_and_off_modes(tmp_path, opened):
    paths = _tree(tmp_path / "data")
    paths[1].write_bytes(b"")
    paths[2].write_bytes(b"not an image")
    records, problems = read_records(_cfg(tmp_path / "data", tmp_path / "cache", "data.check=stat",
                                          "data.on_error=skip"))
    assert opened == [] and problems.items == [(str(paths[1]), f"empty image file {paths[1]}")]
    assert len(records) == len(paths) - 1
    records, problems = read_records(_cfg(tmp_path / "data", tmp_path / "cache", "data.check=off"))
    assert opened == [] and not problems.items and len(records) == len(paths)
    assert not (tmp_path / "cache" / "checks").exists()
    with pytest.raises(ConfigError, match="data.check"):
        _cfg(tmp_path / "data", tmp_path / "cache", "data.check=header")
