"""Benchmark suites: file validation with errors naming file and key, a tiny suite end to end with provenance
columns, and ``fer-bench report`` rendered from its results."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml
from test_ddp import TINY

from fer_bench import cli
from fer_bench.config import ConfigError, project_root
from fer_bench.protocols.suite import suite_configs
from fer_bench.results import provenance, report

SUITES = sorted((project_root() / "experiments" / "suites").glob("*.yaml"))


@pytest.mark.parametrize("path", SUITES, ids=lambda p: p.stem)
def test_suite_files_build_every_config(path):
    configs = suite_configs(path.stem, ["profile=cpu"])
    assert configs and {c.suite for c in configs} == {path.stem}
    assert len({tuple(c.seeds) for c in configs}) == 1 and len({c.data.name for c in configs}) == 1


def _suite(tmp_path: Path, **spec) -> str:
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump({"description": "test", "methods": ["baseline"], **spec}))
    return str(path)


@pytest.mark.parametrize(("spec", "message"), [
    ({"methodz": ["qcs"]}, "'methodz' is not a suite key"),
    ({"methods": ["baselin"]}, "'methods' names unknown method 'baselin'"),
    ({"seeds": "0"}, "'seeds' must be a non-empty list of integers"),
    ({"overrides": ["optim.lr"]}, "'overrides' holds"),
    ({"method_overrides": {"qcs": "optim.lr=1"}}, "'method_overrides.qcs' must be a list"),
    ({"runs": [{"name": "baseline", "method": "baseline"}]}, "run names must be unique"),
    ({"runs": [{"name": "x", "methd": "baseline"}]}, "'runs\\[0\\]' must be a mapping"),
    ({"description": None}, "'description' is required"),
])
def test_bad_suite_files_name_the_file_and_key(tmp_path, spec, message):
    with pytest.raises(ConfigError, match=message) as err:
        suite_configs(_suite(tmp_path, **spec), [])
    assert "mine.yaml" in str(err.value)


def test_bad_override_names_the_suite_and_run(tmp_path):
    path = _suite(tmp_path, runs=[{"name": "fast", "method": "baseline", "overrides": ["optim.lrr=1"]}])
    with pytest.raises(ConfigError, match=r"mine.yaml, run 'fast': unknown config key 'optim.lrr'"):
        suite_configs(path, [])
    with pytest.raises(ConfigError, match="drop method="):
        suite_configs(path, ["method=qcs"])


def test_merge_order_file_then_method_then_run_then_command_line(tmp_path):
    path = _suite(tmp_path, methods=["baseline", "qcs"], seeds=[3, 4], overrides=["optim.lr=0.1"],
                  method_overrides={"qcs": ["optim.lr=0.2"]},
                  runs=[{"name": "qcs_slow", "method": "qcs", "overrides": ["optim.lr=0.3"]}])
    configs = {c.run_name or c.method.name: c for c in suite_configs(path, ["profile=cpu", "seeds=[7]"])}
    assert {k: c.optim.lr for k, c in configs.items()} == {"baseline": 0.1, "qcs": 0.2, "qcs_slow": 0.3}
    assert {tuple(c.seeds) for c in configs.values()} == {(7,)} and configs["qcs"].profile == "cpu"


@pytest.fixture(scope="module")
def tiny_suite(tmp_path_factory):
    """Two runs of a tiny suite (baseline and a named variant), one epoch each, through the CLI."""
    out = tmp_path_factory.mktemp("suite")
    path = out / "tiny.yaml"
    path.write_text(yaml.safe_dump({"description": "tiny", "methods": ["baseline"], "seeds": [0],
                                    "runs": [{"name": "smooth", "method": "baseline",
                                              "overrides": ["method.label_smoothing=0.1"]}]}))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WANDB_MODE", "disabled")
        mp.delenv("FER_BENCH_SESSION", raising=False)
        assert cli.main(["bench", f"suite={path}", *TINY, "data.image_size=48", "trainer.max_epochs=1",
                         f"runs_dir={out / 'runs'}", f"results_dir={out / 'results'}"]) == 0
    return out


def test_suite_rows_carry_suite_name_and_provenance(tiny_suite):
    board = pd.read_csv(tiny_suite / "results" / "leaderboard.csv")
    assert sorted(zip(board["name"], board["ckpt"], strict=True)) == [
        ("baseline", "best"), ("baseline", "last"), ("smooth", "best"), ("smooth", "last")]
    assert set(board["suite"]) == {"tiny"} and set(board["method"]) == {"baseline"}
    assert set(board["data_card"]) == {"synthetic"} and board["image_variant"].str.startswith("synth-").all()
    assert board["splits_hash"].nunique() == 1, "same data and splits for every run of a suite"
    assert board["config_hash"].nunique() == 2 and board["code_version"].str.startswith("0.").all()
    run_dir = Path(board["run_dir"].iloc[0])
    assert board["splits_hash"].iloc[0] == provenance.splits_hash(run_dir / "splits")
    md = (tiny_suite / "results" / "leaderboard.md").read_text()
    assert re.search(r"\| tiny +\| smooth +\| synthetic +\| best", md) and "splits " + board["splits_hash"][0] in md


def test_report_renders_tables_and_pictures(tiny_suite):
    out = tiny_suite / "report" / "report.md"
    written = report.write_report(tiny_suite / "results", tiny_suite / "runs", out)
    text = out.read_text()
    for heading in ("## Leaderboard", "## Per-class test accuracy", "## Confusion matrices", "## Plots of each run"):
        assert heading in text
    assert "tiny/smooth on synthetic" in text and "happy" in text
    links = re.findall(r"\]\(([^)]+\.png)\)", text)
    assert len(links) == 1 + 2 + 4 and all((out.parent / link).is_file() for link in links)
    # the two runs kept their predictions on the same test split: the report compares them pairwise
    assert set(written.tables) == {"leaderboard", "per_class_acc", "paired/tiny/synthetic"}
    assert len(written.images) == 3
    report.log_to_wandb(written, "fer-bench-test", out.parent)  # WANDB_MODE=disabled: every call runs, nothing is sent


def test_splits_hash_ignores_where_the_images_live(tmp_path):
    for root in ("a/cache", "b/elsewhere/data"):
        folder = tmp_path / root / "splits"
        folder.mkdir(parents=True)
        for split, names in (("train", ["1", "2"]), ("val", ["3"]), ("test", ["4"])):
            (folder / f"{split}.txt").write_text("".join(f"/{root}/img/{n}.png\n" for n in names))
    hashes = {provenance.splits_hash(tmp_path / root / "splits") for root in ("a/cache", "b/elsewhere/data")}
    assert len(hashes) == 1
    (tmp_path / "a/cache/splits/val.txt").write_text("/a/cache/img/4.png\n")
    assert provenance.splits_hash(tmp_path / "a/cache/splits") not in hashes


def test_report_without_results_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="run fer-bench bench first"):
        report.build_report(tmp_path, tmp_path, tmp_path / "r.md")


def test_config_hash_is_the_recipe_without_seed_and_outputs():
    from fer_bench.config import build_config

    base = provenance.config_hash(build_config(["seed=0", "runs_dir=a"]))
    assert provenance.config_hash(build_config(["seed=5", "runs_dir=b", "suite=x"])) == base
    assert provenance.config_hash(build_config(["optim.lr=0.5"])) != base
    assert json.dumps(provenance.code_version())  # a plain string
