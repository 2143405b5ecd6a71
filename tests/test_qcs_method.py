"""QCS as a fer-bench method: quadruplet batches, SAM's two updates per step, base-only evaluation, learning."""

import json

import pytest
import torch
from lightning.pytorch import Trainer

from fer_bench.config import build_config
from fer_bench.data.datamodule import FERDataModule
from fer_bench.engine import runner

TINY = ["method=qcs", "profile=cpu", "data.synth.subjects=30", "data.synth.per_subject=3", "data.synth.size=64",
        "data.synth.difficulty=easy", "data.num_workers=0", "data.batch_size=8", "method.dim=32",
        "method.image_size=64", "method.heads=2", "optim.lr=1e-3", "trainer.progress_bar=false", "logger.wandb=false"]


def _method_and_batch(*extra):
    cfg = build_config([*TINY, *extra])
    method = runner.build_method(cfg)
    dm = FERDataModule(cfg.data, method.data_needs(), seed=0)
    dm.setup()
    return cfg, method, dm, next(iter(dm.train_dataloader()))


def test_quadruplet_batches_pair_classes_as_the_sampler_promises():
    _, _, dm, batch = _method_and_batch()
    assert batch["images"].shape == (8, 4, 3, 64, 64)
    assert (batch["label"] != batch["neg_label"]).all()


def test_sam_step_changes_the_weights_twice_and_shares_one_trunk():
    cfg, method, dm, _ = _method_and_batch("optim.sam.enabled=true")
    weight = next(method.net.trunk.parameters())
    snapshots = [weight.detach().clone()]
    build_optimizers = method.configure_optimizers

    def record(step):
        def wrapped(*args, **kwargs):
            step(*args, **kwargs)
            snapshots.append(weight.detach().clone())
        return wrapped

    def configure_with_recording():
        out = build_optimizers()
        sam = out["optimizer"]
        sam.first_step, sam.second_step = record(sam.first_step), record(sam.second_step)
        return out

    method.configure_optimizers = configure_with_recording
    Trainer(max_epochs=1, limit_train_batches=1, limit_val_batches=0, accelerator="cpu", logger=False,
            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False).fit(method, dm)
    assert len(snapshots) == 3  # before, after first_step (w + e), after second_step (restored + stepped)
    before, perturbed, stepped = snapshots
    assert not torch.equal(before, perturbed) and not torch.equal(perturbed, stepped)
    assert not torch.equal(before, stepped)
    # one trunk serves all four branches
    assert sum(1 for m in method.modules() if type(m) is type(method.net.trunk)) == 1


@pytest.mark.slow
def test_qcs_learns_and_evaluation_never_touches_the_cross_modules(tmp_path):
    # 6 epochs: test acc 0.651 (12 epochs gave 0.937 for twice the CPU time; at 32 px QCS stays near 0.44)
    cfg = build_config([*TINY, "trainer.max_epochs=6", f"runs_dir={tmp_path / 'runs'}",
                        f"results_dir={tmp_path / 'results'}"])
    calls = {"csa": 0, "vit_cross": 0}
    original_build = runner.build_method

    def build_with_hooks(c):
        method = original_build(c)
        for name, module in (("csa", method.net.csa[0]), ("vit_cross", method.net.vit_cross)):
            module.register_forward_hook(lambda *_, n=name: calls.__setitem__(n, calls[n] + 1))
        return method

    runner.build_method = build_with_hooks
    try:
        run_dir = runner.train_one(cfg)
        assert calls["csa"] > 0 and calls["vit_cross"] > 0  # training used the cross path
        calls.update(csa=0, vit_cross=0)
        retest = runner.test_run(run_dir, "best")
    finally:
        runner.build_method = original_build
    assert calls == {"csa": 0, "vit_cross": 0}  # a whole Lightning test pass ran on the base branch alone
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert retest["test/acc"] == metrics["best"]["test/acc"]
    assert metrics["best"]["test/acc"] > 1 / 7 + 0.3, metrics


def test_manual_step_clips_the_gradient_norm_to_trainer_gradient_clip_val():
    cfg, method, dm, _ = _method_and_batch("trainer.gradient_clip_val=0.01")
    norms = []
    build_optimizers = method.configure_optimizers

    def configure_with_recording():
        out = build_optimizers()
        optimizer, step = out["optimizer"], out["optimizer"].step

        def recorded_step(*args, **kwargs):
            grads = [p.grad for p in method.parameters() if p.grad is not None]
            norms.append(float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))))
            return step(*args, **kwargs)

        optimizer.step = recorded_step
        return out

    method.configure_optimizers = configure_with_recording
    Trainer(max_epochs=1, limit_train_batches=2, limit_val_batches=0, accelerator="cpu", logger=False,
            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False).fit(method, dm)
    assert len(norms) == 2 and all(n <= 0.01 * (1 + 1e-4) for n in norms), norms
