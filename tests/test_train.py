"""Supernet training: sandwich sampling, distillation, progressive phases, checkpoints, resume, NaN guard."""
from __future__ import annotations

import random
from collections import Counter

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, TensorDataset

import supernas as sn
from supernas.errors import CheckpointError, ConfigError
from supernas.train import (TrainConfig, TrainingError, distillation_loss, load_checkpoint, load_supernet,
                            progressive_phases, sample_by_choice, sandwich_step, step_configs, student_loss, train,
                            zero_init_residual)
from supernas.train.sampling import step_rng

TINY = dict(num_classes=10, image_size=8, in_channels=1, width_mult=0.25, stem_stride=1, dropout=0.0,
            depths=(1, 2), kernel_sizes=(3, 5), expand_ratios=(2, 4))
FAST = dict(epochs=2, batch_size=16, num_random=1, progress=False, lr=0.05, eval_every=0, seed=3)


def tiny_net(seed: int = 0) -> sn.Supernet:
    torch.manual_seed(seed)
    return sn.create_supernet("mbv3", **TINY)


@pytest.fixture(scope="module")
def tiny_data():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(32, 1, 8, 8, generator=g), torch.randint(0, 10, (32,), generator=g)
    return TensorDataset(x, y), TensorDataset(x[:16], y[:16])


# ------------------------------------------------------------------------------------------ sampling
def test_sandwich_configs_are_largest_smallest_then_random():
    space = tiny_net().space
    cfgs = step_configs(space, "sandwich", 3, step_rng(0, 0, 0))
    assert cfgs[0] == space.largest() and cfgs[1] == space.smallest() and len(cfgs) == 5
    assert all(space.validate(c) == c for c in cfgs[2:])
    again = step_configs(space, "sandwich", 3, step_rng(0, 0, 0))
    assert again == cfgs  # a step's sub-networks depend on (seed, epoch, step) only
    others = [step_configs(space, "sandwich", 3, step_rng(0, 0, s))[2:] for s in range(1, 6)]
    assert any(o != cfgs[2:] for o in others)
    assert step_configs(space, "largest", 3, random.Random(0)) == [space.largest()]
    assert step_configs(space, "random", 2, random.Random(0))[0] == space.largest()


def test_choice_sampler_draws_depths_uniformly():
    space = sn.create_supernet("mbv3", num_classes=10, image_size=32, width_mult=0.25).space
    rng = random.Random(0)
    by_choice = Counter(sample_by_choice(space, rng)["stage1.depth"] for _ in range(600))
    by_net = Counter(space.sample(rng=rng)["stage1.depth"] for _ in range(600))
    assert all(150 <= by_choice[d] <= 250 for d in (2, 3, 4))  # ~200 each
    assert by_net[2] < 30  # uniform over sub-networks: depth 2 is 81x rarer than depth 4


def test_progressive_phases_restrict_the_space():
    space = tiny_net().space
    phases = progressive_phases(space, 8)
    assert [p.name for p in phases] == ["full", "kernel", "depth", "expand"]
    assert [(p.start_epoch, p.end_epoch) for p in phases] == [(0, 2), (2, 4), (4, 6), (6, 8)]
    sizes = [p.space.size() for p in phases]
    assert sizes[0] == 1 and sizes == sorted(sizes) and sizes[-1] == space.size()
    # the first phase holds one sub-network: a sandwich step trains it once, not once per slot
    assert step_configs(phases[0].space, "sandwich", 3, step_rng(0, 0, 0)) == [space.largest()]
    assert len(step_configs(phases[1].space, "sandwich", 3, step_rng(0, 0, 0))) == 5
    kernel_phase = phases[1].space
    for _ in range(20):
        cfg = sample_by_choice(kernel_phase, random.Random(_))
        assert all(v == space[k].options[-1] for k, v in cfg.items() if not k.endswith(".kernel"))
        space.validate(cfg)
    resnet = sn.create_supernet("resnet", num_classes=10, image_size=8, small_input=True,
                                base_depths=(1, 1, 1, 1), depth_deltas=(0, 1), width_mults=(0.25, 0.5))
    assert [p.name for p in progressive_phases(resnet.space, 3)] == ["full", "depth", "expand"]
    with pytest.raises(ConfigError, match="phase_epochs needs 3 entries"):
        progressive_phases(resnet.space, 3, [1, 1, 1, 0])


# -------------------------------------------------------------------------------------------- losses
def test_distillation_loss_is_kl_and_does_not_touch_teacher():
    g = torch.Generator().manual_seed(1)
    s = torch.randn(5, 7, generator=g, requires_grad=True)
    t = torch.randn(5, 7, generator=g, requires_grad=True)
    p_t = F.softmax(t / 2, -1)
    manual = (p_t * (p_t.log() - F.log_softmax(s / 2, -1))).sum(-1).mean() * 4
    loss = distillation_loss(s, t, temperature=2.0)
    assert torch.allclose(loss, manual, atol=1e-6) and float(loss.detach()) > 0
    loss.backward()
    assert t.grad is None and s.grad is not None
    assert float(distillation_loss(t.detach(), t.detach())) == pytest.approx(0.0, abs=1e-6)


def test_student_loss_mixes_distillation_and_labels():
    g = torch.Generator().manual_seed(4)
    s, t, y = torch.randn(6, 10, generator=g), torch.randn(6, 10, generator=g), torch.randint(0, 10, (6,), generator=g)
    kd, ce = distillation_loss(s, t, 2.0), F.cross_entropy(s, y, label_smoothing=0.1)
    assert torch.allclose(student_loss(s, t, y, 2.0), kd)  # KD only by default (BigNAS)
    assert torch.allclose(student_loss(s, t, y, 2.0, 1.0, 0.1), ce)
    assert torch.allclose(student_loss(s, t, y, 2.0, 0.25, 0.1), 0.75 * kd + 0.25 * ce)
    assert not torch.allclose(kd, ce)  # the three cases are distinguishable


def test_zero_init_residual_makes_deeper_sub_networks_start_like_shallower_ones():
    net = tiny_net().train()
    x = torch.randn(8, 1, 8, 8, generator=torch.Generator().manual_seed(5))
    deep = dict(net.space.largest())
    shallow = net.space.validate({**{k: v for k, v in deep.items() if ".block2." not in k},
                                  **{k: 1 for k in deep if k.endswith(".depth")}})
    outs = []
    for cfg in (deep, shallow):
        net.set_active(cfg)
        outs.append(net(x))
    assert not torch.allclose(outs[0], outs[1], atol=1e-4)  # default init: depth changes the function
    assert zero_init_residual(net) == 6  # first block + the second block of each of the 5 stages
    outs = []
    for cfg in (deep, shallow):
        net.set_active(cfg)
        outs.append(net(x))
    assert torch.allclose(outs[0], outs[1], atol=1e-5)
    static = tiny_net().extract(deep)
    assert zero_init_residual(static) == 6  # extracted static networks have the same blocks


@pytest.mark.parametrize("block", ["basic", "bottleneck"])
def test_zero_init_residual_covers_every_resnet_block(block):
    net = sn.create_supernet("resnet", num_classes=3, image_size=8, small_input=True, base_depths=(1, 1, 1, 1),
                             depth_deltas=(0, 1), width_mults=(0.25, 0.5), block=block).train()
    x = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    deep = dict(net.space.largest())
    shallow = net.space.validate({**deep, **{k: 1 for k in deep if k.endswith(".depth")}})
    assert zero_init_residual(net) == 8  # every block, the projecting first blocks included
    outs = []
    for cfg in (deep, shallow):
        net.set_active(cfg)
        outs.append(net(x))
    assert torch.allclose(outs[0], outs[1], atol=1e-5)


def test_training_applies_zero_init_residual_only_when_asked(tiny_data):
    def residual_scales(net):
        return [float(m.project_bn.weight.detach().abs().max()) for m in net.modules()
                if getattr(m, "residual", False) is True and hasattr(m, "project_bn")]

    kw = dict(FAST, epochs=1, lr=1e-9, num_random=0)  # the weights barely move
    on, off = tiny_net(), tiny_net()
    train(on, tiny_data, zero_init_residual=True, **kw)
    train(off, tiny_data, **kw)
    assert residual_scales(on) and max(residual_scales(on)) < 1e-6
    assert min(residual_scales(off)) > 0.5


def test_training_on_mixed_batches_learns_from_label_probabilities():
    """MixUp/CutMix batches carry (B, classes) label probabilities: the teacher's cross-entropy, the students'
    label term and validation (class indices) all take them."""
    from supernas.data import load_digits_bundle

    data = load_digits_bundle(image_size=8, seed=0)
    data.mixup, data.cutmix = 0.5, 0.5
    assert next(iter(data.train_loader(16, seed=3)))[1].shape == (16, 10)
    result = train(tiny_net(), data, **dict(FAST, epochs=1, eval_every=1, distill_label_weight=0.5))
    row = result.last()
    assert torch.isfinite(torch.tensor([row["loss_largest"], row["loss_others"]])).all()
    assert 0 <= row["val_acc_largest"] <= 1


def test_sandwich_step_accumulates_every_pass():
    net = tiny_net().train()
    cfg = TrainConfig(distill=True, label_smoothing=0.1, distill_label_weight=0.3)
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(8, 1, 8, 8, generator=g), torch.randint(0, 10, (8,), generator=g)
    cfgs = step_configs(net.space, "sandwich", 2, step_rng(0, 0, 0))
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    import contextlib
    from supernas.train.distributed import DistInfo
    losses = sandwich_step(net, net, cfgs, x, y, cfg, scaler, contextlib.nullcontext, DistInfo())
    together = {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}
    net.zero_grad(set_to_none=True)
    expected: dict[str, torch.Tensor] = {}
    net.set_active(cfgs[0])
    teacher = net(x).detach()
    for i, c in enumerate(cfgs):
        net.zero_grad(set_to_none=True)
        net.set_active(c)
        out = net(x)
        loss = (F.cross_entropy(out, y, label_smoothing=0.1) if i == 0 else
                0.7 * distillation_loss(out, teacher) + 0.3 * F.cross_entropy(out, y, label_smoothing=0.1))
        assert float(loss.detach()) == pytest.approx(losses[i], rel=1e-5)
        loss.backward()
        for n, p in net.named_parameters():
            if p.grad is not None:
                expected[n] = expected.get(n, 0) + p.grad
    assert together.keys() == expected.keys()
    for n in expected:
        assert torch.allclose(together[n], expected[n], atol=1e-5), n


# ---------------------------------------------------------------------------------- config validation
@pytest.mark.parametrize("kw, word", [({"optimizer": "lion"}, "optimizer"), ({"epochs": 0}, "epochs"),
                                      ({"epochs": 3, "phase_epochs": [1, 1]}, "phase_epochs"),
                                      ({"colour": 1}, "colour")])
def test_bad_train_settings_are_one_line_config_errors(kw, word):
    with pytest.raises(ConfigError, match=word) as e:
        TrainConfig.make(**kw)
    assert "\n" not in str(e.value)


# ------------------------------------------------------------------------- checkpoints and resume
class Interrupt(Exception):
    pass


class Faulty(Dataset):
    """Wraps a dataset; after ``after`` item reads it returns NaN inputs."""

    def __init__(self, base: Dataset, after: int) -> None:
        self.base, self.after, self.reads = base, after, 0

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i):
        self.reads += 1
        x, y = self.base[i]
        if self.reads > self.after:
            x = x * float("nan")
        return x, y


def test_resume_after_interruption_gives_bit_identical_weights(tmp_path, tiny_data, monkeypatch):
    import supernas.train.trainer as trainer

    settings = dict(FAST, epochs=3, warmup_epochs=1, eval_every=1)
    full = tiny_net()
    r_full = train(full, tiny_data, checkpoint_dir=tmp_path / "a", **settings)
    assert r_full.epochs_done == 3 and (tmp_path / "a" / "metrics.jsonl").read_text().count("\n") == 3
    steps_per_epoch = len(tiny_data[0]) // FAST["batch_size"]
    real_step, calls = trainer.sandwich_step, []

    def crashing_step(*args, **kwargs):
        calls.append(1)
        if len(calls) > steps_per_epoch + 1:  # dies in the middle of the second epoch
            raise Interrupt("simulated crash")
        return real_step(*args, **kwargs)

    monkeypatch.setattr(trainer, "sandwich_step", crashing_step)
    with pytest.raises(Interrupt):
        train(tiny_net(), tiny_data, checkpoint_dir=tmp_path / "b", **settings)
    monkeypatch.setattr(trainer, "sandwich_step", real_step)
    assert load_checkpoint(tmp_path / "b")["epoch"] == 0
    resumed = tiny_net(seed=99)  # different init: everything must come from the checkpoint
    r = train(resumed, tiny_data, checkpoint_dir=tmp_path / "b", resume=True, **settings)
    assert r.resumed_from == 1 and r.epochs_done == 3
    a, b = full.state_dict(), resumed.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [h["loss_largest"] for h in r.history] == [h["loss_largest"] for h in r_full.history]
    assert r.history[-1]["val_acc_largest"] == r_full.history[-1]["val_acc_largest"]


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, tiny_data):
    train_ds, val_ds = tiny_data
    net = tiny_net()
    with pytest.raises(TrainingError, match="loss became nan") as e:
        train(net, (Faulty(train_ds, int(len(train_ds) * 1.2)), val_ds), checkpoint_dir=tmp_path, **FAST)
    assert "\n" not in str(e.value)
    state = load_checkpoint(tmp_path)
    assert state["epoch"] == 0
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_checkpoint_is_weights_only_and_rebuilds_the_supernet(tmp_path, tiny_data):
    net = tiny_net()
    train(net, tiny_data, checkpoint_dir=tmp_path, **dict(FAST, epochs=1))
    raw = torch.load(tmp_path / "last.pt", weights_only=True)
    assert raw["format"] == "supernas-checkpoint" and raw["arch"]["family"] == "mbv3"
    assert {"model", "optimizer", "scheduler", "rng", "epoch", "config", "history"} <= raw.keys()
    again = load_supernet(tmp_path / "last.pt")
    assert type(again) is type(net) and tuple(again.arch["depths"]) == (1, 2)
    x = torch.randn(2, 1, 8, 8)
    cfg = net.space.sample(seed=5)
    assert torch.equal(net.eval().extract(cfg)(x), again.extract(cfg)(x))
    assert not list(tmp_path.glob("*.tmp"))  # the atomic write left no temp file


def test_bad_checkpoints_raise_checkpoint_error(tmp_path, tiny_data):
    net = tiny_net()
    train(net, tiny_data, checkpoint_dir=tmp_path / "ok", **dict(FAST, epochs=1))
    good = (tmp_path / "ok" / "last.pt").read_bytes()
    (tmp_path / "trunc.pt").write_bytes(good[: len(good) // 2])
    (tmp_path / "junk.pt").write_bytes(b"\x00garbage" * 10)
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.pt")
    for name, msg in [("trunc.pt", "truncated or corrupt"), ("junk.pt", "truncated or corrupt"),
                      ("foreign.pt", "not a supernas checkpoint"), ("missing.pt", "does not exist")]:
        with pytest.raises(CheckpointError, match=msg) as e:
            load_supernet(tmp_path / name)
        assert "\n" not in str(e.value)
    other = sn.create_supernet("mbv3", **dict(TINY, width_mult=0.5))
    with pytest.raises(CheckpointError, match="another supernet"):
        train(other, tiny_data, checkpoint_dir=tmp_path / "ok", resume=True, **dict(FAST, epochs=2))


@pytest.mark.slow
def test_progressive_training_walks_the_phases(tiny_data):
    net = tiny_net()
    r = train(net, tiny_data, **dict(FAST, epochs=4, progressive=True, eval_every=2, num_random=0))
    assert [h["phase"] for h in r.history] == ["full", "kernel", "depth", "expand"]
    assert "val_acc_smallest" in r.history[1] and "val_acc_smallest" not in r.history[0]
    assert all(h["loss_largest"] > 0 for h in r.history)


def test_default_run_supernet_is_seeded_by_the_run_and_leaves_the_global_rng_alone():
    from supernas.run import build_supernet, default_config, load_data

    cfg = default_config()
    data = load_data(cfg)
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = build_supernet(cfg.model_copy(update={"seed": 5}), data)
    after = torch.rand(1)
    assert torch.equal(before, after)
    b = build_supernet(cfg.model_copy(update={"seed": 5}), data)
    c = build_supernet(cfg.model_copy(update={"seed": 6}), data)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)  # same seed, same initial supernet
    assert any(not torch.equal(sa[k], sc[k]) for k in sa)


def test_training_speed_projection_from_the_first_steps():
    """Steps 2-6 take 2.5 s for 5 x 64 images: 128 images/s, and 100 steps project to 50 s."""
    from supernas.train.trainer import _Speed

    clock = iter([0.0, 10.0, 12.5])  # start, end of step 1, end of step 6
    speed = _Speed(images_per_step=64, steps_left=100, clock=lambda: next(clock))
    lines = [speed.step(done) for done in range(1, 8)]
    assert lines[:5] == [None] * 5 and lines[6] is None
    assert "128 training images/s" in lines[5] and "projected training time 50 s for 100 steps" in lines[5]
    clock = iter([0.0, 1.0, 2.0])  # a training shorter than 6 steps projects at its last step
    short = _Speed(images_per_step=10, steps_left=3, clock=lambda: next(clock))
    assert [short.step(d) for d in (1, 2)] == [None, None] and "20 training images/s over steps 2-3" in short.step(3)


def test_a_grown_training_resumes_at_the_next_epoch_on_the_longer_schedule(tmp_path, tiny_data):
    settings = dict(FAST, warmup_epochs=1, eval_every=0)
    train(tiny_net(), tiny_data, checkpoint_dir=tmp_path / "grow", **dict(settings, epochs=2))
    grown = train(tiny_net(seed=5), tiny_data, checkpoint_dir=tmp_path / "grow", resume=True,
                  **dict(settings, epochs=4))
    assert grown.resumed_from == 2 and grown.epochs_done == 4
    assert load_supernet(tmp_path / "grow").trained_epochs == 4 and tiny_net().trained_epochs is None
    planned = train(tiny_net(), tiny_data, **dict(settings, epochs=4))  # planned with 4 epochs from the start
    assert [h["lr"] for h in grown.history[2:]] == pytest.approx([h["lr"] for h in planned.history[2:]])
    assert grown.history[1]["lr"] != pytest.approx(planned.history[1]["lr"])  # the first two ran the 2-epoch plan


@pytest.mark.parametrize("cpu_amp, native, dtype", [("off", True, torch.float32), ("bf16", False, torch.bfloat16),
                                                     ("auto", True, torch.bfloat16), ("auto", False, torch.float32)])
def test_cpu_amp_autocasts_training_to_bfloat16_where_asked(tiny_data, monkeypatch, cpu_amp, native, dtype):
    from supernas.train import trainer
    monkeypatch.setattr(trainer, "cpu_has_native_bf16", lambda: native)

    def resnet():  # dense convolutions: bit-reproducible in bfloat16 (PyTorch's depthwise backward is not)
        torch.manual_seed(0)
        return sn.create_supernet("resnet", num_classes=10, image_size=8, in_channels=1, small_input=True,
                                  base_depths=(1, 1, 1, 1), depth_deltas=(0, 1), width_mults=(0.25, 0.5))

    net, seen = resnet(), set()
    net.register_forward_hook(lambda m, i, out: seen.add(out.dtype))  # the logits: from an autocast matmul
    result = train(net, tiny_data, cpu_amp=cpu_amp, device="cpu", **dict(FAST, epochs=1))
    assert seen == {dtype}
    assert result.last()["precision"] == str(dtype).removeprefix("torch.")
    assert all(p.dtype == torch.float32 for p in net.parameters())  # autocast: the weights stay float32
    again = resnet()
    train(again, tiny_data, cpu_amp=cpu_amp, device="cpu", **dict(FAST, epochs=1))
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), again.state_dict().values()))
