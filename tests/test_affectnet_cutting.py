"""AffectNet's one-time face cutting (data/readers/affectnet.py): in worker processes, and resumed after a kill.
Fixture: the release-A layout of ``layouts.write_affectnet`` (AffectNet ``training.csv``/``validation.csv``)."""

from __future__ import annotations

import shutil
import socket

from fer_bench.config import build_config
from fer_bench.data import layouts
from fer_bench.data.cache import COMPLETE_MARKER, process_alive
from fer_bench.data.readers import common, read_records

ROWS = [{"file": f, "expression": e, "valence": 0.1, "arousal": -0.2, "box": box}
        for f, e, box in [("training", 1, (10, 8, 40, 44)), ("training", 2, (4, 4, 40, 40)),
                          ("training", 4, (6, 2, 30, 30)), ("validation", 0, (4, 4, 40, 40)),
                          ("validation", 6, (8, 8, 36, 36))]]


def _read(root, cache, *extra):
    cfg = build_config(["data=affectnet", f"data.root={root}", f"data.cache_dir={cache}", "data.on_error=skip",
                        *extra]).data
    return read_records(cfg)


def test_cutting_in_worker_processes_gives_the_same_records_and_crops(tmp_path):
    layouts.write_affectnet(tmp_path / "data", ROWS)
    one, one_problems = _read(tmp_path / "data", tmp_path / "c0", "data.num_workers=0")
    two, two_problems = _read(tmp_path / "data", tmp_path / "c2", "data.num_workers=2")
    assert len(one) == 5 and one_problems.items == two_problems.items == []
    relative = [lambda t, c=c: [p.split(str(c))[1] for p in t["path"]] for c in (tmp_path / "c0", tmp_path / "c2")]
    assert relative[0](one) == relative[1](two)
    assert one.drop(columns="path").equals(two.drop(columns="path"))
    for a, b in zip(one["path"], two["path"], strict=True):
        assert open(a, "rb").read() == open(b, "rb").read()


def test_killed_cutting_resumes_with_the_crops_already_cut(tmp_path, monkeypatch):
    layouts.write_affectnet(tmp_path / "data", ROWS)
    whole, problems = _read(tmp_path / "data", tmp_path / "cache")
    (final,) = [p for p in (tmp_path / "cache").iterdir() if p.name.startswith("affectnet-")]
    # What a SIGKILLed build leaves: its temporary folder (named after its dead pid) with some crops, no marker.
    dead = 1
    while process_alive(dead):
        dead += 1
    stale = final.parent / f".{final.name}.tmp-{socket.gethostname()}-{dead}-deadbeef"
    shutil.move(final, stale)
    (stale / COMPLETE_MARKER).unlink()
    cut = sorted(stale.rglob("*.png"))
    cut[0].unlink()  # the first picture's crop was not cut yet
    decoded = []
    real = common.read_rgb
    monkeypatch.setattr(common, "read_rgb", lambda path, *a: decoded.append(path) or real(path, *a))

    again, again_problems = _read(tmp_path / "data", tmp_path / "cache", "data.num_workers=0")  # counted here
    # Only the picture of the missing crop is decoded again.
    assert len(decoded) == 1 and not stale.exists()
    assert again.equals(whole) and again_problems.items == problems.items
