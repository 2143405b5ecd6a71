"""``fer-bench <verb> key=value ...`` — thin entry points that assemble objects and run them."""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path

from fer_bench.cli_args import pop_arg, verb_args
from fer_bench.config import ConfigError, build_config, dataclass_overrides
from fer_bench.console import quiet_lightning
from fer_bench.methods import load_reference, registry

USAGE = """fer-bench <verb> [key=value ...]

verbs:
  bench  method=M data=D [key=value ...]   train every seed, select on val, test best and last, add leaderboard rows
  bench  suite=NAME [key=value ...]        every run of experiments/suites/NAME.yaml (same data, splits, seeds)
  bench  resume=RUN_DIR [key=value ...]    continue a killed run from its last checkpoint, then test it; only
                                           topology values may change (trainer.devices=, trainer.num_nodes=, ...);
                                           [resume.ckpt=best|FILE] [resume.allow_recipe_change=true]
  faithful-table [out=docs/faithful.md]    write the faithful settings table from experiments/*.yaml `faithful:`
  report [results=results] [runs=runs] [out=results/report.md] [group_by=COL]
                                           markdown report: leaderboard, per-class accuracy, plots (and W&B)
  compare A B [C ...] [ckpt=best] [suite=S] [data=D] [group_by=COL] [bootstrap=2000] [seed=0] [out=STEM]
                                           paired tests of groups on the same test images (A: a run directory
                                           or [SUITE/]NAME[@DATA] of the leaderboard) -> results/compare_*.csv/md
  sweep  --local FILE.yaml [count=N] [seed=0] [out=DIR] [key=value ...]
                                           run a W&B sweep file without a server, rank the trials
  sweep  FILE.yaml [count=N] [project=P] [entity=E]
                                           register the sweep with W&B and start an agent
  inspect data=D [data.root=...] [out=DIR] [key=value ...]
                                           what a run would read: counts per split x class, subjects, dropped
                                           rows, bad items (all in DIR/problems.csv), image sizes; exit 1 if a
                                           run would stop
  train  method=M data=D [key=value ...]   train one seed (no test data touched); prints the run directory
  test   run=DIR [ckpt=best|last]          re-test a finished run on its saved test split
  predict run=DIR|weights=FILE input=IMG|DIR|CSV out=FILE.csv [ckpt=best] [batch=64] [detector=yunet.onnx]
          [margin=0.2]                     class probabilities (and the method's other outputs) per image
  export run=DIR|weights=FILE [format=onnx] [ckpt=best] [out=DIR] [atol=1e-4]
                                           the inference path as ONNX, checked against PyTorch (onnxruntime)
  perf   [methods=baseline,qcs] [backbone=resnet18] [reps=5] [steps=12] [out=results] [key=value ...]
                                           fer-bench vs a plain PyTorch loop: results/perf.csv + perf.md
  perf suite=data [sizes=10000,100000,1000000] [workers=4] [out=results]
                                           indexing and loader scale: results/perf_data.csv + perf_data.md
  synth  --out DIR [field=value ...]       write a synthetic face data set (images/<split>/*.png + labels.csv)
  synth  --sheet FILE.png                  render a contact sheet: one row per class, one column per domain
  extract run=DIR [ckpt=best|last] [out=F] [data=D key=value ...]
                                           multitask embeddings + scores of every image -> parquet
  downstream features=F.parquet task=expr|va|au|intensity|ce [key=value ...]
                                           fit a head on frozen features (train), select/tune on val, score test
  convert src=OLD.pt backbone=NAME out=NEW.pt [input_size=N] [mean=R,G,B] [std=R,G,B] --trust-pickle
                                           rebuild a pickled HSEmotion model as a state_dict + metadata (unsafe input)
  convert format=qcs src=QCS.pth labels=rafdb|ferplus|affectnet out=NEW.pt [--trust-pickle]
                                           map a released QCS/DCS checkpoint onto fer-bench's QCS network
  convert src=DDAMNet.pth backbone=ddamfn out=NEW.pt [--trust-pickle]
                                           an official DDAMNet(num_class=10) checkpoint as a ddamfn MultitaskNet
"""




def skipped_line(run_dir: Path) -> str | None:
    """The summary line for bad input skipped with ``data.on_error=skip`` (listed in ``<run>/skipped.csv``)."""
    skipped = run_dir / "skipped.csv"
    if not skipped.is_file():
        return None
    with open(skipped, newline="") as f:
        count = sum(1 for _ in csv.reader(f)) - 1  # minus the header
    return f"  skipped {count} bad input item(s) (data.on_error=skip); listed in {skipped}"


def _print_headline(run_dirs: list[Path]) -> None:
    from fer_bench.results.leaderboard import number

    for run_dir in run_dirs:
        if not (run_dir / "metrics.json").is_file():  # a continual run stopped early (method.stop_after)
            print(f"run {run_dir} unfinished; continue it with resume={run_dir}")
            continue
        metrics = json.loads((run_dir / "metrics.json").read_text())
        print(f"run {run_dir}")
        if "cl" in metrics:  # a continual scenario: one final model, CL metrics over its steps
            cl = metrics["cl"]
            print(f"  {metrics['strategy']:<20} " + "  ".join(
                f"{k.split('/')[1]} {number(cl[k])}" for k in ("cl/avg_inc_acc", "cl/final_acc", "cl/bwt",
                                                           "cl/forgetting", "cl/new_acc")))
            continue
        best, last = metrics["best"], metrics["last"]
        selected = "best_test_epoch" if "best_test_epoch" in metrics else "best (val-selected)"
        for name, m in ((selected, best), ("last", last)):
            extra = "".join(f"  {k} {m[f'test/{k}']:.4f}" for k in ("ccc_v", "ccc_a", "au_f1") if f"test/{k}" in m)
            print(f"  {name:<20} acc {m['test/acc']:.4f}  uar {m['test/uar']:.4f}  f1 {m['test/f1']:.4f}{extra}")
        if line := skipped_line(run_dir):
            print(line)


def cmd_bench(args: list[str]) -> None:
    resume, args = pop_arg(args, "resume")
    suite_name, args = pop_arg(args, "suite")
    if resume and suite_name:
        raise ConfigError("resume= continues one run: give its run directory without suite=")
    cfg = None if resume or suite_name else build_config(args)  # a bad value stops before the heavy imports
    from lightning.pytorch.utilities import rank_zero_only

    from fer_bench.engine.ddp_wait import explained_timeouts
    from fer_bench.protocols import folds, suite
    from fer_bench.protocols.benchmark import bench

    started = time.time()
    if suite_name:
        configs = suite.suite_configs(suite_name, args)
        with explained_timeouts(configs[0]):
            run_dirs = [run_dir for cfg in configs for run_dir in bench(cfg)]
        results_dir = configs[0].results_dir
    else:
        plan = None
        if resume:  # checked in full before anything in the run directory changes
            from fer_bench.engine import resume as resuming

            plan = resuming.prepare(Path(resume), args)
            resuming.record(plan)
        cfg = plan.cfg if plan else cfg
        with explained_timeouts(cfg):
            run_dirs = bench(cfg, resume=plan.run_dir if plan else None, resume_ckpt=plan.ckpt if plan else None)
        results_dir = cfg.results_dir
    if rank_zero_only.rank != 0:  # rank 0 reports; the other ranks' files may not all be there yet
        return
    _print_headline(run_dirs)
    for line in folds.summary_lines(run_dirs):
        print(line)
    print(f"leaderboard: {Path(results_dir) / 'leaderboard.md'}  ({time.time() - started:.0f} s)")


def cmd_train(args: list[str]) -> None:
    cfg = build_config(args)
    from fer_bench.engine.ddp_wait import explained_timeouts
    from fer_bench.protocols.benchmark import train

    with explained_timeouts(cfg):
        run_dir = train(cfg, test=False)
    print(f"run {run_dir}")
    if line := skipped_line(run_dir):
        print(line)


def cmd_inspect(args: list[str]) -> int:
    out, args = pop_arg(args, "out")
    cfg = build_config(args)
    from fer_bench.tools.inspect import inspect

    return inspect(cfg, Path(out) if out else Path(cfg.runs_dir) / f"inspect-{cfg.data.name}")




def cmd_test(args: list[str]) -> None:
    a = verb_args(args, "fer-bench test run=<run dir> [ckpt=best|last]", ("run",), {"ckpt": "best"})
    from fer_bench.engine import runner

    metrics = runner.test_run(Path(a["run"]), a["ckpt"])
    print(json.dumps(metrics, indent=2))


def _inference_model(a: dict[str, str], usage: str):
    """The model of ``run=`` (a run directory) or ``weights=`` (a converted file), exactly one of them."""
    from fer_bench.deploy.inference import load_run_model, load_weights_model

    if bool(a["run"]) == bool(a["weights"]):
        raise ConfigError(f"give run=<run dir> or weights=<converted file>, one of them\nusage: {usage}")
    return load_run_model(Path(a["run"]), a["ckpt"]) if a["run"] else load_weights_model(Path(a["weights"]))


def cmd_predict(args: list[str]) -> None:
    usage = ("fer-bench predict run=DIR|weights=FILE input=IMG|DIR|CSV out=FILE.csv [ckpt=best] [batch=64] "
             "[detector=FILE] [margin=0.2]")
    a = verb_args(args, usage, ("input", "out"),
                   {"run": "", "weights": "", "ckpt": "best", "batch": "64", "detector": "", "margin": "0.2"})
    from fer_bench.deploy import predict

    paths = predict.collect_inputs(Path(a["input"]))
    detector = predict.YuNetDetector(a["detector"]) if a["detector"] else None
    model = _inference_model(a, usage)
    started = time.time()
    table = predict.predict(model, paths, int(a["batch"]), detector=detector, margin=float(a["margin"]))
    out = Path(a["out"])
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    seconds = time.time() - started
    print(f"{len(table)} images in {seconds:.1f} s ({len(table) / seconds:.0f} images/s) -> {out}")


def cmd_export(args: list[str]) -> None:
    usage = "fer-bench export run=DIR|weights=FILE [format=onnx] [ckpt=best] [out=DIR] [atol=1e-4]"
    a = verb_args(args, usage, (), {"run": "", "weights": "", "format": "onnx", "ckpt": "best", "out": "",
                                     "atol": "1e-4"})
    if a["format"] != "onnx":
        raise ConfigError(f"format={a['format']}: only onnx is supported")
    from fer_bench.deploy.export import export_onnx, parity_images

    model = _inference_model(a, usage)
    default = model.run_dir / "export" if a["run"] else model.run_dir.parent / f"{model.run_dir.stem}_onnx"
    out_dir = Path(a["out"]) if a["out"] else default
    report = export_onnx(model, out_dir, parity_images(model), float(a["atol"]))
    diffs = ", ".join(f"{k} {v:.2e}" for k, v in report["max_abs_diff"].items())
    print(f"exported {report['path']}; onnxruntime vs PyTorch max abs difference: {diffs}")


def cmd_perf(args: list[str]) -> None:
    suite, args = pop_arg(args, "suite", "methods")
    if suite == "data":
        return cmd_perf_data(args)
    if suite != "methods":
        raise ConfigError(f"suite={suite}: perf suites are methods (default) and data")
    measured = [key for key, spec in registry().items() if spec.perf]  # methods with a perf module
    methods, args = pop_arg(args, "methods", ",".join(measured))
    reps, args = pop_arg(args, "reps", "5")
    steps, args = pop_arg(args, "steps", "12")
    out, args = pop_arg(args, "out", "results")
    backbone, args = pop_arg(args, "backbone", "resnet18")
    tiny, args = pop_arg(args, "tiny", "false")  # true: a smoke run on each method's spec.tiny settings
    if tiny not in ("true", "false"):
        raise ConfigError(f"tiny={tiny}: give true or false")
    names = [m for m in methods.strip("[]").split(",") if m]
    unknown = [m for m in names if m not in measured]
    if unknown:
        raise ConfigError(f"methods={methods}: perf does not measure {unknown} (only methods whose MethodSpec "
                          f"names a perf module); it measures {', '.join(measured)}")
    from fer_bench.tools.perf import run_perf

    started = time.time()
    report = run_perf(names, args, Path(out), reps=int(reps), steps=int(steps), backbone=backbone,
                      tiny=tiny == "true")
    print(report.read_text())
    print(f"perf: {report} ({time.time() - started:.0f} s)")


def cmd_perf_data(args: list[str]) -> None:
    a = verb_args(args, "fer-bench perf suite=data [sizes=10000,100000,1000000] [workers=4] [out=results]", (),
                   {"sizes": "10000,100000,1000000", "workers": "4", "out": "results"})
    from fer_bench.config import data_card
    from fer_bench.tools.perf_data import run_perf_data

    sizes = [int(s) for s in a["sizes"].strip("[]").split(",") if s]
    report = run_perf_data(sizes, Path(a["out"]), Path(data_card("folder").cache_dir).expanduser(),
                           workers=int(a["workers"]))
    print(report.read_text())


def cmd_synth(args: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="fer-bench synth")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--sheet", type=Path)
    opts, fields = parser.parse_known_args(args)
    from fer_bench.data import synthetic

    if opts.sheet:
        print(f"contact sheet: {synthetic.contact_sheet(opts.sheet)}")
    if opts.out:
        spec = synthetic.SynthSpec(**dataclass_overrides(synthetic.SynthSpec, fields, "fer-bench synth"))
        try:
            spec.validate()
        except ValueError as e:
            raise ConfigError(str(e)) from None
        started = time.time()
        table = synthetic.generate(spec, opts.out)
        seconds = time.time() - started
        print(f"{len(table)} images in {seconds:.1f} s ({len(table) / seconds:.0f} images/s) -> {opts.out}")
    if not (opts.sheet or opts.out):
        raise ConfigError("fer-bench synth needs --out DIR and/or --sheet FILE.png")










def cmd_convert(args: list[str]) -> None:
    """``convert format=F``: a checkpoint format a method's spec converts (default hsemotion)."""
    fmt, args = pop_arg(args, "format", "hsemotion")
    formats = {name: ref for spec in registry().values() for name, ref in spec.converters.items()}
    if fmt not in formats:
        raise ConfigError(f"convert format={fmt}: unknown; formats: {', '.join(sorted(formats))}")
    return load_reference(formats[fmt])(args)


def cmd_sweep(args: list[str]) -> None:
    usage = ("fer-bench sweep --local FILE.yaml [count=N] [seed=0] [out=DIR] [key=value ...]  |  "
             "fer-bench sweep FILE.yaml [count=N] [project=fer-bench] [entity=E]")
    local = "--local" in args
    files = [a for a in args if a.endswith((".yaml", ".yml")) and "=" not in a]
    if len(files) != 1:
        raise ConfigError(f"give one sweep file\nusage: {usage}")
    rest = [a for a in args if a not in ("--local", files[0])]
    count, rest = pop_arg(rest, "count")
    from fer_bench.protocols import sweep

    path = Path(files[0])
    if local:
        seed, rest = pop_arg(rest, "seed", "0")
        out, rest = pop_arg(rest, "out", str(Path("results") / "sweeps" / path.stem))
        report = sweep.run_local(path, int(count or 4), rest, Path(out), seed=int(seed))
        print(report.read_text())
        print(f"trials: {report}")
        return
    a = verb_args(rest, usage, (), {"project": "fer-bench", "entity": ""})
    code = sweep.register(path, int(count) if count else None, a["project"], a["entity"] or None)
    if code:
        raise SystemExit(code)


def cmd_report(args: list[str]) -> None:
    a = verb_args(args, "fer-bench report [results=results] [runs=runs] [out=<results>/report.md] "
                   "[group_by=COL] [logger.wandb=true|false] [logger.project=fer-bench]", (),
                   {"results": "results", "runs": "runs", "out": "", "group_by": "", "logger.wandb": "true",
                    "logger.project": "fer-bench"})
    from fer_bench.results import report

    out = Path(a["out"]) if a["out"] else Path(a["results"]) / "report.md"
    written = report.write_report(Path(a["results"]), Path(a["runs"]), out, a["group_by"] or None)
    if a["logger.wandb"].lower() == "true":
        report.log_to_wandb(written, a["logger.project"], out.parent)
    print(f"report: {out} ({len(written.images)} pictures in {out.parent / (out.stem + '_plots')})")


def cmd_compare(args: list[str]) -> None:
    usage = ("fer-bench compare A B [C ...] [ckpt=best] [suite=S] [data=D] [group_by=COL] [bootstrap=2000] [seed=0] "
             "[results=results] [runs=runs] [out=STEM]  (A: a run directory or [SUITE/]NAME[@DATA])")
    groups = [x for x in args if "=" not in x]
    if len(groups) < 2:
        raise ConfigError(f"compare needs at least two groups\nusage: {usage}")
    keys = verb_args([x for x in args if "=" in x], usage, (),
                      {"ckpt": "best", "suite": "", "data": "", "group_by": "", "bootstrap": "2000", "seed": "0",
                       "results": "results", "runs": "runs", "out": ""})
    from fer_bench.results import compare_run

    csv_path, md_path, text = compare_run.run(groups, keys)
    print(text)
    print(f"comparison: {csv_path} and {md_path}")


def cmd_faithful_table(args: list[str]) -> None:
    a = verb_args(args, "fer-bench faithful-table [out=docs/faithful.md]", (), {"out": "docs/faithful.md"})
    from fer_bench.config import faithful as protocol
    from fer_bench.config import project_root

    root = project_root()
    out = Path(a["out"]) if Path(a["out"]).is_absolute() else root / a["out"]
    print(protocol.write_table(protocol.blocks(root / "experiments"), out))


BUILT_IN_VERBS = {"bench": cmd_bench, "inspect": cmd_inspect, "train": cmd_train, "test": cmd_test,
                  "predict": cmd_predict, "export": cmd_export, "faithful-table": cmd_faithful_table,
                  "perf": cmd_perf, "synth": cmd_synth, "convert": cmd_convert, "sweep": cmd_sweep,
                  "report": cmd_report, "compare": cmd_compare}


def verbs() -> dict:
    """The built-in verbs and those the registered methods add (``MethodSpec.commands``)."""
    added = {verb: (lambda a, ref=ref: load_reference(ref)(a))
             for spec in registry().values() for verb, ref in spec.commands.items()}
    clash = set(added) & set(BUILT_IN_VERBS)
    if clash:
        raise ConfigError(f"a method's verbs {sorted(clash)} clash with fer-bench's own")
    return {**BUILT_IN_VERBS, **added}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        known = verbs()  # a broken plugin (its import, its key) is an error message, not a traceback
        if not argv or argv[0] in ("-h", "--help", "help") or argv[0] not in known:
            print(USAGE, file=sys.stderr if argv and argv[0] not in ("-h", "--help", "help") else sys.stdout)
            return 0 if not argv or argv[0] in ("-h", "--help", "help") else 2
        quiet_lightning()
        status = known[argv[0]](argv[1:])
    except (ConfigError, ValueError, FileNotFoundError) as e:  # DataError is a ValueError
        if os.environ.get("FER_BENCH_DEBUG"):
            raise
        print(f"fer-bench: error: {e}\n(set FER_BENCH_DEBUG=1 for the traceback)", file=sys.stderr)
        return 2
    return status or 0


if __name__ == "__main__":
    sys.exit(main())
