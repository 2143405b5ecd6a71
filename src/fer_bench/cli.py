"""``fer-bench <verb> key=value ...`` — thin entry points that assemble objects and run them."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from fer_bench.config import ConfigError, build_config, dataclass_overrides

USAGE = """fer-bench <verb> [key=value ...]

verbs:
  bench  method=M data=D [key=value ...]   train every seed, select on val, test best and last, add leaderboard rows
  train  method=M data=D [key=value ...]   train one seed (no test data touched); prints the run directory
  test   run=DIR [ckpt=best|last]          re-test a finished run on its saved test split
  synth  --out DIR [field=value ...]       write a synthetic face data set (images/<split>/*.png + labels.csv)
  synth  --sheet FILE.png                  render a contact sheet: one row per class, one column per domain
"""


def _pop(args: list[str], key: str, default: str | None = None) -> tuple[str | None, list[str]]:
    rest, value = [], default
    for a in args:
        if a.startswith(f"{key}="):
            value = a.split("=", 1)[1]
        else:
            rest.append(a)
    return value, rest


def _print_headline(run_dirs: list[Path]) -> None:
    for run_dir in run_dirs:
        metrics = json.loads((run_dir / "metrics.json").read_text())
        best, last = metrics["best"], metrics["last"]
        print(f"run {run_dir}")
        for name, m in (("best (val-selected)", best), ("last", last)):
            print(f"  {name:<20} acc {m['test/acc']:.4f}  uar {m['test/uar']:.4f}  f1 {m['test/f1']:.4f}")


def cmd_bench(args: list[str]) -> None:
    resume, args = _pop(args, "resume")
    cfg = build_config(args)
    from fer_bench.bench import runner

    started = time.time()
    run_dirs = runner.bench(cfg, resume=Path(resume) if resume else None)
    _print_headline(run_dirs)
    print(f"leaderboard: {Path(cfg.results_dir) / 'leaderboard.md'}  ({time.time() - started:.0f} s)")


def cmd_train(args: list[str]) -> None:
    cfg = build_config(args)
    from fer_bench.bench import runner

    run_dir = runner.train_one(cfg, test=False)
    print(f"run {run_dir}")


def cmd_test(args: list[str]) -> None:
    run, args = _pop(args, "run")
    kind, args = _pop(args, "ckpt", "best")
    if not run or args:
        raise ConfigError("usage: fer-bench test run=<run dir> [ckpt=best|last]")
    from fer_bench.bench import runner

    metrics = runner.test_run(Path(run), kind)
    print(json.dumps(metrics, indent=2))


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


VERBS = {"bench": cmd_bench, "train": cmd_train, "test": cmd_test, "synth": cmd_synth}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help") or argv[0] not in VERBS:
        print(USAGE, file=sys.stderr if argv and argv[0] not in ("-h", "--help", "help") else sys.stdout)
        return 0 if not argv or argv[0] in ("-h", "--help", "help") else 2
    from fer_bench.data.records import DataError

    try:
        VERBS[argv[0]](argv[1:])
    except (ConfigError, DataError, ValueError, FileNotFoundError) as e:
        if os.environ.get("FER_BENCH_DEBUG"):
            raise
        print(f"fer-bench: error: {e}\n(set FER_BENCH_DEBUG=1 for the traceback)", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
