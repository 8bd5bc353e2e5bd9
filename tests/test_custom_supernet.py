"""make_elastic on users' own models: exact largest, exact extraction, counted MACs, check(), ONNX, errors."""
from __future__ import annotations

import copy
import json
import pickle
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import supernas as sn
from supernas.errors import ConfigError
from supernas.supernets.custom import WidthChoice
from supernas.elastic.groups import Group
from supernas.space import Choice, SearchSpace

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
import own_model_net as own  # noqa: E402  (the user's file of examples/own_model.py)


IMAGES = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
TOKENS = torch.randint(0, 100, (3, 12), generator=torch.Generator().manual_seed(0))


def _hf(kind: str) -> tuple[nn.Module, torch.Tensor]:
    pytest.importorskip("transformers")
    if kind == "hf-resnet":
        from transformers.models.resnet import ResNetConfig, ResNetForImageClassification
        return ResNetForImageClassification(ResNetConfig(embedding_size=16, hidden_sizes=[16, 32], depths=[2, 2],
                                                         layer_type="bottleneck", num_labels=10)), IMAGES
    if kind == "hf-convnext":
        from transformers.models.convnext import ConvNextConfig, ConvNextForImageClassification
        return ConvNextForImageClassification(ConvNextConfig(hidden_sizes=[16, 32], depths=[2, 2], num_stages=2,
                                                             num_labels=10)), IMAGES
    if kind == "hf-vit":
        from transformers.models.vit import ViTConfig, ViTForImageClassification
        return ViTForImageClassification(ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                                   intermediate_size=64, image_size=32, patch_size=8,
                                                   num_labels=10)), IMAGES
    from transformers.models.llama import LlamaConfig, LlamaForCausalLM
    return LlamaForCausalLM(LlamaConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                        num_key_value_heads=4, intermediate_size=64, vocab_size=100,
                                        bos_token_id=0, eos_token_id=0, pad_token_id=0)), TOKENS


MODELS = {
    "user-resnet": lambda: (own.small_resnet(widths=(16, 32), depth=2), IMAGES),
    "user-mobilenetv2": lambda: (own.mobilenet_v2_style(stages=((16, 2, 1), (24, 2, 2))), IMAGES),
    "user-decoder": lambda: (own.tiny_decoder(vocab_size=100, dim=32, mlp=64), TOKENS),
    "hf-resnet": lambda: _hf("hf-resnet"),
    "hf-convnext": lambda: _hf("hf-convnext"),
    "hf-vit": lambda: _hf("hf-vit"),
    "hf-llama": lambda: _hf("hf-llama"),
}


def _logits(out):
    return out.logits if hasattr(out, "logits") else out


@pytest.fixture(scope="module", params=sorted(MODELS))
def elastic(request):
    torch.manual_seed(0)
    model, x = MODELS[request.param]()
    model.eval()
    original = copy.deepcopy(model)
    return sn.make_elastic(model, x).eval(), original, x


def test_largest_is_the_original_model(elastic):
    net, original, x = elastic
    with torch.no_grad():
        want = _logits(original(x))
        net.set_active(net.space.largest())
        assert (net(x) - want).abs().max().item() <= 1e-5
        assert (net.extract(net.space.largest())(x) - want).abs().max().item() <= 1e-5
    assert len(net.space.choices) >= 4 and any(c.name.endswith(".depth") for c in net.space.choices)


def test_extraction_equals_the_elastic_forward(elastic):
    net, _, x = elastic
    with torch.no_grad():
        for cfg in net.space.sample_many(20, seed=1):
            net.set_active(cfg)
            sub = net.extract(cfg)
            assert not any(type(m).__module__.startswith("supernas") for m in sub.modules())
            assert (net(x) - sub(x)).abs().max().item() <= 1e-5, net.space.key(cfg)


def test_macs_counted_on_the_extracted_network_and_monotone_in_every_width(elastic):
    net, _, _ = elastic
    largest = net.space.largest()
    x = net.example_input(batch=1)
    full = sn.count(net.extract(largest), example=x)["macs"]
    assert full == sn.count(copy.deepcopy(net.extract(largest)), example=x)["macs"] > 0
    for c in net.space.choices:
        macs = [sn.count(net.extract({**largest, c.name: o}), example=x)["macs"] for o in c.options]
        assert macs == sorted(macs) and macs[0] < macs[-1] == full, c.name


def test_check_lists_groups_and_catches_a_choice_that_changes_nothing(elastic):
    net, _, _ = elastic
    found = net.check()
    assert {d["choice"] for d in found} == set(net.space.names)
    broken = copy.deepcopy(net)
    broken.widths = [*broken.widths, WidthChoice("nothing.width", Group(-1, 8, ["nowhere"]))]
    broken.space = SearchSpace([*broken.space.choices, Choice("nothing.width", (4, 8))])
    with pytest.raises(ConfigError, match="nothing.width=4 does not change"):
        broken.check()


def test_onnx_export_verified_in_onnx_runtime(elastic, tmp_path):
    net, _, _ = elastic
    cfg = net.space.sample(seed=5)
    result = sn.export.export(net, cfg, tmp_path, formats=["onnx"])
    assert all(c.passed for c in result.checks) and (tmp_path / "model.onnx").exists()


def test_pickled_supernet_computes_the_same_and_keeps_the_models_state_dict(elastic):
    net, original, x = elastic
    cfg = net.space.sample(seed=2)
    net.set_active(cfg)
    copy_ = pickle.loads(pickle.dumps(net)).eval()
    with torch.no_grad():
        assert copy_.active == net.active and torch.equal(copy_(x), net(x))
    assert list(net.state_dict()) == [f"model.{k}" for k in original.state_dict()]
    twin = copy.deepcopy(net).eval()  # a deep copy computes the same and shares nothing with the original
    with torch.no_grad():
        assert torch.equal(twin(x), net(x))
        twin.set_active(net.space.smallest())
        for p in twin.parameters():
            p.mul_(0.5)
        assert torch.equal(net(x), copy_(x)) and net.active == copy_.active


def test_training_mode_matches_and_updates_the_models_batch_norm():
    torch.manual_seed(0)
    net = sn.make_elastic(own.small_resnet(widths=(8, 16), depth=2), torch.randn(2, 3, 16, 16))
    cfg = net.space.smallest()
    sub = net.extract(cfg).train()
    net.train().set_active(cfg)
    x = torch.randn(4, 3, 16, 16)
    before = net.model.stem[1].running_mean.clone()
    out = net(x)
    assert (out - sub(x)).abs().max().item() <= 1e-5
    assert not torch.equal(before, net.model.stem[1].running_mean)
    out.sum().backward()
    assert net.model.stem[0].weight.grad is not None


class Branchy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8, 2)

    def forward(self, x):
        h = self.conv(x)
        if h.mean() > 0:  # data-dependent: no single graph holds both
            h = -h
        return self.fc(h.mean((2, 3)))


class Concat(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 8, 1), nn.Conv2d(3, 8, 1)
        self.mix = nn.Conv2d(16, 8, 3, padding=1)
        self.fc = nn.Linear(8, 2)

    def forward(self, x):
        return self.fc(F.relu(self.mix(torch.cat([self.a(x), self.b(x)], 1))).mean((2, 3)))


class HardCoded(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, padding=1)
        self.fc = nn.Linear(16, 2)

    def forward(self, x):
        return self.fc(F.adaptive_avg_pool2d(self.conv(x), 1).view(-1, 16))


def test_data_dependent_control_flow_is_one_line_naming_the_code():
    with pytest.raises(ConfigError, match=r"branches on tensor values at test_custom_supernet.py:\d+ \(in forward\)"):
        sn.make_elastic(Branchy(), torch.randn(2, 3, 8, 8))


@pytest.mark.parametrize("model, node", [(Concat, "cat"), (HardCoded, "view")])
def test_an_operator_it_cannot_slice_names_the_node_and_can_be_kept_fixed(model, node):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 8, 8)
    with pytest.raises(ConfigError, match=rf"node '{node}' at test_custom_supernet.py:\d+ .*fixed=\['{node}'\]"):
        sn.make_elastic(model(), x)
    net = sn.make_elastic(model(), x, fixed=[node])
    net.check()
    assert all(c.name.endswith(".width") for c in net.space.choices)


def test_rules_set_the_ratios_and_depth():
    net = sn.make_elastic(own.small_resnet(widths=(16, 32), depth=2), torch.randn(2, 3, 16, 16),
                          rules={"conv": [0.25, 1.0], "skip": False, "divisor": 4})
    assert all(c.options == (4, 16) or c.options == (8, 32) for c in net.space.choices)
    with pytest.raises(ConfigError, match="unknown make_elastic rule 'ratio'"):
        sn.make_elastic(own.small_resnet(), torch.randn(2, 3, 16, 16), rules={"ratio": [0.5]})


def test_the_custom_family_builds_from_a_file_and_loads_the_users_weights(tmp_path):
    torch.manual_seed(0)
    plain = own.small_resnet(num_classes=5, in_channels=1, widths=(8, 16), depth=2)
    torch.save(plain.state_dict(), tmp_path / "mine.pt")
    spec = str(Path(own.__file__)) + ":small_resnet"
    net = sn.create_supernet("custom", model=spec, args={"widths": [8, 16], "depth": 2}, weights=str(tmp_path / "mine.pt"),
                             in_channels=1, image_size=8, num_classes=5).eval()
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        assert (net(x) - plain.eval()(x)).abs().max().item() <= 1e-5
    assert net.arch["family"] == "custom" and net.arch["model"] == spec
    with pytest.raises(ConfigError, match="cannot import custom model"):
        sn.create_supernet("custom", model="no_such_module:net")
    torch.save({"fc.weight": torch.zeros(3, 3)}, tmp_path / "other.pt")
    with pytest.raises(ConfigError, match="fc.weight is \\(3, 3\\)"):
        sn.create_supernet("custom", model=spec, args={"widths": [8, 16], "depth": 2}, weights=str(tmp_path / "other.pt"),
                           in_channels=1, image_size=8, num_classes=5)


def _run_file(tmp_path: Path, model: str) -> Path:
    run = tmp_path / "own.yaml"
    run.write_text(f"""
name: own-model
out: {tmp_path / 'run'}
supernet:
  family: custom
  args: {{model: "{model}", args: {{widths: [8, 16], depth: 2}}}}
data: {{dataset: digits}}
train: {{epochs: 1, batch_size: 128}}
search: {{objectives: [accuracy, macs], evaluations: 6}}
export: {{picks: [knee], formats: [onnx]}}
""")
    return run


def test_a_run_file_with_the_custom_family_trains_searches_exports_and_reports(tmp_path, capsys):
    from cli_helpers import cli

    code, err = cli(["run", "--config", _run_file(tmp_path, own.__file__ + ":small_resnet")], capsys)
    assert code == 0, err
    info = json.loads((tmp_path / "run" / "knee.json").read_text())
    assert info["pick"] == "knee" and set(info["metrics"]) == {"accuracy", "macs"}
    assert (tmp_path / "run" / "knee.onnx").exists() and (tmp_path / "run" / "report.html").exists()


def test_a_custom_model_that_does_not_import_is_one_line_before_training(tmp_path, capsys):
    from cli_helpers import assert_one_line, cli

    code, err = cli(["run", "--config", _run_file(tmp_path, "examples/nowhere.py:net")], capsys)
    assert_one_line(code, err, "cannot import custom model", "nowhere.py")
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_grouped_query_attention_keeps_heads_fixed_and_the_rest_elastic():
    pytest.importorskip("transformers")
    from transformers.models.llama import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                         num_key_value_heads=2, intermediate_size=64, vocab_size=100,
                                         bos_token_id=0, eos_token_id=0, pad_token_id=0)).eval()
    net = sn.make_elastic(model, TOKENS)
    assert not any(c.name.endswith(".heads") for c in net.space.choices)
    assert any(c.name.endswith("gate_proj.width") for c in net.space.choices)
    net.check()


TEXT = "".join(f"the {w} sat on the {v} mat. " for w in ("cat", "dog", "owl", "fox") for v in ("red", "blue", "old")) * 12


def test_language_model_windows_targets_and_bad_input(tmp_path):
    from supernas.data import load_text_lm
    from supernas.data.lm import IGNORE
    from supernas.errors import DataError

    (tmp_path / "t.txt").write_text(TEXT)
    data = load_text_lm(tmp_path / "t.txt", seq_len=16)
    x, y = next(iter(data.train_loader(4, seed=0)))
    assert x.shape == y.shape == (4, 16) and torch.equal(y[:, :-1], x[:, 1:]) and bool((y[:, -1] == IGNORE).all())
    assert data.num_classes == len(set(TEXT[: int(len(TEXT) * 0.8)])) + 1
    assert len(data.train) * 16 <= 0.8 * len(TEXT) and len(data.val) >= 1
    (tmp_path / "short.txt").write_text("abc")
    with pytest.raises(DataError, match="too few"):
        load_text_lm(tmp_path / "short.txt", seq_len=16)
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(DataError, match="not UTF-8"):
        load_text_lm(tmp_path / "bin.txt")


def test_a_decoder_trains_with_next_token_loss_and_is_searched_by_perplexity(tmp_path):
    pytest.importorskip("transformers")
    from transformers.models.llama import LlamaConfig, LlamaForCausalLM
    from supernas.data import load_text_lm
    from supernas.measure import Evaluator
    from supernas.search import search
    from supernas.train import train

    (tmp_path / "t.txt").write_text(TEXT)
    data = load_text_lm(tmp_path / "t.txt", seq_len=16)
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                         num_key_value_heads=4, intermediate_size=64, vocab_size=data.vocab_size,
                                         bos_token_id=0, eos_token_id=0, pad_token_id=0))
    net = sn.make_elastic(model, next(iter(data.eval_loader("val", 2)))[0])
    before = Evaluator(net, ["perplexity"], data=data)(net.space.largest())["perplexity"]
    train(net, data, config={"epochs": 4, "batch_size": 16, "lr": 0.01, "num_random": 1}, progress=False)
    evaluator = Evaluator(net, ["perplexity", "accuracy", "params"], data=data)
    after = evaluator(net.space.largest())
    assert after["perplexity"] < 0.5 * before and before > 0.5 * data.vocab_size and after["accuracy"] > 0.2
    result = search(net, evaluator, ["perplexity", "params"], evaluations=6, progress=False)
    assert result.knee is not None
    exported = sn.export.export(net, result.knee.config, tmp_path, formats=["onnx"])
    assert all(c.passed for c in exported.checks)


def _lm_run_file(tmp_path: Path, family_args: str) -> Path:
    (tmp_path / "corpus.txt").write_text(TEXT)
    run = tmp_path / "lm.yaml"
    run.write_text(f"""
name: decoder
out: {tmp_path / 'run'}
supernet: {family_args}
data: {{kind: lm, dataset: {tmp_path / 'corpus.txt'}, lm: {{seq_len: 16}}}}
train: {{epochs: 2, batch_size: 16}}
search: {{objectives: [perplexity, params], evaluations: 6}}
export: {{picks: [best-perplexity], formats: [onnx]}}
""")
    return run


def test_a_run_file_trains_searches_and_exports_a_users_decoder_on_a_text(tmp_path, capsys):
    from cli_helpers import cli

    family = f'{{family: custom, args: {{model: "{own.__file__}:tiny_decoder", args: {{dim: 32, mlp: 64}}}}}}'
    code, err = cli(["run", "--config", _lm_run_file(tmp_path, family)], capsys)
    assert code == 0, err
    info = json.loads((tmp_path / "run" / "best-perplexity.json").read_text())
    assert 1.0 < info["metrics"]["perplexity"] < len(set(TEXT)) and 0 < info["test_accuracy"] <= 1
    assert (tmp_path / "run" / "best-perplexity.onnx").exists() and (tmp_path / "run" / "report.html").exists()


def test_language_modelling_data_needs_a_decoder_family(tmp_path, capsys):
    from cli_helpers import assert_one_line, cli

    code, err = cli(["run", "--config", _lm_run_file(tmp_path, "{family: mbv3}")], capsys)
    assert_one_line(code, err, "needs a decoder: the custom family")


def test_important_channels_and_heads_come_first_and_the_function_stays():
    torch.manual_seed(0)
    model = own.tiny_decoder(vocab_size=50, dim=32, heads=4, mlp=64).eval()
    block = model.blocks[0]
    with torch.no_grad():  # head 3 (rows 24..31 of q, k, v) and hidden unit 5 of the MLP made the strongest
        for lin in (block.q, block.k, block.v):
            lin.weight[24:32] *= 10
        block.fc1.weight[5] *= 10
    original = copy.deepcopy(model)
    ids = torch.randint(0, 50, (2, 10), generator=torch.Generator().manual_seed(0))
    net = sn.make_elastic(model, ids).eval()
    with torch.no_grad():
        assert (net(ids) - original(ids)).abs().max().item() <= 1e-5
    l1 = lambda w: w.detach().abs().sum(1)  # noqa: E731  (rows keep their norm when the columns move too)
    assert torch.allclose(l1(block.q.weight[:8]), l1(original.blocks[0].q.weight[24:32]))  # strong head first
    assert torch.allclose(l1(block.fc1.weight[:1]), l1(original.blocks[0].fc1.weight[5:6]))


def test_the_space_command_lists_a_custom_models_choices_and_checks_it(tmp_path, capsys):
    from supernas.cli import main

    run = _run_file(tmp_path, own.__file__ + ":small_resnet")
    main(["space", str(run)])
    out = capsys.readouterr().out
    assert "stage0.depth" in out and "stage0.width" in out and "check passed" in out
    assert not (tmp_path / "run").exists()  # nothing trained, no run directory made
