"""QCS's side of ``fer-bench perf``: its trunk goes on the shared timm backbone, the plain-PyTorch quadruplet loss,
inference cost against the base branch alone, and the cost of a quadruplet step against a baseline step."""

from __future__ import annotations

import statistics
import time

import torch

from fer_bench.methods.qcs.net import qcs_loss

# The config key that puts the method on the benchmark's shared timm backbone.
BACKBONE_KEY = "method.trunk"
# Targets this method adds: name -> (comparison, bound). A step sees 4 images per quadruplet, so 4x a baseline
# step plus the cross-similarity attention is the expected cost; at test time only the base branch runs.
TARGETS = {"qcs_inference_vs_base_branch": ("<=", 1.05), "qcs_quadruplet_vs_baseline_step": ("<=", 4.5)}
# Targets that divide this method's training step by another method's (measured in the same run).
RELATIVE_STEP = {"qcs_quadruplet_vs_baseline_step": "baseline"}


def plain_loss(method, batch: dict) -> torch.Tensor:
    """The quadruplet cross-similarity loss of one batch of quadruplets."""
    images = [x.contiguous(memory_format=torch.channels_last) for x in batch["images"].unbind(1)]
    base, cross = method.net.forward_quadruplet(*images[: method.net.branches])
    return qcs_loss(base, cross, batch["label"], batch["neg_label"])[0]


class _BaseBranchOnly(torch.nn.Module):
    """QCS's inference modules assembled without the rest of the network: the reference for its test-time cost."""

    def __init__(self, net):
        super().__init__()
        self.trunk, self.tokens, self.vit_base, self.head_base = net.inference_modules()

    def forward(self, x):
        return self.head_base(self.vit_base(self.tokens(self.trunk(x)))[0])


def targets(run) -> list[tuple[str, float, str]]:
    """QCS ``forward`` vs its base branch alone: same weights and input, ``2 * reps`` interleaved repetitions."""
    method, batch = run.method, run.inference_batch
    size = method.cfg.method.image_size
    images = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(1))
    images = images.contiguous(memory_format=torch.channels_last)
    base = _BaseBranchOnly(method.net).eval()
    method.eval()
    seconds: dict = {method: [], base: []}
    with torch.no_grad():
        for fn in seconds:  # warm-up
            fn(images)
        for _ in range(2 * run.reps):
            for fn, samples in seconds.items():
                started = time.perf_counter()
                fn(images)
                samples.append(time.perf_counter() - started)
    full, alone = (statistics.median(s) for s in seconds.values())
    return [("qcs_inference_vs_base_branch", full / alone,
             f"{full * 1e3:.1f} vs {alone * 1e3:.1f} ms per batch of {batch}")]
