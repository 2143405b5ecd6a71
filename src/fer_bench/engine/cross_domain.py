"""Cross-domain protocol: train on one data set, test the val-selected checkpoint on others (``eval_on``).

A target is named ``<card>`` (a data card of ``data_modules/``, e.g. ``rafdb``), ``<card>:<root>`` (the card with
``data.root=<root>``) or ``synthetic:<domain>[+<domain>...]`` (the synthetic faces rendered in other domains). A
synthetic target keeps the training run's own synthetic parameters (seed, subjects, classes, difficulty, size)
when the run trains on synthetic faces, so its subjects and their splits are the training run's: its test split
holds only test subjects, never seen in training. Run-level data settings (batch size, workers, cache folder)
always come from the training run.

Label spaces are mapped through the canonical ids of ``labels.py``: a target is scored on the classes both spaces
share, the model's logits restricted to those classes and target images of other classes left out. Results go to
``metrics.json`` (``xdom``) and the best checkpoint's leaderboard row as ``xdom/<target>/{acc,uar,f1}`` with the
run's ``train_set``; ``results/xdom_<name>.{csv,png}`` hold the matrix of mean accuracies over seeds (rows:
training sets, columns: test sets, the diagonal being the training set's own test split).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from fer_bench import labels as L
from fer_bench.config import ConfigError, data_card
from fer_bench.data.datamodule import FERDataModule
from fer_bench.data.readers import dataset_root
from fer_bench.data.synthetic import SynthSpec
from fer_bench.data.transforms import ReversedChannels
from fer_bench.methods import predictions as P
from fer_bench.metrics.classification import accuracy_from_confmat, confusion_matrix, f1_from_confmat, uar_from_confmat

log = logging.getLogger(__name__)

SYNTHETIC = "synthetic"
RUN_KEYS = ("batch_size", "eval_batch_size", "num_workers", "pin_memory", "persistent_workers", "cache_dir",
            "on_error", "check")


@dataclass(frozen=True)
class Target:
    """One cross-domain test set: its column name and its data config."""

    name: str
    data: DictConfig


def set_name(data_cfg: DictConfig) -> str:
    """How a data config is named in ``xdom`` columns and matrices: the card, or ``synthetic:<domains>``."""
    if data_cfg.reader == SYNTHETIC:
        return f"{SYNTHETIC}:{'+'.join(data_cfg.synth.domains)}"
    return data_cfg.name


def resolve_target(entry: str, source: DictConfig) -> Target:
    """The data config of one ``eval_on`` entry; a bad entry raises ConfigError naming it."""
    card, _, arg = str(entry).partition(":")
    if card == SYNTHETIC:
        if not arg:
            raise ConfigError(f"eval_on entry {entry!r}: name the domains, e.g. synthetic:wild")
        base = source if source.reader == SYNTHETIC else data_card(SYNTHETIC)
        data = OmegaConf.merge(base, {"name": SYNTHETIC, "synth": {"domains": arg.split("+")}})
        try:
            SynthSpec(**OmegaConf.to_container(data.synth, resolve=True)).validate()
        except ValueError as e:
            raise ConfigError(f"eval_on entry {entry!r}: {e}") from None
    else:
        try:
            data = data_card(card)
        except ConfigError as e:
            raise ConfigError(f"eval_on entry {entry!r}: {e}") from None
        if arg:
            data.root = arg
        dataset_root(data)  # a missing or wrong root fails now, not after training
    for key in RUN_KEYS:
        data[key] = source[key]
    return Target(set_name(data), data)


def resolve_targets(cfg: DictConfig) -> list[Target]:
    """Every ``eval_on`` target of a run, checked before any training."""
    targets = [resolve_target(entry, cfg.data) for entry in cfg.eval_on]
    names = [t.name for t in targets]
    if len(set(names)) < len(names):
        raise ConfigError(f"eval_on names a target twice: {names}")
    return targets


def shared_classes(source_space: str, target_space: str) -> tuple[list[int], np.ndarray]:
    """Model head indices of the classes both spaces share (in the source's order), and for every target head
    index its position among them (−1: not shared)."""
    if (source_space in L.COMPOUND_SPACES) != (target_space in L.COMPOUND_SPACES):
        raise ConfigError(f"label spaces '{source_space}' and '{target_space}' are of different kinds "
                          "(basic vs compound expressions)")
    source, target = L.space(source_space), L.space(target_space)
    shared = [c for c in source if c in target]
    if not shared:
        raise ConfigError(f"label spaces '{source_space}' and '{target_space}' share no class")
    return [source.index(c) for c in shared], np.array([shared.index(c) if c in shared else -1 for c in target])


def _device(cfg: DictConfig) -> torch.device:
    use_gpu = torch.cuda.is_available() and cfg.trainer.accelerator in ("auto", "gpu", "cuda")
    return torch.device("cuda" if use_gpu else "cpu")


def _autocast(cfg: DictConfig, device: torch.device):
    dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(str(cfg.trainer.precision))
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None and device.type == "cuda")


@torch.inference_mode()
def confusion_on(method, loader, heads: list[int], target_to_shared: np.ndarray, cfg: DictConfig,
                 collector: P.PredictionCollector | None = None) -> torch.Tensor:
    """Confusion matrix over the shared classes of ``method``'s inference path on ``loader``; the per-image
    outputs (logits of the shared classes) go to ``collector``."""
    device = _device(cfg)
    method.to(device).eval()
    mapping = torch.as_tensor(target_to_shared)
    cm = torch.zeros(len(heads), len(heads), dtype=torch.long)
    for batch in loader:
        labels = mapping[batch["label"]]
        keep = labels >= 0
        if not keep.any():
            continue
        images = method.on_after_batch_transfer({"image": batch["image"][keep].to(device)}, 0)["image"]
        with _autocast(cfg, device):
            logits = method.inference_outputs(images)["logits"]
        shared = logits.float()[:, heads].cpu()
        cm += confusion_matrix(shared, labels[keep], len(heads))
        if collector is not None:
            collector.add(batch["index"][keep], {"logits": shared})
    return cm


def evaluate(cfg: DictConfig, targets: list[Target], method, run_dir: Path | None = None) -> dict:
    """Score ``method`` (the selected checkpoint already loaded) on every target's test split; returns the run's
    ``train_set`` and ``xdom/<target>/{acc,uar,f1}`` with their intervals. With ``run_dir``, each target's
    predictions go to ``predictions_best_xdom_<target>.parquet`` (classes: the shared ones)."""
    results: dict = {"train_set": set_name(cfg.data)}
    for target in targets:
        datamodule = FERDataModule(target.data, method.data_needs(), seed=cfg.seed)
        datamodule.prepare_data()
        datamodule.setup("test")
        if bgr_input(cfg, target.name):
            test = datamodule.datasets["test"]
            test.transform = ReversedChannels(test.transform)
        heads, target_to_shared = shared_classes(cfg.data.space, target.data.space)
        collector = P.PredictionCollector()
        cm = confusion_on(method, datamodule.test_dataloader(), heads, target_to_shared, cfg, collector)
        scores = {"acc": accuracy_from_confmat(cm), "uar": uar_from_confmat(cm), "f1": f1_from_confmat(cm)}
        results |= {f"xdom/{target.name}/{k}": float(v) for k, v in scores.items()}
        outputs = collector.gather(across_ranks=False)  # this process alone scored the whole split
        if outputs is not None:
            records = datamodule.records
            rows = P.split_rows(records, "test")
            frame = P.prediction_frame(rows, target_to_shared[rows["head"].to_numpy()], outputs,
                                       P.records_root(records))
            if run_dir is not None:
                names = [L.class_names(cfg.data.space)[h] for h in heads]
                P.write_predictions(frame, Path(run_dir) / P.file_name("best", target.name),
                                    {"class_names": names, "root": P.records_root(records),
                                     "target_domain": target.name})
            intervals = P.metric_intervals(frame, len(heads), cfg.eval, target.data.cluster_by,
                                           prefix=f"xdom/{target.name}/")
            results |= {k: v for k, v in intervals.items() if k.startswith("xdom/")}
        log.info("xdom %s → %s: acc %.4f on %d images of %d shared classes", results["train_set"], target.name,
                 results[f"xdom/{target.name}/acc"], int(cm.sum()), len(heads))
    return results


def bgr_input(cfg: DictConfig, target: str) -> bool:
    """Whether ``target`` is scored on channel-reversed images (``eval.target_color=bgr``)."""
    e = cfg.eval
    return e.target_color == "bgr" and (not e.color_targets or target in e.color_targets)
