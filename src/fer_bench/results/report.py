"""``fer-bench report``: ``results/leaderboard.csv`` and the run directories → one markdown report (and W&B).

Sections: the leaderboard summary (mean ± std over seeds, provenance line), per-class test accuracy, cross-domain
accuracy (``xdom/<set>/acc`` columns), confusion matrices summed over seeds, continual accuracy matrices averaged
over class orders, the domain matrices ``results/xdom_*.png``, paired comparisons, ranks with a critical-difference
diagram and (``group_by=<column>``) per-group results from the kept predictions (``bench.report_statistics``),
and links to every PNG the runs wrote in
``plots/``. Whatever a run lacks (no per-class report, no continual matrix, a deleted run directory) is left out
and listed, never an error. Groups are the leaderboard's
(suite, run name, data set); tables and pictures use the val-selected (``best``) checkpoint, or ``final`` for
methods without one (continual).
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from fer_bench.results import leaderboard, prediction_sets, report_statistics
from fer_bench.results.plots import accuracy_matrix_png, confusion_matrix_png, heatmap_png

GROUP = ["protocol", "suite", "name", "data"]
# the checkpoint kind a group's tables and pictures use (faithful runs: the test-selected best.ckpt)
SELECTED = ("best", "final", "best_test_epoch")
REPORT_OF = {"best_test_epoch": "best"}  # ckpt kind -> its test_<kind>.json


@dataclass
class Report:
    markdown: str
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    images: dict[str, Path] = field(default_factory=dict)


def _label(suite: str, name: str, data: str) -> str:
    return f"{suite + '/' if suite else ''}{name} on {data}"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")


def _run_dirs(rows: pd.DataFrame, runs_dir: Path) -> tuple[list[Path], list[str]]:
    """Each row's run directory (its ``run_dir`` column, else ``<runs>/<run_id>``); ids not found are returned apart."""
    found, missing = [], []
    for _, row in rows.drop_duplicates("run_id").iterrows():
        candidates = [Path(str(row["run_dir"]))] if isinstance(row.get("run_dir"), str) else []
        candidates.append(runs_dir / str(row["run_id"]))
        hit = next((c for c in candidates if c.is_dir()), None)
        (found.append(hit) if hit else missing.append(str(row["run_id"])))
    return found, missing


def _read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _selected(group: pd.DataFrame) -> pd.DataFrame:
    for kind in SELECTED:
        if (group["ckpt"] == kind).any():
            return group[group["ckpt"] == kind]
    return group.iloc[0:0]


def _link(path: Path, out: Path) -> str:
    return os.path.relpath(path, out.parent)


def build_report(results_dir: Path, runs_dir: Path, out: Path, group_by: str | None = None) -> Report:
    table = prediction_sets.named_table(results_dir)
    if table.empty:
        raise FileNotFoundError(f"{results_dir / 'leaderboard.csv'} has no rows: run fer-bench bench first")
    table = leaderboard.with_protocol(table)
    plots_dir = out.parent / f"{out.stem}_plots"
    report = Report("", {"leaderboard": leaderboard.summary(table)})
    per_class, domains, sections, run_links, missing = {}, {}, {"confusion": [], "acc_matrix": []}, [], []
    for keys, group in table.groupby(GROUP, sort=True):
        label = _label(*keys[1:]) + (" (faithful)" if keys[0] == "faithful" else "")
        chosen = _selected(group)
        dirs, lost = _run_dirs(chosen, runs_dir)
        missing += lost
        xdom = [c for c in chosen.columns if c.startswith("xdom/") and chosen[c].notna().any()]
        if xdom:
            domains[label] = {c.split("/")[1]: chosen[c].mean() for c in xdom}
        kind = chosen["ckpt"].iloc[0] if len(chosen) else ""
        tests = [t for d in dirs if (t := _read_json(d / f"test_{REPORT_OF.get(kind, kind)}.json"))]
        if tests:
            per_class[label] = pd.DataFrame([t["per_class_acc"] for t in tests]).mean()
            names = tests[0]["class_names"]
            if all(t["class_names"] == names for t in tests):
                cm = np.sum([t["confusion_matrix"] for t in tests], axis=0)
                png = confusion_matrix_png(cm.tolist(), names, plots_dir / f"{_slug(label)}-confusion.png",
                                           f"{label}: {len(tests)} seed(s), summed")
                report.images[f"confusion/{label}"] = png
                sections["confusion"].append(f"**{label}** ({len(tests)} seed(s))\n\n![{label}]({_link(png, out)})")
        matrices = [m["acc_matrix"] for d in dirs if (m := _read_json(d / "metrics.json")) and "acc_matrix" in m]
        if matrices and all(len(m) == len(matrices[0]) for m in matrices):
            steps = len(matrices[0])
            mean = [np.mean([m[i] for m in matrices], axis=0).tolist() for i in range(steps)]
            png = accuracy_matrix_png(mean, [f"task {j}" for j in range(steps)],
                                      plots_dir / f"{_slug(label)}-acc_matrix.png",
                                      f"{label}: R over {len(matrices)} class order(s)")
            report.images[f"acc_matrix/{label}"] = png
            sections["acc_matrix"].append(f"**{label}** ({len(matrices)} order(s))\n\n![{label}]({_link(png, out)})")
        for d in dirs:
            pngs = sorted((d / "plots").glob("*.png"))
            if pngs:
                run_links.append(f"- {label} · `{d.name}`: "
                                 + " · ".join(f"[{p.stem}]({_link(p, out)})" for p in pngs))
    parts = [f"# fer-bench report\n\n{time.strftime('%Y-%m-%d %H:%M')} from `{results_dir / 'leaderboard.csv'}` "
             f"({len(table)} rows, {table['run_id'].nunique()} runs). Tables and pictures use the val-selected "
             "checkpoint (`best`; `final` for scenario runs such as continual; `best_test_epoch` for faithful runs, "
             "marked).\n",
             "## Leaderboard (mean ± std over seeds)\n",
             *leaderboard.protocol_sections(report.tables["leaderboard"], "###"),
             leaderboard.init_footnotes(table), ""]
    for key, title, values in (("per_class_acc", "Per-class test accuracy (mean over seeds)", per_class),
                               ("cross_domain_acc", "Cross-domain test accuracy (mean over seeds)", domains)):
        if values:
            frame = pd.DataFrame(values).T
            report.tables[key] = frame.rename_axis("run").reset_index()
            png = heatmap_png(frame, plots_dir / f"{key}.png", title, "class" if key == "per_class_acc" else
                              "test set", "run")
            report.images[key] = png
            shown = frame.astype(object).where(frame.notna(), None)  # tabulate writes missingval for None only
            parts += [f"## {title}\n", shown.to_markdown(floatfmt=".3f", missingval="–"), "",
                      f"![{key}]({_link(png, out)})", ""]
    for key, title in (("confusion", "Confusion matrices (rows: true class; summed over seeds)"),
                       ("acc_matrix", "Accuracy matrices R of scenario runs (mean over class orders)")):
        if sections[key]:
            parts += [f"## {title}\n", "\n\n".join(sections[key]), ""]
    domain_pngs = sorted(Path(results_dir).glob("xdom_*.png"))  # bench.cross_domain: train set x test set
    for png in domain_pngs:
        report.images[f"domain_matrix/{png.stem}"] = png
    if domain_pngs:
        parts += ["## Domain matrices (rows: training set, columns: test set)\n",
                  "\n\n".join(f"![{p.stem}]({_link(p, out)})" for p in domain_pngs), ""]
    statistics = report_statistics.build(table, runs_dir, Path(results_dir), out, _selected, group_by)
    parts += statistics.parts
    report.tables |= statistics.tables
    report.images |= statistics.images
    if statistics.notes:
        parts += ["### Left out of the statistics\n", "\n".join(f"- {n}" for n in statistics.notes), ""]
    if run_links:
        parts += ["## Plots of each run\n", "\n".join(run_links), ""]
    if missing:
        parts += ["## Not found\n", f"Run directories of {', '.join(sorted(set(missing)))} were not found "
                  f"(under their recorded path or {runs_dir}); their rows are in the leaderboard only.", ""]
    report.markdown = "\n".join(parts)
    return report


def write_report(results_dir: Path, runs_dir: Path, out: Path, group_by: str | None = None) -> Report:
    report = build_report(results_dir, runs_dir, out, group_by)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report.markdown)
    return report


def log_to_wandb(report: Report, project: str, save_dir: Path) -> None:
    """The report's tables and pictures as one W&B run (offline unless WANDB_MODE says otherwise)."""
    import wandb

    mode = None if "WANDB_MODE" in os.environ else "offline"
    run = wandb.init(project=project, job_type="report", name=f"report-{time.strftime('%Y%m%d-%H%M%S')}",
                     mode=mode, dir=str(save_dir))
    try:
        run.log({**{f"report/{k}": wandb.Table(dataframe=v.astype(str)) for k, v in report.tables.items()},
                 **{f"report/{k}": wandb.Image(str(p)) for k, p in report.images.items()}})
    finally:
        wandb.finish()
