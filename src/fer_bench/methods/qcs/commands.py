"""``fer-bench convert format=qcs``: a released QCS/DCS checkpoint mapped onto fer-bench's QCS network."""

from __future__ import annotations

from fer_bench.cli_args import verb_args


def convert_command(args: list[str]) -> None:
    usage = ("fer-bench convert format=qcs src=<QCS checkpoint> labels=rafdb|ferplus|affectnet out=<state_dict.pt> "
             "[--trust-pickle]")
    a = verb_args([x for x in args if x != "--trust-pickle"], usage, ("src", "labels", "out"), {})
    from fer_bench.methods.qcs import checkpoint_import as qcs_import

    done = qcs_import.convert_checkpoint(a["src"], a["out"], a["labels"], trust_pickle="--trust-pickle" in args)
    keys = " ".join(f"{k}={v}" for k, v in done.arch.config_overrides().items())
    print(f"{a['out']}: {'QCS' if done.arch.branches == 4 else 'DCS'}, {done.arch.num_classes} classes in fer-bench "
          f"order ({done.space}); {len(done.dropped)} unused official tensors dropped.\n"
          f"whole network (a {done.space} data set): method=qcs method.weights={a['out']} {keys}\n"
          f"IR-50 trunk only (QCS\u2021 init): method.trunk_weights={a['out']}")

