"""INT8 sub-networks (supernas.quantize): valid ONNX Runtime graphs that agree with FP32, per-block policies that
change the graph, policy choices that round-trip, and quantized searches that resume."""
from __future__ import annotations

import collections

import numpy as np
import onnx
import pytest
import torch

import supernas as sn
from supernas import quantize as Q
from supernas.errors import ConfigError
from supernas.measure import Evaluator
from supernas.measure.onnx_model import NonFiniteOutput, OnnxModel

COLUMNS = ["accuracy", "latency_ms@onnxruntime", "bytes", "macs"]


@pytest.fixture(scope="module")
def digits_mbv3():
    """A small mbv3 trained 6 epochs on the embedded digits (about 10 s), and its data."""
    from supernas.data import load_dataset
    from supernas.train.trainer import train

    torch.manual_seed(0)
    data = load_dataset("digits", image_size=8, channels=1, seed=0)
    net = sn.create_supernet("mbv3", num_classes=10, image_size=8, in_channels=1, width_mult=0.25, stem_stride=1,
                             last_channels=64, depths=(1, 2), kernel_sizes=(3, 5), expand_ratios=(2, 4))
    train(net, data, epochs=6, batch_size=64, progress=False)
    return net.eval(), data


def _val_inputs(data):
    from supernas.data import loaders

    return [b[0] for b in loaders(data)[1]]


def _ops(model: OnnxModel) -> collections.Counter:
    return collections.Counter(n.op_type for n in onnx.load_from_string(model.model_bytes).graph.node)


def test_int8_mbv3_is_valid_and_agrees_with_fp32(digits_mbv3):
    net, data = digits_mbv3
    ev = Q.QuantizedEvaluator(net, COLUMNS, data=data, quantization="int8")
    arch, int8 = ev.deploy(net.space.largest())
    onnx.checker.check_model(onnx.load_from_string(int8.model_bytes))
    assert int8.precision == "int8" and _ops(int8)["QuantizeLinear"] > 0
    agree = Q.agreement(int8.float_model, int8, _val_inputs(data))
    assert agree["top1_agreement"] >= 0.95, agree
    assert 0 < agree["max_logit_diff"]  # quantized, not a copy of the FP32 graph
    values = ev.measure(arch, int8, int8.float_model)
    fp32 = Evaluator(net, COLUMNS, data=data)(arch)
    assert values["macs"] == fp32["macs"]  # the same products, counted on the architecture
    assert values["bytes"] < 0.5 * fp32["bytes"]  # INT8 weights
    assert abs(values["accuracy"] - fp32["accuracy"]) <= 0.05


def test_per_block_policy_excludes_the_blocks_nodes_from_quantization(digits_mbv3):
    net, data = digits_mbv3
    ev = Q.QuantizedEvaluator(net, ["bytes"], data=data, quantization="per-block")
    arch = net.space.largest()
    all_int8 = {c.name: "int8" for c in Q.precision_choices(net)}
    kept = ["stem", "stage2.block1"]
    _, mixed = ev.deploy({**arch, **all_int8, **{f"{b}.precision": "fp32" for b in kept}})
    assert mixed.precision == "mixed" and mixed.info["fp32_blocks"] == kept
    blocks = net.block_modules(arch)
    graph = onnx.load_from_string(mixed.model_bytes).graph
    produced_by = {o: n for n in graph.node for o in n.output}
    def weights_dequantized(conv) -> bool:  # weights read through DequantizeLinear: an INT8 convolution
        return any(produced_by.get(i) is not None and produced_by[i].op_type == "DequantizeLinear"
                   for i in conv.input[1:])

    def convs(block):
        return [n for n in graph.node if n.op_type == "Conv" and any(f"/{p}/" in n.name for p in blocks[block])]

    for b in kept:
        assert convs(b) and not any(weights_dequantized(c) for c in convs(b)), b
    assert convs("stage1.block1") and all(weights_dequantized(c) for c in convs("stage1.block1"))
    _, full = ev.deploy({**arch, **all_int8})
    assert _ops(mixed)["QuantizeLinear"] < _ops(full)["QuantizeLinear"]
    _, default = ev.deploy(arch)  # an architecture alone: all-INT8
    assert default.precision == "int8" and _ops(default) == _ops(full) and default.weight_bytes == full.weight_bytes
    _, fp32 = ev.deploy({**arch, **{c.name: "fp32" for c in Q.precision_choices(net)}})
    assert fp32.precision == "fp32" and _ops(fp32)["QuantizeLinear"] == 0


def test_scope_paths_follow_the_exporters_naming():
    # containers (Sequential, ModuleList) are named inside the enclosing module, others inside their parent
    assert Q.scope_paths("/1/blocks/blocks.0/dw/dw.0/Conv") == ["1", "1.blocks", "1.blocks.0", "1.blocks.0.dw",
                                                                "1.blocks.0.dw.0"]
    assert Q.scope_paths("/blocks.0/se/reduce/Conv") == ["blocks.0", "blocks.0.se", "blocks.0.se.reduce"]
    assert Q.scope_paths("/1/1.1/head/Conv") == ["1", "1.1", "1.1.head"]
    assert Q.scope_paths("Conv_3") == []


def test_per_block_policy_applies_behind_a_resolution_choice():
    """A space with a resolution choice extracts Sequential(InputResize, net): the blocks' nodes are found
    under the wrapper (the embedded default has such a space; every per-block deployment of it once failed)."""
    torch.manual_seed(0)
    net = sn.create_supernet("mbv3", num_classes=10, image_size=16, in_channels=1, width_mult=0.25, stem_stride=1,
                             depths=(1, 2), kernel_sizes=(3,), expand_ratios=(2,), resolutions=(12, 16)).eval()
    loader = [(torch.randn(8, 1, 16, 16), torch.zeros(8, dtype=torch.long)) for _ in range(2)]
    ev = Q.QuantizedEvaluator(net, ["bytes"], calib_loader=loader, calib_batches=0,
                              quantization={"policy": "per-block", "calib_batches": 2})
    arch = net.space.largest()
    blocks = net.block_modules(arch)
    assert blocks["stage2.block1"][0].startswith("1.")  # a path inside the wrapper
    all_int8 = {c.name: "int8" for c in Q.precision_choices(net)}
    _, mixed = ev.deploy({**arch, **all_int8, "stage2.block1.precision": "fp32"})
    _, full = ev.deploy({**arch, **all_int8})
    graph = onnx.load_from_string(mixed.model_bytes).graph
    kept = blocks["stage2.block1"][0].removeprefix("1.")  # blocks.N
    convs = [n for n in graph.node if n.op_type == "Conv" and f"/1/blocks/{kept}/" in n.name]
    produced_by = {o: n.op_type for n in graph.node for o in n.output}
    assert convs and all(produced_by.get(c.input[1]) != "DequantizeLinear" for c in convs)  # FP32 weights
    assert _ops(mixed)["QuantizeLinear"] < _ops(full)["QuantizeLinear"]
    # a smaller resolution: the graph is traced at 12 px, calibrated and fed at 12 px from 16 px images
    small = {**net.space.smallest(), "resolution": 12}
    _, deployed, float_model = ev.model(small)
    x = torch.randn(4, 1, 16, 16)
    assert deployed.precision == "int8" and tuple(deployed(x).shape) == (4, 10)
    assert Q.agreement(float_model, deployed, [x])["max_logit_diff"] < 0.5


def test_policy_choices_round_trip_and_follow_depth(small_mbv3):
    spec = Q.quantization_spec("per-block")
    space = Q.policy_space(small_mbv3, spec)
    extra = [c for c in space.choices if c.name.endswith(".precision")]
    assert [c.name for c in extra][0] == "stem.precision" and extra[-1].name == "head.precision"
    assert space.size() > small_mbv3.space.size()
    # INT8 is the default a sample departs from: one FP32 block per sub-network on average
    assert all(c.prior == (1 - 1 / len(extra), 1 / len(extra)) for c in extra)
    draws = [space.sample(seed=i) for i in range(600)]
    fp32 = [sum(v == "fp32" for k, v in d.items() if k.endswith(".precision")) for d in draws]
    active = [sum(k.endswith(".precision") for k in d) for d in draws]
    assert abs(np.mean(fp32) - np.mean(active) / len(extra)) < 0.1
    shared = Q.policy_space(small_mbv3, Q.quantization_spec({"policy": "per-block", "fp32_share": 0.5}))
    assert {c.prior for c in shared.choices if c.name.endswith(".precision")} == {(0.5, 0.5)}
    for seed in range(20):
        cfg = space.sample(seed=seed)
        assert space.decode(space.encode(cfg)) == space.validate(cfg)
        assert space.features(cfg).shape == (len(space.feature_names()),)
        arch, policy = Q.split_config(small_mbv3, cfg)
        assert set(policy) == set(small_mbv3.block_modules(arch))  # one precision per block that exists


def test_bert_dynamic_int8_agrees_with_fp32():
    torch.manual_seed(0)
    net = sn.create_supernet("bert", vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                             intermediate_size=64, max_position_embeddings=16, num_classes=3).eval()
    ids = [net.random_input((8, 12), torch.Generator().manual_seed(i)) for i in range(4)]
    loader = [(x, torch.zeros(len(x), dtype=torch.long)) for x in ids]
    ev = Q.QuantizedEvaluator(net, ["accuracy", "bytes"], eval_loader=loader, calib_loader=loader,
                              quantization="int8")
    assert ev.mode == "dynamic"
    _, int8 = ev.deploy(net.space.largest())
    onnx.checker.check_model(onnx.load_from_string(int8.model_bytes))
    ops = _ops(int8)
    assert ops["DynamicQuantizeLinear"] + ops["MatMulInteger"] > 0
    agree = Q.agreement(int8.float_model, int8, ids)
    assert agree["top1_agreement"] >= 0.95, agree


def test_quantized_search_resumes_without_measuring_again(digits_mbv3, tmp_path):
    net, data = digits_mbv3
    ev = Q.QuantizedEvaluator(net, ["accuracy", "bytes"], data=data, quantization="per-block",
                              cache_dir=tmp_path / "calib")
    calls = []

    def counted(cfg):
        calls.append(cfg)
        return ev(cfg)

    kw = dict(strategy="random", seed=0, store=tmp_path / "r.db", run="q", progress=False)
    first = sn.search.search(ev.space, counted, ["accuracy", "bytes"], evaluations=5, **kw)
    assert len(calls) == 5 and list((tmp_path / "calib").glob("*.json"))
    again = sn.search.search(ev.space, counted, ["accuracy", "bytes"], evaluations=5, **kw)
    assert len(calls) == 5 and again.keys == first.keys
    assert any(k.endswith("precision") for e in first.evaluations for k in e.config)


def test_non_finite_outputs_are_a_failed_evaluation(digits_mbv3):
    net, _ = digits_mbv3
    sub = net.extract(net.space.smallest()).eval()
    x = torch.zeros(2, *net.input_shape()[1:])
    from supernas.measure.onnx_model import onnx_bytes

    graph = onnx.load_from_string(onnx_bytes(sub, x, dynamic={0: "batch"}))
    for init in graph.graph.initializer:  # poison the classifier's bias
        if "classifier" in init.name and "bias" in init.name:
            arr = onnx.numpy_helper.to_array(init).copy()
            arr[:] = np.nan
            init.CopyFrom(onnx.numpy_helper.from_array(arr, init.name))
    model = OnnxModel(graph.SerializeToString(), sub)
    with pytest.raises(NonFiniteOutput, match="non-finite"):
        model(x)
    from supernas.search.evaluation import LocalPool

    out = next(LocalPool(lambda cfg: {"accuracy": float(model(x).sum())}, ["accuracy"], retries=0).map([{}]))
    assert not out.ok and "non-finite" in out.error


def test_bad_quantization_settings_say_what_is_wrong(digits_mbv3):
    net, data = digits_mbv3
    with pytest.raises(ConfigError, match="onnxruntime target"):
        Q.QuantizedEvaluator(net, ["latency_ms@cpu"], data=data, quantization="int8")
    with pytest.raises(ConfigError, match="policy"):
        Q.quantization_spec({"policy": "int4"})
    with pytest.raises(ConfigError, match="unknown block 'stage9.block1'"):
        Q.QuantizedEvaluator(net, ["bytes"], data=data, quantization={"policy": "int8", "keep_fp32": ["stage9.block1"]})
    with pytest.raises(ConfigError, match="peak_mem"):
        Q.QuantizedEvaluator(net, ["peak_mem@cpu"], data=data, quantization="int8")


def test_a_quantized_run_searches_exports_int8_and_reports(tmp_path, capsys):
    import json

    import yaml
    from cli_helpers import cli

    doc = {"name": "q", "out": str(tmp_path / "q"),
           "supernet": {"family": "mbv3", "args": {"width_mult": 0.25, "stem_stride": 1, "depths": [1, 2],
                                                    "kernel_sizes": [3, 5], "expand_ratios": [2, 4]}},
           "data": {"dataset": "digits", "image_size": 8},
           "train": {"epochs": 2, "batch_size": 32, "num_threads": 1, "eval_every": 0},
           "search": {"strategy": "random", "objectives": ["accuracy", "latency_ms@onnxruntime", "bytes"],
                      "evaluations": 5, "quantization": {"policy": "per-block", "calib_batches": 4}},
           "targets": {"onnxruntime": {"backend": "onnxruntime", "repeats": 10}},
           "export": {"picks": ["knee"], "formats": ["onnx"]}}
    path = tmp_path / "q.yaml"
    path.write_text(yaml.safe_dump(doc))
    code, err = cli(["run", "--config", path], capsys)
    assert code == 0, err
    info = json.loads((tmp_path / "q" / "knee.json").read_text())
    q = info["quantized"]
    assert (tmp_path / "q" / q["file"]).exists() and 0 <= q["top1_agreement"] <= 1
    assert set(q["policy"]) and all(v in Q.PRECISIONS for v in q["policy"].values())
    assert "test_accuracy" in info or "metrics" in info
    report = (tmp_path / "q" / "report.html").read_text()
    from supernas.run.paths import FP32_RUN, SEARCH_RUN
    from supernas.store import Store
    with Store(tmp_path / "q" / "results.db", readonly=True) as db:
        int8 = {r.key: r for r in db.records(SEARCH_RUN) if r.status == "ok"}
        fp32 = [r for r in db.records(FP32_RUN) if r.status == "ok"]
    assert fp32 and all(not any(k.endswith(".precision") for k in r.config) for r in fp32)  # architectures
    for r in fp32:  # the same architecture: FP32 bytes at least those of any of its (partly) INT8 graphs
        twins = [q for q in int8.values() if {k: v for k, v in q.config.items() if k in r.config} == r.config]
        assert twins and all(r.values["bytes"] >= q.values["bytes"] for q in twins)
    assert "FP32 (the INT8 front" in report and '"reference-front"' in report
    assert len(list((tmp_path / "q" / "plots").glob("front_*.png"))) == 3
    code, err = cli(["search", path], capsys)  # resumed: nothing measured again
    with Store(tmp_path / "q" / "results.db", readonly=True) as db:
        assert sorted((r.key, r.time) for r in db.records(FP32_RUN)) == sorted((r.key, r.time) for r in fp32)
    assert code == 0, err
    doc["search"]["quantization"] = {"policy": "int4"}
    path.write_text(yaml.safe_dump(doc))
    code, err = cli(["run", "--config", path, "--out", tmp_path / "bad"], capsys)
    assert code == 2 and "quantization" in err and "policy" in err and len(err.strip().splitlines()) == 1
    doc["search"]["quantization"] = {"policy": "int8"}
    doc["search"]["objectives"] = ["accuracy", "latency_ms@cpu"]
    doc["targets"] = {"cpu": {}}
    path.write_text(yaml.safe_dump(doc))
    code, err = cli(["run", "--config", path, "--out", tmp_path / "bad2"], capsys)
    assert code == 2 and "onnxruntime target" in err and not (tmp_path / "bad2").exists()
    doc["search"]["objectives"] = ["accuracy", "latency_ms@onnxruntime"]
    doc["search"]["options"] = {"features": ["base", "costs"]}
    path.write_text(yaml.safe_dump(doc))
    code, err = cli(["run", "--config", path, "--out", tmp_path / "bad3"], capsys)
    assert code == 2 and "features" in err and not (tmp_path / "bad3").exists()
