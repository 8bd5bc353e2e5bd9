"""Measurement: objective registry, target specs, latency backends, memory, accuracy, LUT, Evaluator."""
from __future__ import annotations

import math
import pickle
import statistics
import time

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from supernas import create_supernet
from supernas.errors import ConfigError
from supernas.measure import (Evaluator, LatencyTable, TargetSpec, TargetUnavailable, count_macs, count_params,
                              evaluate_accuracy, make_target, measure_latency, peak_activation_bytes,
                              peak_memory, register_objective, resolve_targets)
from supernas.measure.latency import _time_alternating, _time_calls, clock_timer
from supernas.measure.lut import example_input, unit_calls, units
from supernas.measure.objectives import _OBJECTIVES, direction, get_objective, sign

FAST = {"warmup": 1, "repeats": 3}



@pytest.fixture(scope="module")
def tiny_data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(96, 3, 16, 16, generator=g)
    y = torch.randint(0, 10, (96,), generator=g)
    ds = TensorDataset(x, y)
    return DataLoader(ds, batch_size=32), DataLoader(ds, batch_size=48)


# ------------------------------------------------------------------------------ registry
def test_builtin_objectives_and_directions():
    assert direction("accuracy") == "max" and direction("top5") == "max"
    for col in ("macs", "params", "bytes", "latency_ms@cpu", "peak_mem@cuda"):
        assert direction(col) == "min" and sign(col) == 1.0
    assert sign("accuracy") == -1.0
    assert get_objective("latency_ms@onnxruntime").per_target
    for name in ("accuracy", "top5", "macs", "params", "bytes", "latency_ms", "peak_mem"):
        assert get_objective(name).fn is not None, name  # bound to a measuring function
    with pytest.raises(ConfigError, match="unknown objective 'nope'"):
        get_objective("nope@cpu")
    with pytest.raises(ConfigError, match="direction"):
        register_objective("x", "up")


def test_user_objective_is_measured_by_the_evaluator(tiny_net):
    @register_objective("depth_sum", "min", description="total depth")
    def depth_sum(ctx):
        return sum(v for k, v in ctx.config.items() if k.endswith(".depth"))

    try:
        ev = Evaluator(tiny_net, ["depth_sum", "params"])
        cfg = tiny_net.space.smallest()
        out = ev(cfg)
        assert out["depth_sum"] == sum(v for k, v in cfg.items() if k.endswith(".depth"))
        assert direction("depth_sum") == "min"
    finally:
        _OBJECTIVES.remove("depth_sum")


# ------------------------------------------------------------------------------ targets
def test_target_spec_validation():
    t = make_target({"name": "fast", "backend": "cpu", "threads": 2, "batch_size": 4})
    assert t.threads == 2 and t.shape((3, 8, 8)) == (4, 3, 8, 8)
    assert make_target("cpu").backend == "cpu" and make_target("onnxruntime").backend == "onnxruntime"
    assert make_target({"threads": 3}, "cpu").backend == "cpu"  # refines the built-in
    assert make_target("cpu", "cpu4").name == "cpu4"
    for bad, msg in [({"name": "x", "backend": "tpu"}, "backend"), ({"name": "x", "backend": "cpu", "threads": 0},
                     "threads"), ({"name": "x", "backend": "cpu", "repeats": 0}, "repeats"),
                     ({"name": "x", "backend": "cpu", "thread": 2}, "thread"), ({"name": "x"}, "backend"),
                     ({"name": "a b", "backend": "cpu"}, "name"), ({"name": "x", "backend": "cpu", "clock": "cpu"},
                     "clock"), ({"name": "x", "backend": "cpu", "threads": 2, "clock": "thread"}, "threads: 1")]:
        with pytest.raises(ConfigError, match=msg) as e:
            make_target(bad)
        assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="unknown target 'tpu'"):
        make_target("tpu")
    got = resolve_targets({"mine": {"backend": "cpu", "batch_size": 2}}, ["mine", "cpu"])
    assert got["mine"].batch_size == 2 and got["cpu"] == make_target("cpu")
    with pytest.raises(ConfigError, match="unknown target 'gpu7'"):
        resolve_targets({}, ["gpu7"])


# ------------------------------------------------------------------------------ latency / memory
def _mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 5)).eval()


def test_cpu_latency_restores_threads_and_reports_spread():
    prev = torch.get_num_threads()
    spec = make_target({"name": "c", "backend": "cpu", "threads": 1, "warmup": 1, "repeats": 7})
    res = measure_latency(_mlp(), torch.zeros(2, 20), spec)
    assert torch.get_num_threads() == prev
    assert len(res.times_ms) == 7 and all(t > 0 for t in res.times_ms)
    assert res.min_ms <= res.median_ms and res.spread_ms >= 0
    assert set(res.summary()) >= {"median_ms", "spread_ms", "min_ms", "max_ms"}


def test_onnxruntime_latency_path_runs():
    model = _mlp()
    spec = make_target({"name": "ort", "backend": "onnxruntime", **FAST})
    res = measure_latency(model, torch.zeros(2, 20), spec)
    assert len(res.times_ms) == 3 and res.median_ms > 0
    assert not model.training


def test_clock_choice_follows_threads_and_backend():
    assert make_target({"name": "a", "backend": "cpu", "threads": 1}).uses_thread_clock
    assert make_target({"name": "a", "backend": "onnxruntime", "threads": 1}).uses_thread_clock
    assert not make_target({"name": "a", "backend": "cpu", "threads": 4}).uses_thread_clock
    assert not make_target({"name": "a", "backend": "cpu", "clock": "wall"}).uses_thread_clock
    assert not make_target("cuda").uses_thread_clock


class _DriftingMachine:
    """A fake clock and two fake models: the model costs 3 units, the reference 2, times a machine speed
    that changes every 30 calls (as a shared VM's does every few seconds), so plain timing varies 3x."""

    def __init__(self) -> None:
        self.now, self.calls = 0.0, 0
        self.speeds = [1.0, 1.0, 2.5, 2.5, 2.5, 1.2, 3.0, 3.0, 1.0]

    def _run(self, units: float) -> None:
        self.now += units * self.speeds[(self.calls // 30) % len(self.speeds)] / 1e3  # clock is in seconds
        self.calls += 1

    def model(self) -> None:
        self._run(3.0)

    def reference(self) -> None:
        self._run(2.0)

    def clock(self) -> float:
        return self.now


def test_drift_correction_cancels_machine_speed_changes():
    m = _DriftingMachine()
    plain = _time_calls(m.model, 0, 300, clock_timer(m.clock))
    assert max(plain) / min(plain) == pytest.approx(3.0)  # the drift the correction must remove
    times, drift = _time_alternating(m.model, m.reference, 2.0, 2, 120, clock_timer(m.clock))
    assert len(times) == 120
    # corrected to the reference's baseline speed (2 ms = speed 1): the model's 3 units at speed 1
    assert statistics.median(times) == pytest.approx(3.0, rel=0.05)
    assert drift > 1.0  # the machine ran slower than the baseline on average


def test_evaluator_latency_is_drift_corrected_with_one_baseline_per_run(tiny_net, tmp_path):
    from supernas.search import search
    from supernas.store import Store

    spec = {"cpu": {"backend": "cpu", "threads": 1, "warmup": 1, "repeats": 4}}
    ev = Evaluator(tiny_net, ["latency_ms@cpu", "macs"], targets=spec)
    ev(tiny_net.space.smallest())
    base = ev.latency_baselines()
    assert set(base) == {"cpu"} and base["cpu"] > 0
    assert pickle.loads(pickle.dumps(ev)).latency_baselines() == base  # Ray workers share the baseline
    db = tmp_path / "r.db"
    search(tiny_net, ev, ["latency_ms@cpu", "macs"], strategy="random", evaluations=3, store=db, progress=False)
    with Store(db) as st:
        assert st.run_meta("search")["latency_baselines"] == base
    fresh = Evaluator(tiny_net, ["latency_ms@cpu", "macs"], targets=spec)  # a resumed session
    search(tiny_net, fresh, ["latency_ms@cpu", "macs"], strategy="random", evaluations=4, store=db,
           progress=False)
    assert fresh.latency_baselines() == base  # the stored baseline, not a new calibration
    wall = Evaluator(tiny_net, ["latency_ms@cpu"], targets={"cpu": {"backend": "cpu", "drift_correction": False}})
    assert wall.reference is None and wall.latency_baselines() == {}


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU path")
def test_cuda_target_is_cleanly_unavailable(tiny_net):
    with pytest.raises(TargetUnavailable, match="no CUDA device"):
        measure_latency(_mlp(), torch.zeros(1, 20), make_target("cuda"))
    with pytest.raises(TargetUnavailable, match="no CUDA device"):
        Evaluator(tiny_net, ["latency_ms@cuda"])
    assert not make_target("cuda").available() and make_target("cpu").available()


def test_peak_activation_bytes_follows_live_tensors():
    x = torch.zeros(8, 20)
    h, o = 8 * 64 * 4, 8 * 5 * 4
    # input, first linear's output, relu's output live together (the Sequential keeps its input alive)
    assert peak_activation_bytes(_mlp(), x) == x.nbytes + 2 * h
    inplace = nn.Sequential(nn.Linear(20, 64), nn.ReLU(inplace=True), nn.Linear(64, 5))
    assert peak_activation_bytes(inplace, x) == x.nbytes + h + o
    spec = make_target("cpu")
    assert peak_memory(inplace, x, spec) == peak_activation_bytes(inplace, x) + sum(
        p.nbytes for p in inplace.parameters())


# ------------------------------------------------------------------------------ accuracy
def test_accuracy_on_a_synthetic_problem():
    g = torch.Generator().manual_seed(1)
    w = torch.randn(8, 10, generator=g)
    x = torch.randn(200, 8, generator=g)
    y = (x @ w).argmax(1)
    y_noisy = y.clone()
    y_noisy[:50] = (y_noisy[:50] + 1) % 10
    model = nn.Linear(8, 10, bias=False)
    with torch.no_grad():
        model.weight.copy_(w.T)
    clean = evaluate_accuracy(model, DataLoader(TensorDataset(x, y), batch_size=64))
    assert set(clean) == {"accuracy", "top5", "loss", "count"} and clean["accuracy"] == clean["top5"] == 1.0
    assert clean["count"] == 200
    assert clean["loss"] == pytest.approx(float(torch.nn.functional.cross_entropy(x @ w, y)), rel=1e-5)
    acc = evaluate_accuracy(model, DataLoader(TensorDataset(x, y_noisy), batch_size=64))
    logits = x @ w
    expect5 = (logits.topk(5, 1).indices == y_noisy[:, None]).any(1).float().mean().item()
    assert acc["accuracy"] == pytest.approx(150 / 200) and acc["top5"] == pytest.approx(expect5)
    three = evaluate_accuracy(nn.Linear(8, 3), DataLoader(TensorDataset(x, y % 3), batch_size=64))
    assert set(three) == {"accuracy", "loss", "count"}  # top-5 of 3 classes says nothing


# ------------------------------------------------------------------------------ lookup table
def test_latency_table_on_a_tiny_network(tiny_net, tmp_path):
    spec = make_target({"name": "cpu1", "backend": "cpu", **FAST})
    table = LatencyTable(spec)
    cfgs = [tiny_net.space.smallest(), tiny_net.space.largest(), *tiny_net.space.sample_many(3, seed=0)]
    pairs = [(tiny_net.extract(c).eval(), example_input(tiny_net, c, spec)) for c in cfgs]
    sigs = set()
    for model, x in pairs:
        calls = unit_calls(model, x)
        assert len(calls) <= len(units(model)) and calls
        sigs |= {s for s, _, _ in calls}
        table.add(model, x)
    assert len(table) == len(sigs) and all(v > 0 for v in table.entries.values())
    assert table.add(*pairs[0]) == 0  # every unit shape is timed once
    raws = [table.raw(m, x) for m, x in pairs]
    # a known linear relation between the unit sum and the "measured" latency is recovered exactly
    fit = table.calibrate(pairs, measured_ms=[2 * r + 0.5 for r in raws])
    assert fit["coef"] == pytest.approx(2) and fit["intercept"] == pytest.approx(0.5) and fit["mape"] < 1e-6
    assert table.predict(*pairs[2]) == pytest.approx(2 * raws[2] + 0.5)
    table.save(tmp_path / "lut.json")
    back = LatencyTable.load(tmp_path / "lut.json")
    assert back.entries == table.entries and back.target == spec
    assert back.predict(*pairs[3]) == pytest.approx(table.predict(*pairs[3]))
    with pytest.raises(ConfigError, match="at least 2"):
        table.calibrate(pairs[:1])
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ConfigError, match="not a latency table"):
        LatencyTable.load(tmp_path / "bad.json")


def test_latency_table_units_of_resnet():
    net = create_supernet("resnet", num_classes=4, image_size=16, small_input=True, base_depths=(1, 1, 1, 1),
                          depth_deltas=(0, 1), width_mults=(0.1, 0.15), expand_ratios=(0.25,))
    sub = net.extract(net.space.largest()).eval()
    calls = unit_calls(sub, torch.zeros(1, 3, 16, 16))
    names = [type(m).__name__ for _, m, _ in calls]
    assert names.count("Bottleneck") == 8 and names[-1] == "Linear"


# ------------------------------------------------------------------------------ evaluator
def test_evaluator_returns_requested_columns(tiny_net, tiny_data):
    calib, val = tiny_data
    cols = ["accuracy", "top5", "macs", "params", "bytes", "latency_ms@cpu", "latency_ms@fast", "peak_mem@cpu"]
    ev = Evaluator(tiny_net, cols, calib_loader=calib, eval_loader=val, calib_batches=2,
                   targets={"fast": {"backend": "cpu", **FAST}, "cpu": {"backend": "cpu", **FAST}})
    cfg = tiny_net.space.sample(seed=3)
    out = ev(cfg)
    assert list(out) == cols and all(math.isfinite(v) for v in out.values())
    sub = tiny_net.extract(cfg)
    assert out["macs"] == count_macs(sub, tiny_net.input_shape(cfg)) and out["params"] == count_params(sub)
    assert 0 <= out["accuracy"] <= out["top5"] <= 1
    again = pickle.loads(pickle.dumps(ev))  # Ray ships it
    out2 = again(cfg)
    assert {c: out2[c] for c in ("accuracy", "top5", "macs", "params", "bytes")} == \
        {c: out[c] for c in ("accuracy", "top5", "macs", "params", "bytes")}


def test_evaluator_recalibrates_bn(tiny_net, tiny_data):
    calib, val = tiny_data
    cfg = tiny_net.space.smallest()
    with_calib = Evaluator(tiny_net, ["accuracy"], calib_loader=calib, eval_loader=val, calib_batches=1)
    without = Evaluator(tiny_net, ["accuracy"], eval_loader=val)
    bn = lambda m: next(x for x in m.modules() if isinstance(x, nn.BatchNorm2d))  # noqa: E731
    got = bn(with_calib.prepare(cfg)).running_mean
    expect_model = tiny_net.extract(cfg)
    from supernas.train import recalibrate_bn
    recalibrate_bn(expect_model, calib, 1)
    assert torch.allclose(got, bn(expect_model).running_mean)
    assert not torch.allclose(got, bn(without.prepare(cfg)).running_mean)
    # cost-only columns skip the recalibration
    assert not Evaluator(tiny_net, ["macs"], calib_loader=calib).needs_weights


def test_evaluator_accuracy_does_not_depend_on_what_was_evaluated_before(tiny_net, tiny_data):
    from supernas.data import DatasetPair, loaders

    ds = tiny_data[0].dataset
    calib, val, _ = loaders(DatasetPair(ds, ds), batch_size=16, seed=0)
    a, b = tiny_net.space.sample(seed=1), tiny_net.space.sample(seed=2)
    ev = Evaluator(tiny_net, ["accuracy"], calib_loader=calib, eval_loader=val, calib_batches=2)
    first = ev(a)
    ev(b)
    fresh = Evaluator(tiny_net, ["accuracy"], calib_loader=calib, eval_loader=val, calib_batches=2)
    fresh(b)
    assert ev(a) == first == fresh(a)
    bn = lambda m: next(x for x in m.modules() if isinstance(x, nn.BatchNorm2d)).running_var  # noqa: E731
    assert torch.equal(bn(ev.prepare(a)), bn(fresh.prepare(a)))


def test_evaluator_rejects_bad_columns(tiny_net):
    with pytest.raises(ConfigError, match="needs a target"):
        Evaluator(tiny_net, ["latency_ms"])
    with pytest.raises(ConfigError, match="not measured per target"):
        Evaluator(tiny_net, ["macs@cpu"])
    with pytest.raises(ConfigError, match="needs evaluation data"):
        Evaluator(tiny_net, ["accuracy"])
    with pytest.raises(ConfigError, match="unknown target"):
        Evaluator(tiny_net, ["latency_ms@nowhere"])
    with pytest.raises(ConfigError, match="unknown objective"):
        Evaluator(tiny_net, ["speed"])
    with pytest.raises(ConfigError):
        Evaluator(tiny_net, ["macs"])({"stage1.depth": 99})
    assert isinstance(make_target("cpu"), TargetSpec)
