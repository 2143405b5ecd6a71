"""Paired comparisons of kept test predictions (bench.compare, fer-bench compare) and ranks over domains
(bench.ranks): statistics checked against independent references (statsmodels, scikit-learn, hand computations).

Prediction files follow the agreed format: ``<run>/predictions_<ckpt>.parquet`` with ``id`` (path relative to the
split lists' common folder), ``target``, ``pred``, ``prob_<k>`` and optional ``domain``."""

import os

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests

from fer_bench import cli
from fer_bench.metrics import intervals
from fer_bench.results import compare, prediction_sets
from fer_bench.results.provenance import hash_of_test_split
from fer_bench.results.report import build_report

C = 7


def noisy(target: np.ndarray, accuracy: float, rng: np.random.Generator) -> np.ndarray:
    """Predictions right on about ``accuracy`` of the images, a random other class elsewhere."""
    wrong = (target + rng.integers(1, C, len(target))) % C
    return np.where(rng.random(len(target)) < accuracy, target, wrong)


def write_run(runs: os.PathLike, run_id: str, ids: list[str], target, pred, ckpt: str = "best",
              domain=None, root: str = "/data/faces") -> os.PathLike:
    """A run directory with ``splits/`` (absolute paths, as runs write them) and its prediction file."""
    run = runs / run_id
    (run / "splits").mkdir(parents=True)
    (run / "splits" / "test.txt").write_text("".join(f"{root}/{i}\n" for i in ids))
    (run / "splits" / "train.txt").write_text(f"{root}/images/train/000000.png\n")
    (run / "config.yaml").write_text("method:\n  name: baseline\n")
    probs = np.eye(C)[np.asarray(pred)] * 0.7 + 0.3 / C
    frame = pd.DataFrame({"id": ids, "target": target, "pred": pred,
                          **{f"prob_{k}": probs[:, k] for k in range(C)}})
    if domain is not None:
        frame["domain"] = domain
    frame.to_parquet(run / f"predictions_{ckpt}.parquet")
    return run


def write_leaderboard(results: os.PathLike, rows: list[dict]) -> None:
    results.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(results / "leaderboard.csv", index=False)


def row(run, name: str, seed: int = 0, suite: str = "", data: str = "synthetic", acc: float = 0.5) -> dict:
    return {"run_id": run.name, "suite": suite, "name": name, "method": name, "data": data, "seed": seed,
            "ckpt": "best", "selection": "val/acc", "test/acc": acc, "test/uar": acc, "test/f1": acc,
            "run_dir": str(run)}


IDS = [f"images/test/{i:06d}.png" for i in range(400)]


def test_mcnemar_p_equals_statsmodels_exact_test_on_a_known_table():
    # 2x2 table: both right 50, only A right 12, only B right 3, both wrong 35.
    a = np.array([True] * 50 + [True] * 12 + [False] * 3 + [False] * 35)
    b = np.array([True] * 50 + [False] * 12 + [True] * 3 + [False] * 35)
    only_a, only_b, p = compare.mcnemar_exact(a, b)
    assert (only_a, only_b) == (12, 3)
    assert p == pytest.approx(mcnemar([[50, 12], [3, 35]], exact=True).pvalue, rel=1e-12)
    assert p == pytest.approx(0.03515625, rel=1e-9)  # 2 * P(Binomial(15, 1/2) <= 3)


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_resampled_metrics_equal_scikit_learn_on_the_drawn_images():
    rng = np.random.default_rng(1)
    target = rng.integers(0, C, 300)
    target[target == 6] = 5  # a class nobody has: uar and f1 must leave it out like scikit-learn
    pred = noisy(target, 0.6, rng)
    idx = intervals.draw_indices(len(target), 5, seed=3)
    got = compare.seed_mean(target[idx], pred[None, idx], C)
    for r in range(5):
        drawn = idx[r]
        assert got["acc"][r] == pytest.approx(accuracy_score(target[drawn], pred[drawn]), abs=1e-6)
        assert got["uar"][r] == pytest.approx(balanced_accuracy_score(target[drawn], pred[drawn]), abs=1e-6)
        assert got["f1"][r] == pytest.approx(f1_score(target[drawn], pred[drawn], average="macro"), abs=1e-6)


def test_identical_prediction_files_give_zero_difference_and_p_one(tmp_path, capsys):
    rng = np.random.default_rng(0)
    target = rng.integers(0, C, len(IDS))
    pred = noisy(target, 0.7, rng)
    a = write_run(tmp_path / "runs", "a-s0", IDS, target, pred)
    b = write_run(tmp_path / "runs", "b-s0", IDS, target, pred)
    out = tmp_path / "results" / "cmp"
    assert cli.main(["compare", str(a), str(b), f"results={tmp_path / 'results'}", f"out={out}"]) == 0
    table = pd.read_csv(out.with_suffix(".csv"))
    assert set(table["metric"]) == {"acc", "uar", "f1"}
    assert (table["diff"] == 0).all() and (table["ci_lo"] == 0).all() and (table["ci_hi"] == 0).all()
    assert (table["p_bootstrap"] == 1).all() and (table["p_holm"] == 1).all()
    acc = table[table["metric"] == "acc"].iloc[0]
    assert acc["p_mcnemar"] == 1 and acc["mcnemar_a_only"] == 0 and acc["mcnemar_b_only"] == 0
    assert "no detectable difference" in acc["verdict"]
    printed = capsys.readouterr().out
    assert "no detectable difference in acc" in printed and out.with_suffix(".md").is_file()


def test_a_real_gap_is_found_and_the_verdict_reads_plainly(tmp_path):
    rng = np.random.default_rng(2)
    target = rng.integers(0, C, 3000)
    better, worse = noisy(target, 0.90, rng), noisy(target, 0.85, rng)
    ids = [f"images/test/{i:06d}.png" for i in range(3000)]
    a = prediction_sets.side("qcs", [write_run(tmp_path, "q", ids, target, better)], "best", [0])
    b = prediction_sets.side("baseline", [write_run(tmp_path, "b", ids, target, worse)], "best", [0])
    table = compare.compare([a, b], resamples=2000, seed=0)
    acc = table[table["metric"] == "acc"].iloc[0]
    expected = np.mean(better == target) - np.mean(worse == target)
    assert acc["diff"] == pytest.approx(expected)
    assert acc["ci_lo"] < expected < acc["ci_hi"] and acc["ci_lo"] > 0
    only_a = int(np.sum((better == target) & (worse != target)))
    only_b = int(np.sum((better != target) & (worse == target)))
    assert acc["p_mcnemar"] == pytest.approx(stats.binomtest(only_a, only_a + only_b, 0.5).pvalue)
    assert acc["verdict"].startswith(f"qcs > baseline: +{100 * expected:.1f} acc, 95 % CI +")
    # The same seed gives the same interval; another seed another one.
    again = compare.compare([a, b], resamples=2000, seed=0)
    assert again["ci_lo"].tolist() == table["ci_lo"].tolist()
    # Connor (1987): the detectable difference put back into the sample-size formula gives n.
    psi, delta = (only_a + only_b) / 3000, acc["mde_acc"]
    z_a, z_b = stats.norm.ppf(0.975), stats.norm.ppf(0.8)
    assert (z_a * np.sqrt(psi) + z_b * np.sqrt(psi - delta**2)) ** 2 / delta**2 == pytest.approx(3000, rel=1e-6)


def test_holm_adjustment_equals_statsmodels():
    p = pd.Series([0.01, 0.04, np.nan, 0.03, 0.2, 0.0001])
    got = compare.holm(p)
    assert np.isnan(got[2])
    assert got.dropna().to_numpy() == pytest.approx(multipletests(p.dropna().to_numpy(), method="holm")[1])


def test_three_groups_are_holm_corrected_and_seeds_get_welch(tmp_path):
    rng = np.random.default_rng(4)
    target = rng.integers(0, C, len(IDS))
    runs, rows = tmp_path / "runs", []
    for name, accuracy in (("qcs", 0.8), ("baseline", 0.75), ("clip", 0.6)):
        for seed in (0, 1):
            run = write_run(runs, f"{name}-s{seed}", IDS, target, noisy(target, accuracy, rng))
            rows.append(row(run, name, seed))
    write_leaderboard(tmp_path / "results", rows)
    out = tmp_path / "results" / "three"
    assert cli.main(["compare", "qcs", "baseline", "clip@synthetic", f"results={tmp_path / 'results'}",
                     f"runs={runs}", "bootstrap=500", f"out={out}"]) == 0
    table = pd.read_csv(out.with_suffix(".csv"))
    acc = table[table["metric"] == "acc"].reset_index(drop=True)
    assert len(acc) == 3 and (acc["seeds_a"] == 2).all()
    assert acc["p_holm"].to_numpy() == pytest.approx(multipletests(acc["p"].to_numpy(), method="holm")[1])
    assert acc["p_seeds_welch"].notna().all()
    pair = acc.iloc[0]
    values = {name: [np.mean(pd.read_parquet(runs / f"{name}-s{s}" / "predictions_best.parquet").eval(
        "target == pred")) for s in (0, 1)] for name in ("qcs", "baseline")}
    assert pair["p_seeds_welch"] == pytest.approx(stats.ttest_ind(values["qcs"], values["baseline"],
                                                                  equal_var=False).pvalue)


def test_mismatched_test_splits_are_refused_naming_both_hashes(tmp_path, capsys):
    rng = np.random.default_rng(5)
    target = rng.integers(0, C, len(IDS))
    a = write_run(tmp_path / "runs", "a", IDS, target, target)
    b = write_run(tmp_path / "runs", "b", IDS[:-1] + ["images/test/other.png"], target, target)
    assert cli.main(["compare", str(a), str(b), f"results={tmp_path / 'results'}"]) == 2
    err = capsys.readouterr().err
    hash_a, hash_b = hash_of_test_split(a / "splits"), hash_of_test_split(b / "splits")
    assert hash_a != hash_b and hash_a in err and hash_b in err and "different test splits" in err


def test_an_unknown_selector_lists_the_groups(tmp_path, capsys):
    rng = np.random.default_rng(6)
    target = rng.integers(0, C, len(IDS))
    write_leaderboard(tmp_path / "results", [row(write_run(tmp_path / "runs", "q", IDS, target, target), "qcs")])
    assert cli.main(["compare", "qcs", "nope", f"results={tmp_path / 'results'}"]) == 2
    assert "'nope' matches no leaderboard group" in capsys.readouterr().err


def _suite_over_domains(tmp_path, domains: list[str]) -> os.PathLike:
    """Three methods of suite 'gen' on one synthetic test set whose images come from ``domains``."""
    rng = np.random.default_rng(7)
    ids = [f"images/test/{i:06d}.png" for i in range(100 * len(domains))]
    domain = np.repeat(domains, 100)
    target = rng.integers(0, C, len(ids))
    rows = []
    for name, base in (("qcs", 0.85), ("baseline", 0.7), ("clip", 0.5)):
        accuracy = np.repeat([base - 0.05 * k for k in range(len(domains))], 100)
        pred = np.where(rng.random(len(ids)) < accuracy, target, (target + 1) % C)
        run = write_run(tmp_path / "runs", f"{name}-s0", ids, target, pred, domain=domain)
        rows.append(row(run, name, suite="gen", acc=float(np.mean(pred == target))))
    write_leaderboard(tmp_path / "results", rows)
    return tmp_path / "results"


def test_report_draws_a_critical_difference_diagram_over_three_synthetic_domains(tmp_path):
    results = _suite_over_domains(tmp_path, ["lab", "wild", "film", "occluded"])
    report = build_report(results, tmp_path / "runs", results / "report.md")
    png = report.images["cd/suite gen"]
    assert png == results / "cd_gen.png" and png.stat().st_size > 1000
    assert "Friedman test over 4 data sets/domains and 3 methods" in report.markdown
    assert "](cd_gen.png)" in report.markdown
    assert (results / "paired_gen_synthetic.csv").is_file() and "qcs > clip" in report.markdown


def test_report_says_so_when_there_are_too_few_domains(tmp_path):
    results = _suite_over_domains(tmp_path, ["lab", "wild"])
    report = build_report(results, tmp_path / "runs", results / "report.md")
    assert not any(k.startswith("cd/") for k in report.images) and not (results / "cd_gen.png").exists()
    assert "3 method(s) over 2 data set(s)/domain(s)" in report.markdown
    assert "no critical-difference diagram is drawn" in report.markdown


@pytest.mark.slow
def test_a_trained_model_beats_one_trained_for_one_step_on_synthetic_faces(tmp_path, capsys):
    """End to end with the real predictions writer: bench → compare (verdict) → report group_by=skin_tone."""
    from fer_bench.config import build_config
    from fer_bench.engine import runner

    tiny = ["profile=cpu", "data.synth.subjects=30", "data.synth.per_subject=3", "data.synth.size=32",
            "data.synth.difficulty=easy", "data.image_size=32", "data.num_workers=0", "data.batch_size=16",
            "eval.bootstrap=200", "trainer.progress_bar=false", "logger.wandb=false",
            f"runs_dir={tmp_path / 'runs'}", f"results_dir={tmp_path / 'results'}"]
    for name, steps in (("trained", ["trainer.max_epochs=6"]),
                        ("one_step", ["trainer.max_epochs=1", "trainer.limit_train_batches=1"])):
        runner.train_one(build_config([*tiny, *steps, f"run_name={name}"]))
    results = tmp_path / "results"
    out = results / "trained_vs_one_step"
    assert cli.main(["compare", "trained", "one_step", f"results={results}", f"runs={tmp_path / 'runs'}",
                     f"out={out}"]) == 0
    acc = pd.read_csv(out.with_suffix(".csv")).set_index("metric").loc["acc"]
    board = pd.read_csv(results / "leaderboard.csv").set_index(["name", "ckpt"])
    expected = board.loc[("trained", "best"), "test/acc"] - board.loc[("one_step", "best"), "test/acc"]
    assert acc["diff"] == pytest.approx(expected, abs=1e-6)  # the kept predictions give the leaderboard's values
    assert acc["p_mcnemar"] < 0.01 and acc["ci_lo"] > 0
    assert "trained > one_step: +" in capsys.readouterr().out
    # the writer's skin-tone column groups the report's per-group results
    report = build_report(results, tmp_path / "runs", results / "report.md", group_by="skin_tone")
    assert "**trained on synthetic** by `skin_tone`" in report.markdown and "Statistical parity" in report.markdown


def test_compare_group_by_gives_per_group_tables_and_differences(tmp_path, capsys):
    results = _suite_over_domains(tmp_path, ["lab", "wild", "film"])
    out = results / "by_domain"
    assert cli.main(["compare", "qcs", "clip", "group_by=domain", "bootstrap=300", f"results={results}",
                     f"runs={tmp_path / 'runs'}", f"out={out}"]) == 0
    table = pd.read_csv(out.with_suffix(".csv"))
    within = table[table["domain"] != "(all)"].set_index("domain")
    assert sorted(within.index) == ["film", "lab", "wild"] and (within["metric"] == "acc").all()
    frames = {n: pd.read_parquet(tmp_path / "runs" / f"{n}-s0" / "predictions_best.parquet") for n in ("qcs", "clip")}
    for domain, got in within.iterrows():
        acc = {n: f[f["domain"] == domain].eval("target == pred").mean() for n, f in frames.items()}
        assert got["diff"] == pytest.approx(acc["qcs"] - acc["clip"])
    text = capsys.readouterr().out
    assert "**qcs** by `domain`" in text and "- domain = wild: qcs > clip: +" in text


def test_methods_tied_on_every_domain_get_a_note_not_a_nan_friedman_test(tmp_path):
    from fer_bench.results import ranks

    tied = pd.DataFrame({"qcs": [0.5, 0.6, 0.7], "baseline": [0.5, 0.6, 0.7], "clip": [0.5, 0.6, 0.7]},
                        index=["lab", "wild", "film"])
    result = ranks.rank_test(tied, tmp_path / "cd.png", "suite gen")
    assert result.ranks is None and not (tmp_path / "cd.png").exists()
    assert "tie on each of the 3 data sets/domains" in result.markdown()


def test_a_cross_domain_target_file_is_compared_through_the_rows_of_its_checkpoint(tmp_path):
    rng = np.random.default_rng(8)
    target = rng.integers(0, C, len(IDS))
    runs, rows = tmp_path / "runs", []
    for name, accuracy in (("clip", 0.9), ("baseline", 0.5)):
        run = write_run(runs, f"{name}-s0", IDS, target, noisy(target, accuracy, rng), ckpt="best_xdom_wild")
        rows.append(row(run, name))
    write_leaderboard(tmp_path / "results", rows)
    out = tmp_path / "results" / "xdom"
    assert cli.main(["compare", "clip", "baseline", "ckpt=best_xdom_wild", f"results={tmp_path / 'results'}",
                     f"runs={runs}", "bootstrap=200", f"out={out}"]) == 0
    acc = pd.read_csv(out.with_suffix(".csv")).set_index("metric").loc["acc"]
    frames = {n: pd.read_parquet(runs / f"{n}-s0" / "predictions_best_xdom_wild.parquet") for n in ("clip", "baseline")}
    assert acc["diff"] == pytest.approx(frames["clip"].eval("target == pred").mean()
                                        - frames["baseline"].eval("target == pred").mean())


def test_sides_whose_files_name_different_classes_are_refused(tmp_path):
    from fer_bench.methods import predictions as P

    target = np.arange(len(IDS)) % C
    runs = [write_run(tmp_path / "runs", name, IDS, target, target) for name in ("a", "b")]
    for run, classes in zip(runs, (labels_7 := [f"c{k}" for k in range(C)], labels_7[::-1]), strict=True):
        path = run / "predictions_best.parquet"
        P.write_predictions(pd.read_parquet(path), path, {"class_names": classes, "root": "/data/faces"})
    a, b = (prediction_sets.side(r.name, [r], "best") for r in runs)
    assert a.class_names == labels_7
    with pytest.raises(ValueError, match="a and b predict different classes"):
        compare.compare([a, b], resamples=10)
