"""Export round-trips: ONNX Runtime and the exported torch programs agree with the PyTorch sub-network,
and the exported files load in a Python that cannot import supernas."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

import supernas as sn
from supernas.errors import ConfigError, SupernasError
from supernas.export import ExportError, export

ATOL = 1e-4


def _randomise_bn(net: nn.Module, seed: int) -> None:
    """Non-trivial BN statistics and affine weights, so outputs are far from zero and checks mean something."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(0.1 * torch.randn(n, generator=gen))
                m.running_var.copy_(0.5 + torch.rand(n, generator=gen))
                m.weight.copy_(0.5 + torch.rand(n, generator=gen))
                m.bias.copy_(0.2 * torch.randn(n, generator=gen))


def _small_mbv3() -> sn.Supernet:
    net = sn.create_supernet("mbv3", num_classes=10, image_size=32, width_mult=0.25, stem_stride=1,
                             depths=(1,), kernel_sizes=(3, 5), expand_ratios=(3, 4))
    _randomise_bn(net, 1)
    return net.eval()


def _small_resnet() -> sn.Supernet:
    net = sn.create_supernet("resnet", num_classes=10, image_size=32, small_input=True, base_depths=(1, 1, 1, 1),
                             depth_deltas=(0,), expand_ratios=(0.25, 0.35), width_mults=(0.25, 0.35))
    _randomise_bn(net, 2)
    return net.eval()


@pytest.fixture(scope="module")
def mbv3_export(tmp_path_factory):
    net = _small_mbv3()
    cfg = net.space.sample(seed=3)
    out = tmp_path_factory.mktemp("mbv3")
    return net, cfg, export(net, cfg, out / "knee.onnx", formats=("onnx", "torch"))


@pytest.fixture(scope="module")
def resnet_export(tmp_path_factory):
    net = _small_resnet()
    cfg = net.space.sample(seed=4)
    out = tmp_path_factory.mktemp("resnet")
    return net, cfg, export(net, cfg, out, formats=("onnx", "torchscript"), name="best-accuracy")


def _reference(net: sn.Supernet, cfg: dict, x: torch.Tensor) -> np.ndarray:
    sub = net.extract(cfg).eval()
    with torch.no_grad():
        return sub(x).numpy()


def _ort(path: Path, x: torch.Tensor) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]


@pytest.mark.slow
def test_mbv3_export_writes_checked_files(mbv3_export):
    net, cfg, result = mbv3_export
    assert result.passed and {c.format for c in result.checks} == {"onnx", "torch"}
    for check in result.checks:
        assert check.max_abs_diff <= ATOL and check.batch_sizes == (1, 3)
        assert check.max_abs_output > 1e-2  # the comparison is on non-trivial outputs
    assert set(result.files) == {"onnx", "torch", "state_dict", "config"}
    assert all(p.exists() and p.stat().st_size > 0 for p in result.files.values())
    assert result.files["onnx"].name == "knee.onnx" and result.name == "knee"
    meta = json.loads(result.files["config"].read_text())
    assert meta["config"] == net.space.validate(cfg) and meta["key"] == net.space.key(cfg)
    assert meta["supernet"]["family"] == "mbv3" and meta["input_shape"] == [1, 3, 32, 32]
    assert all(c["passed"] for c in meta["checks"]) and "onnx" in result.summary


@pytest.mark.slow
@pytest.mark.parametrize("fixture", ["mbv3_export", "resnet_export"])
def test_onnx_dynamic_batch_matches_pytorch_in_onnxruntime(fixture, request):
    net, cfg, result = request.getfixturevalue(fixture)
    model = onnx.load(str(result.files["onnx"]))
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert model.graph.output[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    gen = torch.Generator().manual_seed(11)
    for batch in (2, 5):  # batch sizes the export's own check did not use
        x = torch.randn(batch, 3, 32, 32, generator=gen)
        want = _reference(net, cfg, x)
        got = _ort(result.files["onnx"], x)
        assert got.shape == (batch, 10)
        assert np.max(np.abs(got - want)) <= ATOL


@pytest.mark.slow
def test_exported_files_load_without_supernas(mbv3_export, resnet_export, tmp_path):
    mb_net, mb_cfg, mb = mbv3_export
    rn_net, rn_cfg, rn = resnet_export
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    np.save(tmp_path / "x.npy", x.numpy())
    code = textwrap.dedent(f"""
        import json, sys
        sys.modules["supernas"] = None  # the editable install must not help: importing supernas fails
        try:
            import supernas
        except ImportError:
            pass
        else:
            raise SystemExit("supernas is importable")
        import numpy as np, torch
        x = torch.from_numpy(np.load("x.npy"))
        program = torch.export.load({str(mb.files["torch"])!r}).module()
        scripted = torch.jit.load({str(rn.files["torchscript"])!r})
        state = torch.load({str(mb.files["state_dict"])!r}, weights_only=True)
        meta = json.load(open({str(mb.files["config"])!r}))
        with torch.no_grad():
            np.save("mbv3.npy", program(x).numpy())
            np.save("resnet.npy", scripted(x).numpy())
        print(len(state), len(meta["config"]), "supernas" in sys.modules and sys.modules["supernas"] is None)
    """)
    proc = subprocess.run([sys.executable, "-I", "-c", code], cwd=tmp_path, capture_output=True, text=True,
                          timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    n_state, n_cfg, blocked = proc.stdout.split()
    assert blocked == "True" and int(n_cfg) == len(mb_net.space.validate(mb_cfg))
    assert int(n_state) == len(mb_net.extract(mb_cfg).state_dict())
    assert np.max(np.abs(np.load(tmp_path / "mbv3.npy") - _reference(mb_net, mb_cfg, x))) <= ATOL
    assert np.max(np.abs(np.load(tmp_path / "resnet.npy") - _reference(rn_net, rn_cfg, x))) <= ATOL


@pytest.mark.slow
def test_state_dict_rebuilds_the_subnetwork(resnet_export):
    net, cfg, result = resnet_export
    other = net.space.smallest() if net.space.key(cfg) != net.space.key(net.space.smallest()) \
        else net.space.largest()
    fresh = net.extract(other)
    sub = net.extract(cfg).eval()
    state = torch.load(result.files["state_dict"], weights_only=True)
    sub_shapes = {k: tuple(v.shape) for k, v in sub.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in state.items()} == sub_shapes
    assert {k: tuple(v.shape) for k, v in fresh.state_dict().items()} != sub_shapes
    assert all(torch.equal(state[k], v) for k, v in sub.state_dict().items())


def _tiny_module() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Hardswish(inplace=True),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)).eval()


def test_plain_module_torchscript_export_is_checked(tmp_path):
    module = _tiny_module()
    result = export(module, {"note": "hand-made"}, tmp_path, formats=("torchscript",), input_shape=(1, 3, 8, 8))
    assert result.passed and [c.format for c in result.checks] == ["torchscript"]
    assert result.files["torchscript"].name == "model.ts.pt" and not module.training
    assert json.loads(result.files["config"].read_text())["config"] == {"note": "hand-made"}


def test_failed_check_raises_export_error(tmp_path, monkeypatch):
    import supernas.export as ex

    real = ex._runner

    def off_by_a_little(fmt, path):
        runtime, run = real(fmt, path)
        return runtime, lambda x: run(x) + 1e-3

    monkeypatch.setattr(ex, "_runner", off_by_a_little)
    with pytest.raises(ExportError, match="torchscript .* max \\|diff\\| 1.00e-03 > 1e-04 FAILED"):
        export(_tiny_module(), None, tmp_path, formats=("torchscript",), input_shape=(1, 3, 8, 8))
    assert issubclass(ExportError, SupernasError)


@pytest.mark.parametrize("kwargs, message", [
    ({"formats": ("tflite",)}, "unknown export format 'tflite'"),
    ({"formats": ()}, "unknown export format"),
    ({"formats": ("torchscript",), "batch_sizes": (0,)}, "batch_sizes must be positive"),
])
def test_bad_arguments_raise_config_error(tmp_path, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        export(_tiny_module(), None, tmp_path, input_shape=(1, 3, 8, 8), **kwargs)


def test_plain_module_needs_input_shape_and_supernet_needs_valid_config(tmp_path):
    with pytest.raises(ConfigError, match="needs input_shape"):
        export(_tiny_module(), None, tmp_path, formats=("torchscript",))
    net = _small_mbv3()
    with pytest.raises(ConfigError, match="stage1.depth"):
        export(net, {**net.space.smallest(), "stage1.depth": 2}, tmp_path, formats=("torchscript",))
    with pytest.raises(ConfigError, match="Supernet or an nn.Module"):
        export("model", None, tmp_path)  # type: ignore[arg-type]
