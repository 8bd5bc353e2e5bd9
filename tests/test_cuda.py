"""The CUDA paths: CUDA-event latency, CUDA peak memory, AMP training, checkpoints moving between devices.
Skipped without a GPU (CI has none); run on a GPU machine with ``python -m pytest tests/test_cuda.py``."""
from __future__ import annotations

import pytest
import torch

from supernas import create_supernet
from supernas.data import load_dataset
from supernas.measure import Evaluator, make_target, measure_latency, peak_activation_bytes, peak_memory
from supernas.measure.counting import count_bytes
from supernas.measure.lut import example_input, median_reference
from supernas.train import train
from supernas.train.checkpoint import load_checkpoint

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return create_supernet("mbv3", num_classes=10, image_size=32, width_mult=0.5).eval()


def test_cuda_latency_is_timed_by_events_and_leaves_the_model_where_it_was(net):
    spec = make_target({"name": "gpu", "backend": "cuda", "warmup": 3, "repeats": 10})
    cfg = net.space.largest()
    sub, x = net.extract(cfg).eval(), example_input(net, cfg, spec)
    res = measure_latency(sub, x, spec)
    assert len(res.times_ms) == 10 and all(t > 0 for t in res.times_ms) and res.drift is None
    assert next(sub.parameters()).device.type == "cpu"  # moved back after timing
    ref = median_reference(net)
    corrected = measure_latency(sub, x, spec, ref)  # alternating with the reference, on the GPU too
    assert len(corrected.times_ms) == 10 and corrected.drift > 0 and ref.baseline_ms["gpu"] > 0
    assert next(ref.model.parameters()).device.type == "cpu"  # the GPU copy is the reference's own
    big = make_target({"name": "gpu", "backend": "cuda", "batch_size": 256, "warmup": 3, "repeats": 10})
    assert measure_latency(sub, example_input(net, cfg, big), big).median_ms > 0


def test_cuda_peak_memory_covers_weights_input_and_activations(net):
    spec = make_target({"name": "gpu", "backend": "cuda", "batch_size": 64})
    cfg = net.space.largest()
    sub, x = net.extract(cfg).eval(), example_input(net, cfg, spec)
    gpu = peak_memory(sub, x, spec)
    traced = peak_activation_bytes(sub, x)  # the graph's own need, traced on the CPU
    assert gpu >= count_bytes(sub) + x.nbytes
    # the CUDA allocator rounds blocks up and cuDNN takes workspaces: more than the graph's need, same order
    assert 0.5 * (traced + count_bytes(sub)) <= gpu <= 20 * (traced + count_bytes(sub))


def test_evaluator_measures_cuda_columns(net):
    ev = Evaluator(net, ["latency_ms@cuda", "peak_mem@cuda", "macs"],
                   targets={"cuda": {"backend": "cuda", "warmup": 2, "repeats": 5}})
    out = ev(net.space.smallest())
    assert out["latency_ms@cuda"] > 0 and out["peak_mem@cuda"] > 0 and out["macs"] > 0
    assert set(ev.latency_baselines()) == {"cuda"}


def test_amp_training_on_cuda_then_checkpoint_loads_on_cpu(tmp_path):
    torch.manual_seed(0)
    data = load_dataset("digits", image_size=8, channels=1, seed=0)
    sn = create_supernet("mbv3", num_classes=10, image_size=8, in_channels=1, width_mult=0.25, stem_stride=1,
                         last_channels=64, depths=(1, 2), kernel_sizes=(3, 5), expand_ratios=(2, 4))
    before = {k: v.clone() for k, v in sn.state_dict().items()}
    res = train(sn, data, epochs=2, batch_size=64, device="cuda", amp=True, eval_every=1, progress=False,
                checkpoint_dir=tmp_path)
    assert next(sn.parameters()).device.type == "cuda"
    assert all(torch.isfinite(torch.tensor(r["loss_largest"])) for r in res.history)
    assert res.history[-1]["val_acc_largest"] > 0.5  # it learns (chance is 0.1)
    moved = [k for k, v in sn.state_dict().items() if v.is_floating_point() and not torch.equal(v.cpu(), before[k])]
    assert moved, "AMP training changed no weight"
    state = load_checkpoint(tmp_path / "last.pt", torch.device("cpu"))
    assert all(t.device.type == "cpu" for t in state["model"].values() if isinstance(t, torch.Tensor))
    assert state["scaler"].get("scale", 0) > 0  # the gradient scaler ran: mixed precision was on
    cpu_net = create_supernet("mbv3", num_classes=10, image_size=8, in_channels=1, width_mult=0.25, stem_stride=1,
                              last_channels=64, depths=(1, 2), kernel_sizes=(3, 5), expand_ratios=(2, 4))
    cpu_net.load_state_dict(state["model"])
    cpu_net.eval()
    x = data.val.tensors[0][:16]
    cfg = cpu_net.space.largest()
    cpu_net.set_active(cfg)
    with torch.no_grad():
        ref = cpu_net(x)
        assert torch.allclose(cpu_net.extract(cfg).eval()(x), ref, atol=1e-5)
        sn.eval().set_active(cfg)
        tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False  # exact fp32 on the GPU
        try:
            on_gpu = sn(x.cuda()).cpu()
        finally:
            torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32
        assert torch.allclose(on_gpu, ref, atol=1e-4)  # the same weights on both devices
