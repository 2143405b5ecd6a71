"""CAFE / clip_gfer (Zhang et al., ECCV 2024): the CLIP tower and its checkpoint conversion, the frozen tower, the mask
range, the channel losses against hand computations, the optimiser, and learning on synthetic faces."""

import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fer_bench.config import build_config
from fer_bench.engine import runner
from fer_bench.methods.clip_gfer import module as clip_gfer_module
from fer_bench.methods.clip_gfer.losses import ChannelGroups, diversity_loss, separation_loss
from fer_bench.methods.clip_gfer.net import MaskNet
from fer_bench.models.clip_tower import create_clip_vit

TINY = ["method=clip_gfer", "profile=cpu", "data.synth.subjects=20", "data.synth.per_subject=2",
        "data.synth.size=32", "data.synth.difficulty=easy", "data.image_size=32", "data.num_workers=0",
        "data.batch_size=16", "trainer.progress_bar=false", "logger.wandb=false"]

# A toy OpenAI-layout CLIP visual tower: width 32, 1 block, 2 heads, patch 16 on 32 px (2x2 grid), 24-d output.
WIDTH, HEADS, PATCH, SIZE, OUT = 32, 2, 16, 32, 24
GRID = SIZE // PATCH


def _openai_state(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)

    def r(*shape, scale=0.2):
        return torch.randn(*shape, generator=g) * scale

    w = WIDTH
    state = {"visual.class_embedding": r(w), "visual.positional_embedding": r(GRID * GRID + 1, w),
             "visual.proj": r(w, OUT), "visual.conv1.weight": r(w, 3, PATCH, PATCH, scale=0.05),
             "visual.ln_pre.weight": 1 + r(w), "visual.ln_pre.bias": r(w),
             "visual.ln_post.weight": 1 + r(w), "visual.ln_post.bias": r(w),
             "logit_scale": torch.tensor(4.6), "token_embedding.weight": r(10, w)}  # text side: ignored
    block = "visual.transformer.resblocks.0."
    state |= {block + "attn.in_proj_weight": r(3 * w, w), block + "attn.in_proj_bias": r(3 * w),
              block + "attn.out_proj.weight": r(w, w), block + "attn.out_proj.bias": r(w),
              block + "ln_1.weight": 1 + r(w), block + "ln_1.bias": r(w),
              block + "ln_2.weight": 1 + r(w), block + "ln_2.bias": r(w),
              block + "mlp.c_fc.weight": r(4 * w, w), block + "mlp.c_fc.bias": r(4 * w),
              block + "mlp.c_proj.weight": r(w, 4 * w), block + "mlp.c_proj.bias": r(w)}
    return state


def _openai_reference(s: dict[str, torch.Tensor], images: torch.Tensor) -> torch.Tensor:
    """OpenAI CLIP's VisionTransformer.forward written out: patches, class token, ln_pre, one residual block with
    QuickGELU, ln_post on the class token, projection."""
    def ln(x, name):
        return F.layer_norm(x, (WIDTH,), s[f"visual.{name}.weight"], s[f"visual.{name}.bias"], eps=1e-5)

    x = F.conv2d(images, s["visual.conv1.weight"], stride=PATCH).flatten(2).transpose(1, 2)
    cls = s["visual.class_embedding"].expand(x.shape[0], 1, WIDTH)
    x = ln(torch.cat([cls, x], 1) + s["visual.positional_embedding"], "ln_pre")
    b = "transformer.resblocks.0."
    h = ln(x, b + "ln_1")
    q, k, v = (h @ s[f"visual.{b}attn.in_proj_weight"].T + s[f"visual.{b}attn.in_proj_bias"]).chunk(3, -1)
    split = [t.reshape(x.shape[0], -1, HEADS, WIDTH // HEADS).transpose(1, 2) for t in (q, k, v)]
    att = torch.softmax(split[0] @ split[1].transpose(-1, -2) / math.sqrt(WIDTH // HEADS), -1) @ split[2]
    att = att.transpose(1, 2).reshape(x.shape)
    x = x + att @ s[f"visual.{b}attn.out_proj.weight"].T + s[f"visual.{b}attn.out_proj.bias"]
    h = ln(x, b + "ln_2") @ s[f"visual.{b}mlp.c_fc.weight"].T + s[f"visual.{b}mlp.c_fc.bias"]
    h = h * torch.sigmoid(1.702 * h)
    x = x + h @ s[f"visual.{b}mlp.c_proj.weight"].T + s[f"visual.{b}mlp.c_proj.bias"]
    return ln(x[:, 0], "ln_post") @ s["visual.proj"]


class _Holder(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def _torchscript_archive(state: dict[str, torch.Tensor], path) -> None:
    """A TorchScript archive holding ``state`` under its dotted names, like OpenAI's ViT-B-32.pt (fp16)."""
    root = _Holder()
    for key, value in state.items():
        *parents, leaf = key.split(".")
        node = root
        for part in parents:
            if not hasattr(node, part):
                node.add_module(part, _Holder())
            node = getattr(node, part)
        node.register_parameter(leaf, nn.Parameter(value, requires_grad=False))
    with pytest.warns(FutureWarning):  # torch.jit.script is deprecated, and still how OpenAI's files are made
        torch.jit.save(torch.jit.script(root), str(path))


def _tower(weights=None):
    return create_clip_vit(weights=weights, image_size=SIZE, out_dim=OUT, embed_dim=WIDTH, depth=1, heads=HEADS,
                           patch_size=PATCH).eval()


@pytest.mark.parametrize("layout", ["openai", "open_clip", "torchscript_fp16"])
def test_clip_checkpoints_convert_to_timm_and_match_the_openai_forward(layout, tmp_path):
    state = _openai_state()
    path = tmp_path / "clip.pt"
    if layout == "openai":
        torch.save(state, path)
    elif layout == "open_clip":  # open_clip training checkpoints: {"state_dict": {"module.visual....": ...}}
        torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    else:
        state = {k: v.half().float() for k, v in state.items()}  # the reference sees the fp16-rounded weights
        _torchscript_archive({k: v.half() for k, v in state.items()}, path)
    images = torch.randn(3, 3, SIZE, SIZE)
    with torch.no_grad():
        out = _tower(path)(images)
    assert out.shape == (3, OUT)
    torch.testing.assert_close(out, _openai_reference(state, images), atol=1e-5, rtol=1e-5)


def test_bad_clip_weights_name_the_file_and_the_keys(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        _tower(tmp_path / "nope.pt")
    state = _openai_state()
    del state["visual.ln_post.bias"]
    torch.save(state, tmp_path / "cut.pt")
    with pytest.raises(ValueError, match=r"cut\.pt.*missing: norm\.bias"):
        _tower(tmp_path / "cut.pt")
    torch.save({"visual.class_embedding": torch.zeros(WIDTH + 1)}, tmp_path / "wrong.pt")
    with pytest.raises(ValueError, match="wrong.pt"):
        _tower(tmp_path / "wrong.pt")


def test_toy_tower_builds_offline_with_clip_scale_features():
    tower = create_clip_vit(image_size=64, embed_dim=64, depth=2, heads=2)
    out = tower(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 512)  # ViT-B/32's projection width unless out_dim says otherwise
    assert 0.3 < out.abs().mean() < 3  # OpenAI's init of the projection: CLIP-like scale (|F| ≈ 0.8)


def _method(*extra):
    cfg = build_config([*TINY, *extra])
    return runner.build_method(cfg), cfg


def test_frozen_tower_gets_no_gradient_stays_in_eval_and_is_unchanged_after_a_step():
    method, _ = _method()
    tower = method.net.tower
    before = {k: v.clone() for k, v in tower.state_dict().items()}
    method.train()
    assert not tower.training and not tower.vit.training and method.net.mask.training
    optimizer = method.configure_optimizers()["optimizer"]
    in_optimizer = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert not in_optimizer & {id(p) for p in tower.parameters()}
    assert in_optimizer == {id(p) for p in [*method.net.mask.parameters(), *method.net.fc.parameters()]}
    images, labels = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    assert tower(images).grad_fn is None  # no graph through CLIP
    loss, _, _ = method.losses(images, labels)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    assert all(p.grad is None and not p.requires_grad for p in tower.parameters())
    assert all(torch.equal(before[k], v) for k, v in tower.state_dict().items())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in method.net.mask.parameters())


def test_variants_choose_what_trains():
    probe, _ = _method("method.variant=linear_probe")
    assert probe.net.mask is None
    assert {id(p) for p in probe.trainable_parameters()} == {id(p) for p in probe.net.fc.parameters()}
    tuned, cfg = _method("method.variant=finetune", "method.finetune_lr=1e-5")
    groups = tuned.configure_optimizers()["optimizer"].param_groups
    assert [g["lr"] for g in groups] == [cfg.optim.lr, 1e-5]
    assert {id(p) for p in groups[1]["params"]} == {id(p) for p in tuned.net.tower.parameters()}
    tuned.train()
    assert tuned.net.tower.training and all(p.requires_grad for p in tuned.net.tower.parameters())
    with pytest.raises(ValueError, match="'method.variant' = 'prompt'"):  # the config refuses it
        _method("method.variant=prompt")


def test_paper_optimiser_adam_with_weight_decay_and_lr_times_0_9_per_epoch():
    method, _ = _method("optim.lr=2e-4")
    assert (method.cfg.optim.name, method.cfg.optim.weight_decay, method.cfg.sched.name, method.cfg.sched.gamma) == \
        ("adam", 1e-4, "exponential", 0.9)
    opt = method.configure_optimizers()
    optimizer, scheduler = opt["optimizer"], opt["lr_scheduler"]["scheduler"]
    assert isinstance(optimizer, torch.optim.Adam) and optimizer.param_groups[0]["weight_decay"] == 1e-4
    for epoch in range(3):
        assert optimizer.param_groups[0]["lr"] == pytest.approx(2e-4 * 0.9 ** epoch)
        optimizer.step()
        scheduler.step()


def test_mask_lies_in_half_to_one():
    mask_net = MaskNet("test_resnet", 96).eval()
    with torch.no_grad():
        mask = mask_net(torch.randn(8, 3, 48, 48) * 3)
    assert mask.shape == (8, 96) and mask.min() >= 0.5 and mask.max() < 1.0
    with pytest.raises(ValueError, match="not a multiple"):
        MaskNet("test_resnet", 512)


FIXED = torch.tensor([[0.1, 0.5, 0.2, 0.9, 0.3, 0.4, 0.6, 0.7, 0.8, 5.0],
                      [0.4, 0.3, 0.2, 0.1, 0.6, 0.5, 0.2, 0.9, 0.3, 5.0]])
DROP = torch.tensor([1.0, 0, 1, 1, 1, 0, 0, 1, 1, 1])


def test_channel_losses_equal_a_hand_computation():
    groups = ChannelGroups(10, 3)  # c = 3: windows [0, 3), [3, 6), [6, 9); channel 9 never pooled
    labels = torch.tensor([1, 2])
    torch.testing.assert_close(groups.group_max(FIXED), torch.tensor([[0.5, 0.9, 0.8], [0.4, 0.6, 0.9]]))
    # dropped maxima: row 0 [0.2, 0.9, 0.8], row 1 [0.4, 0.6, 0.9]; CE with the raw values as logits
    sep = ((math.log(math.exp(0.2) + math.exp(0.9) + math.exp(0.8)) - 0.9)
           + (math.log(math.exp(0.4) + math.exp(0.6) + math.exp(0.9)) - 0.9)) / 2
    assert separation_loss(FIXED, labels, groups, DROP).item() == pytest.approx(sep, rel=1e-6)
    total = 0.5 + 0.9 + 0.8 + 0.4 + 0.6 + 0.9
    assert diversity_loss(FIXED, groups).item() == pytest.approx(1 - total / 6 / 3, rel=1e-6)  # code: mean / c
    assert diversity_loss(FIXED, groups, "paper").item() == pytest.approx(1 - total / (2 * 3), rel=1e-6)  # Eq. 8
    paper_groups = ChannelGroups(10, 3, "paper")  # the last group takes channel 9
    assert paper_groups.group_max(FIXED)[:, 2].tolist() == [5.0, 5.0]
    bumped = FIXED.clone()
    bumped[:, 9] = -3.0  # the unpooled channel changes neither loss
    assert separation_loss(bumped, labels, groups, DROP) == separation_loss(FIXED, labels, groups, DROP)
    assert diversity_loss(bumped, groups) == diversity_loss(FIXED, groups)


def test_drop_mask_has_ten_zeros_per_group_and_is_seeded():
    groups = ChannelGroups(512, 7)
    assert groups.width == 73
    g = torch.Generator().manual_seed(3)
    first, second = groups.drop_mask(10, g), groups.drop_mask(10, g)
    starts = [73 * i for i in range(7)] + [512]
    for mask in (first, second):
        assert [int((mask[a:b] == 0).sum()) for a, b in zip(starts, starts[1:], strict=False)] == [10] * 7
        assert set(mask.unique().tolist()) == {0.0, 1.0}
    assert not torch.equal(first, second)
    assert torch.equal(first, groups.drop_mask(10, torch.Generator().manual_seed(3)))


def test_total_loss_and_inference_path(monkeypatch):
    method, cfg = _method()
    method.train()
    images, labels = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 6])
    generator = method.drop_generator(images.device)
    state = generator.get_state()
    loss, logits, terms = method.losses(images, labels)
    generator.set_state(state)
    drop = method.groups.drop_mask(cfg.method.drop, generator)
    with torch.no_grad():
        features, mask = method.net.parts(images)
    masked = features * mask
    expected = (F.cross_entropy(method.net.fc(masked), labels) + 1.5 * separation_loss(masked, labels, method.groups,
                drop) + 5.0 * diversity_loss(masked, method.groups))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert set(terms) == {"train/l_cls", "train/l_sep", "train/l_div", "train/mask_mean"}
    calls = []
    monkeypatch.setattr(clip_gfer_module, "cafe_loss", lambda *a: calls.append(a))
    method.eval()
    with torch.no_grad():
        torch.testing.assert_close(method(images), method.net.fc(method.net.tower(images) * method.net.mask(images)))
    assert calls == []  # the channel losses are training-only


@pytest.mark.slow
def test_cafe_learns_synthetic_faces(tmp_path):
    """The tiny random tower's features barely depend on the image, so the mask branch carries the signal."""
    # 32 px, 10 epochs: test acc 0.698 (64 px and 16 epochs gave 0.817 for twice the CPU time)
    cfg = build_config([*TINY, "data.synth.subjects=30", "data.synth.per_subject=3", "trainer.max_epochs=10",
                        f"runs_dir={tmp_path / 'runs'}", f"results_dir={tmp_path / 'results'}"])
    run_dir = runner.train_one(cfg)
    best = json.loads((run_dir / "metrics.json").read_text())["best"]
    assert best["test/acc"] > 1 / 7 + 0.25, best


def test_drop_mask_generator_travels_with_the_checkpoint():
    """A resumed run draws the drop masks an uninterrupted one would (tests/test_methods.py resumes a whole run)."""
    running, _ = _method()
    generator = running.drop_generator(torch.device("cpu"))
    running.groups.drop_mask(10, generator)
    checkpoint = {}
    running.on_save_checkpoint(checkpoint)
    expected = running.groups.drop_mask(10, generator)
    resumed, _ = _method()
    resumed.on_load_checkpoint(checkpoint)
    assert torch.equal(resumed.groups.drop_mask(10, resumed.drop_generator(torch.device("cpu"))), expected)
    fresh, _ = _method()
    assert not torch.equal(fresh.groups.drop_mask(10, fresh.drop_generator(torch.device("cpu"))), expected)
