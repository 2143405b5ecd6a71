"""The verbs the multitask method adds to ``fer-bench``: ``extract``, ``downstream``, ``convert format=hsemotion``."""

from __future__ import annotations

import json
import time
from pathlib import Path

from fer_bench.cli_args import pop_arg, three_floats, verb_args
from fer_bench.config import ConfigError, dataclass_overrides


def extract_command(args: list[str]) -> None:
    run, args = pop_arg(args, "run")
    kind, args = pop_arg(args, "ckpt", "best")
    out, args = pop_arg(args, "out")
    from fer_bench.methods.multitask.downstream import extract

    started = time.time()
    path = extract.command(run, kind, out, args)
    print(f"features: {path} ({time.time() - started:.0f} s)")



def downstream_command(args: list[str]) -> None:
    features, args = pop_arg(args, "features")
    out, args = pop_arg(args, "out")
    if not features:
        raise ConfigError("usage: fer-bench downstream features=<file.parquet> task=expr|va|au|intensity|ce "
                          "[key=value ...]")
    from fer_bench.methods.multitask.config import HeadConfig

    head_cfg = dataclass_overrides(HeadConfig, args, "fer-bench downstream")
    from fer_bench.methods.multitask.downstream import extract, tasks

    settings = tasks.resolve(head_cfg)
    table, meta = extract.read_features(features)
    result = tasks.run(table, settings, meta["space"])
    target = Path(out) if out else Path(features).with_suffix(f".{settings.task}.json")
    target.write_text(json.dumps({"settings": head_cfg, **result}, indent=2))
    print(json.dumps(result, indent=2))
    print(f"written to {target}")





def convert_command(args: list[str]) -> None:
    """``fer-bench convert format=hsemotion``: a pickled HSEmotion model as a state_dict + metadata
    (``backbone=ddamfn``: an official DDAMNet checkpoint)."""
    if "backbone=ddamfn" in args:
        return convert_ddamnet_command(args)
    usage = ("fer-bench convert src=<pickled model.pt> backbone=<name> out=<weights.pt> [input_size=N] "
             "[mean=R,G,B] [std=R,G,B] --trust-pickle")
    trusted = "--trust-pickle" in args
    a = verb_args([x for x in args if x != "--trust-pickle"], usage, ("src", "backbone", "out"),
                   {"input_size": "", "mean": "", "std": ""})
    if not trusted:
        raise ConfigError(f"{a['src']} is a whole pickled model: loading it runs code the file names. Add "
                          "--trust-pickle if it comes from a source you trust (e.g. the official HSEmotion release).")
    from fer_bench.methods.multitask import convert

    started = time.time()
    net, meta = convert.convert(a["src"], a["backbone"], a["out"], int(a["input_size"]) if a["input_size"] else None,
                                three_floats(a["mean"], "mean"), three_floats(a["std"], "std"))
    outputs = f"{meta['num_classes']} + valence/arousal" if meta["va"] else f"{meta['num_classes']} classes"
    print(f"{a['out']}: {a['backbone']} + Linear({net.head.in_features}, {outputs}), classes in {meta['space']} "
          f"order; input {meta['input_size']} px, mean {meta['mean']}, std {meta['std']} ({meta['recipe']}); "
          f"{time.time() - started:.1f} s\n"
          f"use: fer-bench predict weights={a['out']} input=... out=preds.csv | method.weights={a['out']}")



def convert_ddamnet_command(args: list[str]) -> None:
    usage = "fer-bench convert src=<DDAMNet checkpoint.pth> backbone=ddamfn out=<state_dict.pt> [--trust-pickle]"
    trusted = "--trust-pickle" in args
    a = verb_args([x for x in args if x != "--trust-pickle"], usage, ("src", "backbone", "out"), {})
    from fer_bench.methods.multitask import ddamfn_convert

    net = ddamfn_convert.convert_ddamnet(a["src"], a["out"], trust_pickle=trusted)
    print(f"{a['out']}: ddamfn ({len(net.backbone.heads)} heads) + Linear(512, {net.num_classes} + 2); "
          f"use backbone.name=ddamfn method.weights={a['out']}")
