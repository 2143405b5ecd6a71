"""``fer-bench perf``: fer-bench measured against the plain-PyTorch limit — a benchmark, never a test.

For each method, on the configuration ``profile=cpu`` gives it plus the shared overrides (same backbone family,
batch size and image size for all):

- training images/s through the Lightning loop vs a plain loop doing the same forward/backward/step on the same
  model and the same preloaded batches (ratio = framework overhead);
- data-pipeline images/s (decode + albumentations + collate with the configured workers) vs training images/s;
- inference images/s (batch 64) and latency (batch 1) in PyTorch eager and through the exported ONNX model;
- peak memory of the training measurement;
- the test intervals' bootstrap (acc, UAR, F1 of a 3,000-image test set, 2,000 BCa resamples) on one core, and the
  paired comparison of two methods on that test set (``fer-bench compare``: 2,000 paired resamples, McNemar).

Every figure is the median of ``reps`` timed repetitions after a warm-up, with its min–max spread; both sides of a
ratio come from the same run. Results: ``<out>/perf.csv`` (one row per measure) and ``<out>/perf.md``.

A method takes part through the module its ``MethodSpec.perf`` names (see :func:`perf_side`): ``BACKBONE_KEY`` (the
config key that puts it on the shared timm backbone), ``plain_loss(method, batch)`` (its loss as a user would write
it in plain PyTorch) and optionally ``fitted(backbone)`` (overrides that fit the method around that backbone),
``TARGETS`` (its own targets: name -> (comparison, bound)), ``targets(run)`` (their values from a
:class:`MethodRun`: ``(target, value, detail)`` tuples) and ``RELATIVE_STEP`` (target -> another method: the ratio
of the two training steps, reported when both methods are measured in the same run).
"""

from __future__ import annotations

import itertools
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf
from threadpoolctl import threadpool_limits
from torch.utils.data import DataLoader
from tqdm import tqdm

from fer_bench.config import EvalConfig, build_config
from fer_bench.data.datamodule import FERDataModule
from fer_bench.deploy.export import export_onnx
from fer_bench.deploy.inference import RunModel
from fer_bench.engine.runner import build_method, build_trainer
from fer_bench.methods import predictions, registry, spec_of
from fer_bench.methods.base import FERMethod
from fer_bench.methods.optim import build_optimizer
from fer_bench.models.sam import SAM
from fer_bench.results import compare
from fer_bench.results.prediction_sets import Side

# The same batch for every method (a method trained on quadruplets counts quadruplets: 4x the images per step).
SHARED = ["data.batch_size=16"]
# Targets of the perf issue that every run reports: (comparison, bound). Methods add theirs (``TARGETS``).
TARGETS = {
    "framework_overhead": ("<=", 1.10),
    "loader_vs_training": (">=", 2.0),
    "bootstrap_intervals_seconds": ("<=", 2.0),
    "paired_comparison_seconds": ("<=", 2.0),
}
# A tiny run (``run_perf(tiny=True)``): images per inference batch; (test images, resamples) of the intervals.
TINY_BATCH, TINY_TEST = 8, (300, 200)
# What a method's perf module must provide.
REQUIRED_HOOKS = ("BACKBONE_KEY", "plain_loss")


def measured_methods() -> list[str]:
    """The registered methods whose spec names a perf module, in registry order."""
    return [key for key, spec in registry().items() if spec.perf]


def perf_side(key: str):
    """The perf module of method ``key``, checked for :data:`REQUIRED_HOOKS` and for targets it may report."""
    spec = spec_of(key)
    if not spec.perf:
        raise ValueError(f"perf: method {key!r} has no perf module (its MethodSpec.perf is None); perf measures "
                         f"{', '.join(measured_methods()) or 'no registered method'}")
    side = spec.perf_side()
    missing = [name for name in REQUIRED_HOOKS if not hasattr(side, name)]
    if missing:
        raise ValueError(f"perf: {spec.perf} (method {key!r}) lacks {', '.join(missing)}; a perf module provides "
                         f"{', '.join(REQUIRED_HOOKS)}")
    own = getattr(side, "TARGETS", {})
    undeclared = sorted((set(getattr(side, "RELATIVE_STEP", {})) - set(own)) | (set(own) & set(TARGETS)))
    if undeclared:
        raise ValueError(f"perf: {spec.perf}: targets {undeclared} are missing from its TARGETS or clash with "
                         f"perf's own ({', '.join(TARGETS)})")
    return side


def target_bounds(methods: list[str]) -> dict[str, tuple[str, float]]:
    """Perf's own targets and those of the perf modules of ``methods``; two methods may not define one name."""
    bounds, owner = dict(TARGETS), {}
    for key in methods:
        for target, bound in getattr(perf_side(key), "TARGETS", {}).items():
            if target in owner:
                raise ValueError(f"perf: target {target!r} is defined by both {owner[target]} and {key}")
            owner[target], bounds[target] = key, bound
    return bounds


@dataclass
class Timing:
    """Seconds per repetition: median and spread."""

    samples: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def spread(self) -> tuple[float, float]:
        return min(self.samples), max(self.samples)


def time_reps(fn: Callable[[], None], reps: int, warmup: int = 1) -> Timing:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(reps):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return Timing(samples)


class PeakMemory:
    """Peak memory inside the block: the CUDA allocator's peak on GPU, else the process's peak resident set
    (Linux ``VmHWM``, reset on entry through ``/proc/self/clear_refs``). No sampling thread runs beside the
    measured code, so timing the block is not disturbed."""

    def __init__(self, device: torch.device):
        self.device, self.peak_bytes = device, 0

    @staticmethod
    def _high_water_mark() -> int:
        with open("/proc/self/status") as f:
            kib = next(line.split()[1] for line in f if line.startswith("VmHWM:"))
        return int(kib) * 1024

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # resets VmHWM to the current resident set
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            self.peak_bytes = torch.cuda.max_memory_allocated(self.device)
        else:
            self.peak_bytes = self._high_water_mark()


def _plain_step(method, optimizer, loss_fn, batch: dict) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss_fn(method, batch).backward()
    if isinstance(optimizer, SAM):
        optimizer.first_step(zero_grad=True)
        loss_fn(method, batch).backward()
        optimizer.second_step(zero_grad=True)
    else:
        optimizer.step()


def _images_in(batch: dict) -> int:
    return batch["images"].shape[0] * batch["images"].shape[1] if "images" in batch else batch["image"].shape[0]


def _channels_last(batch: dict) -> dict:
    return {k: v.contiguous(memory_format=torch.channels_last) if k == "image" else v for k, v in batch.items()}


@dataclass
class MethodRun:
    """What a method's ``targets(run)`` hook reads once its measures are taken: ``method`` (the seeded, untrained
    model measured for inference; its config is ``method.cfg``), ``trained`` (the model after the timed Lightning
    training), ``batch`` (the first preloaded training batch, on the CPU), ``reps`` and ``inference_batch`` (the
    sizes of the inference measures)."""

    method: FERMethod
    trained: FERMethod
    batch: dict
    reps: int
    inference_batch: int


class _StepTimer(pl.Callback):
    """Per-epoch wall time from the start of batch 1 to the end of the last batch (steady state)."""

    def __init__(self):
        self.samples: list[float] = []

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        if batch_idx == 1:
            self._started = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        if batch_idx == trainer.num_training_batches - 1:
            self.samples.append(time.perf_counter() - self._started)


def _fresh_method(cfg: DictConfig):
    """The method with seeded weights, laid out as in a run (channels_last / compile: FERMethod.setup)."""
    torch.manual_seed(0)
    method = build_method(cfg)
    FERMethod.setup(method, "fit")
    return method


def measure_training(cfg: DictConfig, datamodule: FERDataModule, batches: list[dict], reps: int,
                     workdir: Path, plain_loss: Callable) -> dict:
    """Seconds per step through fer-bench's Lightning loop and through the plain loop, same batches (the
    DataModule serves the preloaded batches, so the method sees its usual ``trainer.datamodule``); the plain loop
    computes ``plain_loss(method, batch)``."""
    steps = len(batches) - 1
    perf_cfg = cfg.copy()
    perf_cfg.trainer.max_epochs = reps + 1
    perf_cfg.trainer.limit_val_batches = 0
    perf_cfg.trainer.progress_bar = False
    timer = _StepTimer()
    method = _fresh_method(perf_cfg)
    from lightning.pytorch.loggers import CSVLogger

    trainer = build_trainer(perf_cfg, workdir, [CSVLogger(str(workdir), name="perf")], [timer], method)
    datamodule.train_dataloader = lambda: DataLoader(batches, batch_size=None, shuffle=False)
    device = torch.device("cuda" if perf_cfg.trainer.accelerator == "gpu" else "cpu")
    try:
        with PeakMemory(device) as memory:
            trainer.fit(method, datamodule=datamodule)
    finally:
        del datamodule.train_dataloader  # the class method again
    framework = Timing([s / steps for s in timer.samples[1:]])  # epoch 0 is the warm-up

    plain_method = _fresh_method(perf_cfg).to(device).train()
    optimizer = build_optimizer(plain_method.trainable_parameters(), perf_cfg.optim)  # all layers (multitask phase B)
    on_device = [_channels_last({k: v.to(device) for k, v in b.items()}) for b in batches[1:]]

    def plain_epoch() -> None:
        for batch in on_device:
            _plain_step(plain_method, optimizer, plain_loss, batch)

    plain = time_reps(plain_epoch, reps)
    plain = Timing([s / steps for s in plain.samples])
    return {"framework": framework, "plain": plain, "images_per_step": _images_in(batches[0]),
            "peak_bytes": memory.peak_bytes, "trained": method}


def measure_loader(datamodule: FERDataModule, reps: int) -> tuple[Timing, int]:
    """Seconds per full pass of the configured training loader (workers started by the warm-up pass)."""
    loader = datamodule.train_dataloader()
    counted = []

    def one_pass() -> None:
        counted.append(sum(_images_in(b) for b in loader))

    return time_reps(one_pass, reps), counted[-1]


def measure_inference(model: RunModel, export_dir: Path, reps: int, batch: int = 64, onnx: bool = True) -> dict:
    """Eager and (``onnx``) ONNX Runtime: seconds per batch of ``batch`` images and per single image."""
    size = model.needs.image_size
    images = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0))
    layout = torch.channels_last if model.cfg.trainer.channels_last else torch.contiguous_format
    method = model.method.eval()
    eager_images = images.contiguous(memory_format=layout)
    with torch.no_grad():  # the run's memory layout; export below switches the model to NCHW
        eager_batch = time_reps(lambda: method(eager_images), reps)
        eager_one = time_reps(lambda: method(eager_images[:1]), reps * 4)
    measured = {"eager_batch": eager_batch, "eager_one": eager_one, "batch": batch}
    if not onnx:
        return measured
    report = export_onnx(model, export_dir, images[:4])
    import onnxruntime as ort

    session = ort.InferenceSession(report["path"], providers=["CPUExecutionProvider"])
    one = images[:1]
    onnx_batch = time_reps(lambda: session.run(["logits"], {"images": images.numpy()}), reps)
    onnx_one = time_reps(lambda: session.run(["logits"], {"images": one.numpy()}), reps * 4)
    return {**measured, "onnx_batch": onnx_batch, "onnx_one": onnx_one,
            "max_abs_diff": max(report["max_abs_diff"].values())}


def _inference_rows(name: str, inference: dict) -> list[dict]:
    b, rows = inference["batch"], []
    for runtime in ("eager", "onnx")[: 2 if "onnx_batch" in inference else 1]:
        per_batch, one = inference[f"{runtime}_batch"], inference[f"{runtime}_one"]
        note = f"parity max abs diff {inference['max_abs_diff']:.1e}" if runtime == "onnx" else ""
        rows += [_row(name, f"inference images/s {runtime} (batch {b})", _rate(b, per_batch), b / per_batch.median,
                      "images/s"),
                 _row(name, f"latency {runtime} (batch 1)", _ms(one), one.median * 1e3, "ms", note)]
    return rows


def _test_predictions(images: int, classes: int, accuracy: float, rng: np.random.Generator,
                      target: np.ndarray | None = None) -> pd.DataFrame:
    """Targets and predictions right on about ``accuracy`` of ``images`` test images (a random class elsewhere)."""
    target = rng.integers(0, classes, images) if target is None else target
    return pd.DataFrame({"target": target, "pred": np.where(rng.random(images) < accuracy, target,
                                                            rng.integers(0, classes, images))})


def measure_bootstrap(reps: int, images: int = 3000, resamples: int = 2000, classes: int = 7) -> tuple[dict, dict]:
    """Seconds for the intervals of one test report (``predictions.metric_intervals``: acc, UAR, F1 of ``images``
    predictions at 90 % accuracy, ``resamples`` BCa resamples) with numpy and BLAS held to one thread."""
    frame = _test_predictions(images, classes, 0.9, np.random.default_rng(0))
    eval_cfg = OmegaConf.structured(EvalConfig(bootstrap=resamples))
    with threadpool_limits(limits=1):
        timing = time_reps(lambda: predictions.metric_intervals(frame, classes, eval_cfg), reps)
    what = f"{resamples} resamples x {images} images, acc+uar+f1, BCa, 1 thread"
    return (_row("-", "bootstrap intervals (one test report)", timing, timing.median, "s", what),
            _target_row("-", "bootstrap_intervals_seconds", timing.median, what, TARGETS))


def measure_paired_comparison(reps: int, images: int = 3000, resamples: int = 2000,
                              classes: int = 7) -> tuple[dict, dict]:
    """Seconds for ``bench.compare.compare_pair`` of two methods (90 % and 88 % accuracy) on ``images`` test images:
    acc, UAR, F1 differences from ``resamples`` paired resamples, McNemar's test; one thread."""
    rng = np.random.default_rng(1)
    a = _test_predictions(images, classes, 0.9, rng)
    b = _test_predictions(images, classes, 0.88, rng, target=a["target"].to_numpy())
    frame = a[["target"]].assign(id=[f"{i:06d}.png" for i in range(images)])
    sides = [Side(label, frame, p["pred"].to_numpy()[None, :], [0], [], "-", classes) for label, p in
             (("a", a), ("b", b))]
    with threadpool_limits(limits=1):
        timing = time_reps(lambda: compare.compare_pair(*sides, resamples=resamples), reps)
    what = f"{resamples} paired resamples x {images} images, acc+uar+f1 differences + McNemar, 1 thread"
    return (_row("-", "paired comparison (two methods)", timing, timing.median, "s", what),
            _target_row("-", "paired_comparison_seconds", timing.median, what, TARGETS))


def _row(method: str, measure: str, timing: Timing | None, value: float, unit: str, note: str = "") -> dict:
    low, high = (timing.spread if timing else (value, value))
    return {"method": method, "measure": measure, "value": value, "unit": unit,
            "spread_low": low, "spread_high": high, "reps": len(timing.samples) if timing else 1, "note": note}


def _rate(images: int, timing: Timing) -> Timing:
    """Seconds per repetition → images/s per repetition (spread follows)."""
    return Timing([images / s for s in timing.samples])


def _ms(timing: Timing) -> Timing:
    return Timing([s * 1e3 for s in timing.samples])


def _target_row(method: str, target: str, ratio: float, detail: str, bounds: dict) -> dict:
    op, bound = bounds[target]
    met = ratio <= bound if op == "<=" else ratio >= bound
    return {"method": method, "target": target, "ratio": ratio, "bound": f"{op} {bound}",
            "status": "met" if met else "missed", "detail": detail}


def perf_config(name: str, overrides: list[str], backbone: str, tiny: bool = False) -> DictConfig:
    """The method's ``profile=cpu`` config on the shared batch and ``backbone`` (its spec's tiny overrides on top
    when ``tiny``), then the user's ``overrides``."""
    side = perf_side(name)
    fitted = side.fitted(backbone) if hasattr(side, "fitted") else []
    small = list(spec_of(name).tiny) if tiny else []
    return build_config([f"method={name}", "profile=cpu", "logger.wandb=false", *SHARED,
                         f"{side.BACKBONE_KEY}={backbone}", *fitted, *small, *overrides])


def perf_method(name: str, overrides: list[str], reps: int, steps: int, workdir: Path, backbone: str,
                bounds: dict, tiny: bool = False, onnx: bool = True) -> tuple[list, list, dict]:
    """All measures of one method: (measure rows, target rows, its training step for cross-method targets)."""
    side = perf_side(name)
    cfg = perf_config(name, overrides, backbone, tiny)
    method = _fresh_method(cfg)  # measured for inference below; training builds its own seeded copies
    datamodule = FERDataModule(cfg.data, method.data_needs(), seed=cfg.seed)
    datamodule.prepare_data()
    datamodule.setup("fit")
    batches = list(itertools.islice(datamodule.train_dataloader(), steps + 1))
    training = measure_training(cfg, datamodule, batches, reps, workdir / name, side.plain_loss)
    per_step = training["images_per_step"]
    framework_rate, plain_rate = _rate(per_step, training["framework"]), _rate(per_step, training["plain"])
    loader_time, loader_images = measure_loader(datamodule, reps)
    loader_rate = _rate(loader_images, loader_time)
    model = RunModel(workdir / name, cfg, method, method.data_needs())
    inference = measure_inference(model, workdir / name / "export", reps, TINY_BATCH if tiny else 64, onnx)
    b = inference["batch"]
    rows = [
        _row(name, "train images/s (fer-bench)", framework_rate, framework_rate.median, "images/s"),
        _row(name, "train images/s (plain PyTorch)", plain_rate, plain_rate.median, "images/s"),
        _row(name, "train step (fer-bench)", _ms(training["framework"]), training["framework"].median * 1e3, "ms",
             f"{per_step} images per step"),
        _row(name, "loader images/s", loader_rate, loader_rate.median, "images/s",
             f"num_workers={cfg.data.num_workers}"),
        *_inference_rows(name, inference),
        _row(name, "peak memory (training)", None, training["peak_bytes"] / 2**20, "MiB"),
    ]
    overhead = training["framework"].median / training["plain"].median
    targets = [
        _target_row(name, "framework_overhead", overhead,
                    f"{framework_rate.median:.0f} vs {plain_rate.median:.0f} images/s", bounds),
        _target_row(name, "loader_vs_training", loader_rate.median / framework_rate.median,
                    f"{loader_rate.median:.0f} vs {framework_rate.median:.0f} images/s", bounds),
    ]
    if hasattr(side, "targets"):
        run = MethodRun(model.method, training["trained"], batches[0], reps, b)
        targets += [_target_row(name, target, value, detail, bounds) for target, value, detail in side.targets(run)]
    return rows, targets, {"step": training["framework"].median, "images": per_step}


def _relative_steps(name: str, steps: dict[str, dict], bounds: dict) -> list[dict]:
    """The targets that divide ``name``'s training step by another measured method's (``RELATIVE_STEP``)."""
    rows = []
    for target, other in getattr(perf_side(name), "RELATIVE_STEP", {}).items():
        if other in steps:
            own, ref = steps[name], steps[other]
            rows.append(_target_row(name, target, own["step"] / ref["step"],
                                    f"{name} step {own['step'] * 1e3:.0f} ms ({own['images']} images) vs {other} "
                                    f"step {ref['step'] * 1e3:.0f} ms ({ref['images']} images)", bounds))
    return rows


def run_perf(methods: list[str], overrides: list[str], out_dir: Path, reps: int = 5, steps: int = 12,
             backbone: str = "resnet18", tiny: bool = False, onnx: bool = True) -> Path:
    """Measure every method on one timm ``backbone``; write ``perf.csv``, ``perf_targets.csv`` and ``perf.md`` in
    ``out_dir``; returns the markdown path. ``tiny``: a smoke run of the harness, not a benchmark — each method's
    ``MethodSpec.tiny`` overrides on top of the shared settings, inference batches of :data:`TINY_BATCH` images and
    the intervals on :data:`TINY_TEST` (test images, resamples). ``onnx=False`` leaves out the ONNX export and its
    rows. A target relating two methods (``RELATIVE_STEP``) is reported when both are in ``methods``."""
    bounds = target_bounds(methods)  # refuses a method without a (complete) perf module before measuring
    rows, targets, measured = [], [], {}
    with tempfile.TemporaryDirectory(prefix="fer-bench-perf-") as tmp:
        for name in tqdm(methods, desc="perf", unit="method"):
            method_rows, method_targets, measured[name] = perf_method(name, overrides, reps, steps, Path(tmp),
                                                                      backbone, bounds, tiny, onnx)
            rows += method_rows
            targets += method_targets
    images, resamples = TINY_TEST if tiny else (3000, 2000)
    bootstrap_row, bootstrap_target = measure_bootstrap(reps, images, resamples)
    paired_row, paired_target = measure_paired_comparison(reps, images, resamples)
    rows += [bootstrap_row, paired_row]
    targets += [bootstrap_target, paired_target]
    for name in measured:
        targets += _relative_steps(name, measured, bounds)
    out_dir.mkdir(parents=True, exist_ok=True)
    measures, verdicts = pd.DataFrame(rows), pd.DataFrame(targets)
    measures.to_csv(out_dir / "perf.csv", index=False)
    verdicts.to_csv(out_dir / "perf_targets.csv", index=False)
    md = out_dir / "perf.md"
    md.write_text(_markdown(measures, verdicts, [f"backbone={backbone}", *(["tiny=true"] if tiny else []),
                                             *([] if onnx else ["onnx=false"]), *overrides],
                            reps, steps, bounds))
    return md


def _markdown(measures: pd.DataFrame, verdicts: pd.DataFrame, overrides: list[str], reps: int, steps: int,
              bounds: dict) -> str:
    shown = measures.assign(
        value=measures["value"].map(lambda v: f"{v:,.1f}"),
        spread=[f"{lo:,.1f}–{hi:,.1f}" if n > 1 else "" for lo, hi, n in
                zip(measures["spread_low"], measures["spread_high"], measures["reps"], strict=True)],
    )[["method", "measure", "value", "unit", "spread", "note"]]
    targets = verdicts.assign(ratio=[f"{r:.0f}" if bounds[t][1] == 0 else f"{r:.2f} s" if t.endswith("seconds")
                                     else f"{r:.2f}×"  # counts and seconds, not ratios
                                     for t, r in zip(verdicts["target"], verdicts["ratio"], strict=True)])
    threads = torch.get_num_threads()
    return (
        "# fer-bench perf\n\n"
        f"Median of {reps} repetitions after warm-up ({steps} training steps each); spread = min–max. "
        f"torch {torch.__version__}, {threads} threads; overrides: {' '.join(overrides) or 'none'}.\n\n"
        "## Targets\n\n" + targets.to_markdown(index=False) + "\n\n## Measures\n\n"
        + shown.to_markdown(index=False) + "\n"
    )
