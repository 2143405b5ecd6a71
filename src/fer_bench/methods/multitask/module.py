"""HSEmotion multitask backbones (Savchenko, arXiv 2403.11590): expression + valence + arousal.

Stage 2 of the pipeline. One ``Linear(D, C + 2)`` head; loss = class-weighted CE + (1 − CCC_V)/2 + (1 − CCC_A)/2,
each term over the samples that carry its label. Manual optimisation so that SAM can take its two passes (Foret et
al., ICLR 2021). Phase A (``method.head_epochs``) trains the head alone at ``method.head_lr`` with the backbone frozen
(its BatchNorm in train mode by default, as HSEmotion: ``method.head_phase_bn``); phase B starts from the best
phase-A epoch (``method.restore_head_best``) and trains all layers at ``optim.lr``; no scheduler. The last partial
batch of an epoch is skipped (the recipe's ``drop_last=True``). With ``method.weights`` of an expression-only
model (a converted ``enet_b2_8``, say) the head is ``Linear(D, C)``: no V/A terms, metrics or outputs.

Evaluation adds to the shared classification metrics: ``acc7`` (drop Contempt images and logit), ``ccc_v``,
``ccc_a`` and their mean ``va`` (population CCC over the whole split, V/A clipped to [−1, 1]). At test time, when the
data has AU labels, the stage-4 AU head (``method.au_head``) is fitted on frozen train embeddings, its per-AU
thresholds tuned on val, and the test split scored: ``au_f1``, the all-positive reference ``au_f1_all_pos``,
ABAW's ``expr_f1`` (macro F1 over all classes) and the combined ``mtl`` = va + expr_f1 + au_f1 (metrics/abaw.py).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch.utils.data import DataLoader

from fer_bench import labels as L
from fer_bench.data.datamodule import DataNeeds
from fer_bench.data.transforms import eval_transform
from fer_bench.methods.base import STAGES, FERMethod
from fer_bench.methods.multitask.downstream import tasks
from fer_bench.methods.multitask.downstream.extract import embed_loader
from fer_bench.methods.multitask.net import build_from_config, class_weights, multitask_loss
from fer_bench.methods.optim import build_optimizer
from fer_bench.metrics import AUF1, CCC, ClassificationMetrics, tune_thresholds
from fer_bench.metrics.classification import f1_from_confmat


def drop_class(logits: torch.Tensor, labels: torch.Tensor, index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and labels without class ``index`` (its images and its logit removed, later labels shifted down):
    the 7-class accuracy of an 8-class model without Contempt (as HSEmotion reports it)."""
    keep = labels != index
    others = [i for i in range(logits.shape[1]) if i != index]
    kept = labels[keep]
    return logits[keep][:, others], kept - (kept > index).long()


class Multitask(FERMethod):
    ddp_find_unused_parameters = True  # phase A freezes the backbone after DDP has wrapped the model

    def __init__(self, cfg, class_names):
        super().__init__(cfg, class_names)
        m = cfg.method
        if cfg.sched.name != "none":
            raise ValueError(f"sched.name={cfg.sched.name!r}: multitask keeps each phase's learning rate constant "
                             "(method.head_lr, then optim.lr) as HSEmotion does; set sched.name=none")
        self.automatic_optimization = False
        self.net, self.info = build_from_config(cfg)
        self.register_buffer("class_weight", torch.ones(self.num_classes))
        space = L.space(cfg.data.space)
        contempt = L.expression_id("contempt")
        self.contempt = space.index(contempt) if contempt in space and self.num_classes > 2 else None
        self.acc7 = torch.nn.ModuleDict({s: ClassificationMetrics(self.num_classes - 1) for s in STAGES})
        self.va_metrics = torch.nn.ModuleDict({s: CCC(num_outputs=2) for s in STAGES})
        self.au_settings = tasks.resolve(m.au_head, "method.au_head")
        self.au_f1 = AUF1(len(self.au_settings.aus))
        self.au_f1_all_pos = AUF1(len(self.au_settings.aus), threshold=0.0)
        self.au_head: torch.nn.Module | None = None
        self.au_columns: list[int] = []
        self.train_batch = 0
        self.head_best: tuple[float, dict] | None = None  # (selection accuracy, net state) of the best phase-A epoch

    def data_needs(self) -> DataNeeds:
        return DataNeeds(self.info.image_size, self.info.mean, self.info.std)

    def forward(self, images):
        """Expression logits (the inference path of every FER method)."""
        return self.net.split(self.net(images))[0]

    def inference_outputs(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits, and valence/arousal clipped to [−1, 1] when the head has them."""
        logits, va = self.net.split(self.net(images))
        if va is None:
            return {"logits": logits}
        va = va.clamp(-1, 1)
        return {"logits": logits, "valence": va[:, 0], "arousal": va[:, 1]}

    def compile_targets(self) -> list[torch.nn.Module]:
        return [self.net]

    # training --------------------------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        super().setup(stage)
        if stage != "fit":
            return
        dm = self.trainer.datamodule
        labels = dm.datasets["train"].label
        self.class_weight.copy_(class_weights(torch.bincount(labels, minlength=self.num_classes)))
        self.train_batch = dm.per_device_batch(self.cfg.data.batch_size)
        per_device = -(-len(labels) // self.trainer.world_size)
        if per_device < self.train_batch:
            raise ValueError(f"data.batch_size={self.cfg.data.batch_size} exceeds the {len(labels)} training images: "
                             "every batch would be dropped (drop_last)")

    def configure_optimizers(self):
        head_cfg = OmegaConf.merge(self.cfg.optim, {"lr": self.cfg.method.head_lr})
        return [build_optimizer(self.net.head.parameters(), head_cfg), build_optimizer(self.net.parameters(),
                                                                                       self.cfg.optim)]

    def head_phase(self) -> bool:
        return self.current_epoch < self.cfg.method.head_epochs

    def on_train_epoch_start(self) -> None:
        m = self.cfg.method
        if self.current_epoch == m.head_epochs and self.head_best is not None:
            self.net.load_state_dict(self.head_best[1])  # phase B starts from the best phase-A epoch
            self.head_best = None
        self.net.freeze_backbone(self.head_phase(), bn_train=m.head_phase_bn == "train")

    def on_validation_epoch_end(self) -> None:
        """In phase A, keep the network of the epoch with the best selection accuracy (val; test_epoch when the
        run has no val split) for phase B (``method.restore_head_best``)."""
        stage = "val" if self.eval_metrics["val"].update_count else "test_epoch"
        if (self.cfg.method.restore_head_best and not self.trainer.sanity_checking and self.head_phase()
                and self.eval_metrics[stage].update_count):
            acc = float(self.eval_metrics[stage].compute()["acc"])
            if self.head_best is None or acc > self.head_best[0]:
                self.head_best = (acc, {k: v.detach().clone() for k, v in self.net.state_dict().items()})
        super().on_validation_epoch_end()

    def _loss(self, batch):
        logits, va = self.net.split(self.net(batch["image"]))
        m = self.cfg.method
        weight = self.class_weight if m.class_weights else None
        va_target = batch.get("va") if va is not None else None
        total, parts = multitask_loss(logits, va, batch["label"], va_target, weight, m.label_smoothing)
        return total, {f"train/{k}": v for k, v in parts.items()}

    def training_step(self, batch, batch_idx):
        if len(batch["label"]) < self.train_batch:
            return None  # drop_last
        optimizer = self.optimizers()[0 if self.head_phase() else 1]
        total, parts = self.manual_step(optimizer, lambda: self._loss(batch))
        self.log_dict({"train/loss": total, **parts}, prog_bar=True, batch_size=len(batch["label"]))
        return total

    # evaluation ------------------------------------------------------------------------------------------------
    def _eval_step(self, batch: dict, stage: str) -> dict[str, torch.Tensor]:
        embedding = self.net.embed(batch["image"])
        scores = self.net.scores(embedding)
        logits, va = self.net.split(scores)
        labels = batch["label"]
        self.eval_metrics[stage].update(logits.detach(), labels)
        self.log(f"{stage}/loss", F.cross_entropy(logits, labels), on_step=False, on_epoch=True, sync_dist=True,
                 batch_size=len(labels), add_dataloader_idx=False)
        if self.contempt is not None:
            logits7, labels7 = drop_class(logits, labels, self.contempt)
            if len(labels7):
                self.acc7[stage].update(logits7, labels7)
        outputs = {"logits": logits}
        if va is not None:  # an expression-only network has no valence/arousal outputs
            va = va.clamp(-1, 1)
            outputs |= {"valence": va[:, 0], "arousal": va[:, 1]}
            if "va" in batch:
                known = tasks.va_known(batch["va"])
                if known.any():
                    self.va_metrics[stage].update(va[known], batch["va"][known])
        if stage == "test" and self.au_head is not None:
            probs = self._update_au(embedding if self.au_settings.inputs == "embedding" else scores, batch["au"])
            outputs |= {f"au_{a}": probs[:, j] for j, a in enumerate(self.au_settings.aus)}
        return outputs

    def _update_au(self, features: torch.Tensor, au: torch.Tensor) -> torch.Tensor:
        """Score every image with the AU head, update the AU metrics on those with all AUs labelled; returns the
        AU probabilities (B, A)."""
        target, known = tasks.au_targets(au[:, self.au_columns].cpu().numpy(), self.au_settings.au_presence)
        probs = tasks.predict(self.au_settings, self.au_head, features.float().cpu()).to(self.device)
        if known.any():
            known = torch.as_tensor(known, device=self.device)
            target = torch.as_tensor(target, device=self.device)[known]
            self.au_f1.update(probs[known], target)
            self.au_f1_all_pos.update(probs[known], target)
        return probs

    def _log_epoch_metrics(self, stage: str) -> dict[str, float]:
        values = super()._log_epoch_metrics(stage)
        extra = {}
        # gates every rank agrees on: a rank without, say, V/A labels still joins the sync of the CCC states
        acc7_seen, va_seen, au_seen = self.updated_anywhere(self.acc7[stage], self.va_metrics[stage], self.au_f1)
        if acc7_seen:
            extra["acc7"] = self.acc7[stage].compute()["acc"]
            self.acc7[stage].reset()
        if va_seen:
            extra["ccc_v"], extra["ccc_a"] = self.va_metrics[stage].compute().tolist()
            extra["va"] = (extra["ccc_v"] + extra["ccc_a"]) / 2
            self.va_metrics[stage].reset()
        if stage == "test" and au_seen:
            extra["au_f1"], extra["au_f1_all_pos"] = self.au_f1.compute(), self.au_f1_all_pos.compute()
            self.au_f1.reset()
            self.au_f1_all_pos.reset()
            if "va" in extra:  # ABAW's combined score (metrics.abaw.mtl_score) from the whole-split states
                extra["expr_f1"] = f1_from_confmat(self.eval_metrics[stage].confmat(), all_classes=True)
                extra["mtl"] = extra["va"] + extra["expr_f1"] + extra["au_f1"]
        extra = {f"{stage}/{k}": float(v) for k, v in extra.items()}
        if extra:
            self.log_dict(extra)
        return {**values, **extra}

    # stage 4 at test time: the AU head on frozen features ------------------------------------------------------
    def on_test_start(self) -> None:
        self.au_head = None
        dm = self.trainer.datamodule
        present = [c for c in L.AU_COLUMNS if c in dm.records]  # the columns of batch["au"] (FERDataset)
        if not present:
            return
        missing = [f"au{a}" for a in self.au_settings.aus if f"au{a}" not in present]
        if missing:
            raise ValueError(f"method.au_head.aus: {', '.join(missing)} not in data set '{dm.cfg.name}' "
                             f"(it has {', '.join(present)})")
        self.au_columns = [present.index(f"au{a}") for a in self.au_settings.aus]
        with torch.inference_mode(False), torch.enable_grad():  # the test loop runs under inference mode
            head, thresholds = self.fit_au_head(dm)
        head, thresholds = self.trainer.strategy.broadcast((head, thresholds), src=0)  # one head on every rank
        self.au_head = head
        self.au_f1.threshold = thresholds.float()

    def on_test_end(self) -> None:
        self.au_head = None  # out of the state_dict before the next checkpoint is loaded into this module

    def fit_au_head(self, dm) -> tuple[torch.nn.Module, torch.Tensor]:
        """Fit the AU head on the train split's frozen features, select its epoch and tune per-AU thresholds on
        the val split; the test split is never seen here."""
        needs = self.data_needs()
        train = copy.copy(dm.datasets["train"])
        train.transform = eval_transform(needs.image_size, needs.mean, needs.std)  # features without augmentation
        split = {}
        for name, dataset in (("train", train), ("val", dm.datasets["val"])):
            loader = DataLoader(dataset, batch_size=dm.cfg.eval_batch_size or dm.cfg.batch_size,
                                num_workers=dm.cfg.num_workers)
            embeddings, scores = embed_loader(self.net, loader, self.device)
            x = embeddings if self.au_settings.inputs == "embedding" else scores
            target, known = tasks.au_targets(dataset.au[:, self.au_columns].numpy(), self.au_settings.au_presence)
            split[name] = (x[known], torch.as_tensor(target[known]))
        if not all(len(x) for x, _ in split.values()):
            raise ValueError("method.au_head: the train and val splits need images with every AU of "
                             "method.au_head.aus labelled")
        head = tasks.train_head(self.au_settings, *split["train"], *split["val"], len(self.au_columns))
        val_x, val_y = split["val"]
        return head, tune_thresholds(tasks.predict(self.au_settings, head, val_x), val_y)

