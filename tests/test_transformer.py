"""Transformer families (bert, vit): extraction equality, exact counts, head/neuron re-ordering."""
import copy

import pytest
import torch
from torch import nn

import supernas as sn
from supernas.elastic.transformer import (ElasticEmbedding, ElasticLayerNorm, ElasticMultiHeadAttention,
                                          ElasticPatchEmbed)
from supernas.elastic import ElasticLinear
from supernas.measure.counting import count_params

SMALL_BERT = dict(vocab_size=40, hidden_size=32, num_hidden_layers=4, num_attention_heads=4, intermediate_size=48,
                  max_position_embeddings=20, type_vocab_size=2, num_classes=3, seq_len=10,
                  hidden_choices=(16, 24, 32), ffn_choices=(12, 24, 48))
SMALL_VIT = dict(num_classes=5, image_size=8, in_channels=2, patch_size=2, hidden_size=24, num_hidden_layers=3,
                 num_attention_heads=3, intermediate_size=32, hidden_choices=(16, 24))


@torch.no_grad()
def _randomise(net: nn.Module, seed: int = 0) -> nn.Module:
    """Weights large enough that attention is far from uniform and layer norms are not identities."""
    g = torch.Generator().manual_seed(seed)
    for p in net.parameters():
        p.copy_(0.3 * torch.randn(p.shape, generator=g))
    for m in net.modules():
        if isinstance(m, nn.LayerNorm):
            m.weight.copy_(1 + 0.3 * torch.randn(m.weight.shape, generator=g))
    return net



@pytest.fixture(scope="module")
def bert():
    return _randomise(sn.create_supernet("bert", **SMALL_BERT)).eval()


@pytest.fixture(scope="module")
def vit():
    return _randomise(sn.create_supernet("vit", **SMALL_VIT), seed=1).eval()


def _text_batch(seed: int = 0, batch: int = 3, seq: int = 10):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, SMALL_BERT["vocab_size"], (batch, seq), generator=g)
    mask = torch.ones(batch, seq, dtype=torch.long)
    mask[1, 6:] = 0
    mask[2, 3:] = 0
    types = torch.randint(0, 2, (batch, seq), generator=g)
    return ids, mask, types


def _configs(space, n=50, seed=3):
    return [space.largest(), space.smallest()] + space.sample_many(n, seed=seed)


def _assert_static(sub: nn.Module) -> None:
    elastic = (ElasticLinear, ElasticLayerNorm, ElasticEmbedding, ElasticMultiHeadAttention, ElasticPatchEmbed,
               sn.Supernet)
    assert not any(isinstance(m, elastic) for m in sub.modules())


def test_space_names_and_depth_dependence(bert):
    space = bert.space
    assert space.names[:2] == ["hidden", "layers"]
    assert "layer4.heads" in space.names and "layer4.ffn" in space.names
    cfg = space.validate({**space.largest(), "layers": 2})
    assert "layer3.heads" not in cfg and "layer2.ffn" in cfg
    # layers in {2,3,4}; heads {1,2,3,4}, ffn 3 options -> 12 per layer; hidden 3 options
    assert space.size() == 3 * (12 ** 2 + 12 ** 3 + 12 ** 4)


def test_bert_extraction_equals_elastic_forward(bert):
    ids, mask, types = _text_batch()
    worst = 0.0
    configs = _configs(bert.space)
    assert len(configs) >= 52
    for cfg in configs:
        sub = bert.extract(cfg)
        _assert_static(sub)
        assert not sub.training
        bert.set_active(cfg)
        with torch.no_grad():
            worst = max(worst, (bert(ids, mask, types) - sub(ids, mask, types)).abs().max().item())
            worst = max(worst, (bert.encode(ids, mask) - sub.encode(ids, mask)).abs().max().item())
    assert worst <= 1e-5, worst


def test_vit_extraction_equals_elastic_forward(vit):
    x = torch.randn(vit.input_shape(batch=3), generator=torch.Generator().manual_seed(0))
    worst = 0.0
    for cfg in _configs(vit.space):
        sub = vit.extract(cfg)
        _assert_static(sub)
        vit.set_active(cfg)
        with torch.no_grad():
            worst = max(worst, (vit(x) - sub(x)).abs().max().item())
    assert worst <= 1e-5, worst


def test_smaller_configs_change_the_function(bert):
    ids, mask, types = _text_batch()
    with torch.no_grad():
        bert.set_active(bert.space.largest())
        full = bert(ids, mask, types)
        bert.set_active({**bert.space.largest(), "layer1.heads": 1})
        fewer_heads = bert(ids, mask, types)
    bert.set_active(bert.space.largest())
    assert (full - fewer_heads).abs().max() > 1e-3


def test_padding_is_masked(bert):
    ids, mask, types = _text_batch()
    other = ids.clone()
    other[mask == 0] = (other[mask == 0] + 7) % SMALL_BERT["vocab_size"]  # change only padded tokens
    bert.set_active(bert.space.sample(seed=5))
    with torch.no_grad():
        assert torch.allclose(bert(ids, mask, types), bert(other, mask, types), atol=1e-6)
        assert not torch.allclose(bert(ids, None, types), bert(other, None, types), atol=1e-6)
    bert.set_active(bert.space.largest())


def test_extract_copies_weights(bert):
    net = copy.deepcopy(bert)
    cfg = net.space.sample(seed=11)
    sub = net.extract(cfg)
    ids, mask, types = _text_batch()
    with torch.no_grad():
        before = sub(ids, mask, types).clone()
        for p in net.parameters():
            p.add_(1.0)
        assert torch.equal(before, sub(ids, mask, types))
    assert sub.supernas_config == net.space.validate(cfg)


def _bert_params(cfg, vocab, positions, types, classes) -> int:
    """BERT parameter count by formula (head dim 8 for the small model)."""
    h = cfg["hidden"]
    total = (vocab + positions + types) * h + 2 * h + h * h + h + (h * classes + classes)
    for i in range(1, cfg["layers"] + 1):
        inner = cfg[f"layer{i}.heads"] * 8
        total += 3 * (h * inner + inner) + inner * h + h + 4 * h
        total += 2 * h * cfg[f"layer{i}.ffn"] + cfg[f"layer{i}.ffn"] + h
    return total


def _bert_macs(cfg, seq, classes) -> int:
    h = cfg["hidden"]
    total = h * h + h * classes  # pooler and classifier on [CLS]
    for i in range(1, cfg["layers"] + 1):
        inner = cfg[f"layer{i}.heads"] * 8
        total += seq * (4 * h * inner + 2 * h * cfg[f"layer{i}.ffn"]) + 2 * seq * seq * inner
    return total


def test_bert_counts_are_exact(bert):
    for cfg in _configs(bert.space, n=4, seed=4):
        sub = bert.extract(cfg)
        costs = sn.count(sub, example=bert.example_input(cfg, batch=1))
        assert costs["params"] == _bert_params(cfg, 40, 20, 2, 3)
        assert costs["macs"] == _bert_macs(cfg, SMALL_BERT["seq_len"], 3)
    assert bert.input_shape(batch=4) == (4, SMALL_BERT["seq_len"])
    assert bert.example_input(batch=4).dtype == torch.long


def test_bert_base_parameter_count_is_the_reference():
    with torch.device("meta"):
        net = sn.create_supernet("bert", vocab_size=30522, hidden_size=768, num_hidden_layers=12,
                                 num_attention_heads=12, intermediate_size=3072, max_position_embeddings=512,
                                 type_vocab_size=2, num_classes=0)
        sub = net.extract(net.space.largest())
    assert count_params(net) == 109_482_240
    assert count_params(sub) == 109_482_240
    assert isinstance(sub, sn.supernets.bert.Bert)


def test_vit_counts_grow_with_the_config(vit):
    small = sn.count(vit.extract(vit.space.smallest()), input_shape=vit.input_shape())
    large = sn.count(vit.extract(vit.space.largest()), input_shape=vit.input_shape())
    assert 0 < small["macs"] < large["macs"] and 0 < small["params"] < large["params"]
    assert large["params"] == count_params(vit)


@pytest.mark.parametrize("family", ["bert", "vit"])
def test_reordering_keeps_the_function_and_sorts_importance(family, bert, vit):
    net = copy.deepcopy(bert if family == "bert" else vit)
    inputs = _text_batch() if family == "bert" else (torch.randn(vit.input_shape(batch=2)),)
    net.set_active(net.space.largest())
    with torch.no_grad():
        before = net(*inputs)
        net.reorder_channels()
        after = net(*inputs)
    assert (before - after).abs().max() <= 1e-5
    for layer in net.encoder.blocks:
        imp = layer.attn.head_importance()
        assert torch.all(imp[:-1] >= imp[1:])
        ffn_imp = layer.ffn.fc2.weight.abs().sum(0)
        assert torch.all(ffn_imp[:-1] >= ffn_imp[1:])
    if family == "bert":  # hidden dimensions: by the summed |weight| of every layer norm
        norms = [net.embeddings.norm] + [n for b in net.encoder.blocks for n in (b.attn_norm, b.ffn_norm)]
        hidden_imp = sum(n.weight.detach().abs() for n in norms)
        assert torch.all(hidden_imp[:-1] >= hidden_imp[1:])
        assert not torch.equal(net.embeddings.word.weight, bert.embeddings.word.weight)
    # the re-ordering really moved weights (random weights are not already sorted)
    assert not torch.equal(net.encoder.blocks[0].ffn.fc1.weight,
                           (bert if family == "bert" else vit).encoder.blocks[0].ffn.fc1.weight)


def test_mean_pooling_averages_the_real_tokens(bert):
    net = copy.deepcopy(bert)
    net.pooling = "mean"
    ids, mask, types = _text_batch()
    for cfg in (net.space.largest(), net.space.sample(seed=4)):
        net.set_active(cfg)
        sub = net.extract(cfg)
        with torch.no_grad():
            hidden = net.encode(ids, mask, types)
            m = mask[..., None].float()
            want = net.classifier(torch.tanh(net.pooler((hidden * m).sum(1) / m.sum(1))))
            assert (net(ids, mask, types) - want).abs().max() <= 1e-5
            assert (sub(ids, mask, types) - want).abs().max() <= 1e-5 and sub.pooling == "mean"
    net.set_active(net.space.largest())


@pytest.mark.parametrize("kw", [dict(hidden_size=30, num_attention_heads=4), dict(head_choices=(0, 2)),
                                dict(layer_choices=(5,)), dict(seq_len=600), dict(hidden_act="swish"),
                                dict(pooling="max")])
def test_bad_bert_arguments_are_config_errors(kw):
    args = {**SMALL_BERT, **kw}
    if "seq_len" in kw:
        args["max_position_embeddings"] = 512
    with pytest.raises(sn.ConfigError):
        sn.create_supernet("bert", **args)


def test_vit_bad_patch_is_config_error():
    with pytest.raises(sn.ConfigError, match="patch_size"):
        sn.create_supernet("vit", image_size=9, patch_size=2)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_bert_subnetwork_exports_to_onnx_runtime(bert, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    cfg = bert.space.sample(seed=21)
    sub = bert.extract(cfg)
    ids, mask, _ = _text_batch()
    path = tmp_path / "bert.onnx"
    torch.onnx.export(sub, (ids, mask), str(path), dynamo=False, input_names=["ids", "mask"],
                      output_names=["logits"], dynamic_axes={"ids": {0: "b", 1: "s"}, "mask": {0: "b", 1: "s"}})
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    ids2, mask2, _ = _text_batch(seed=5, batch=3, seq=7)
    for i, m in ((ids, mask), (ids2, mask2)):
        out = sess.run(None, {"ids": i.numpy(), "mask": m.numpy()})[0]
        with torch.no_grad():
            assert abs(out - sub(i, m).numpy()).max() <= 1e-4


def test_pad_tokens_are_masked_without_an_explicit_mask(bert):
    ids, mask, types = _text_batch()
    padded = ids.masked_fill(mask == 0, 0)  # [PAD] = 0 where the mask is 0, real tokens elsewhere
    padded[mask == 1] = padded[mask == 1].clamp(min=1)
    bert.set_active(bert.space.sample(seed=8))
    sub = bert.extract(bert.space.sample(seed=8))
    with torch.no_grad():
        assert torch.allclose(bert(padded), bert(padded, mask), atol=1e-6)
        assert torch.allclose(sub(padded), sub(padded, mask), atol=1e-6)
    assert (bert.example_input(batch=2) != 0).all()
    bert.set_active(bert.space.largest())


def test_trainer_runs_the_bert_family_on_text_batches():
    from torch.utils.data import TensorDataset

    from supernas.train import train

    torch.manual_seed(0)
    net = sn.create_supernet("bert", **{**SMALL_BERT, "num_classes": 2})
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, SMALL_BERT["vocab_size"], (48, 8), generator=g)
    ids[::2, 5:] = 0  # right padding on half of the rows
    labels = (ids == 7).any(1).long()
    data = (TensorDataset(ids[:32], labels[:32]), TensorDataset(ids[32:], labels[32:]))
    result = train(net, data, epochs=1, batch_size=16, optimizer="adamw", lr=1e-3, num_random=1, progress=False)
    row = result.history[-1]
    assert torch.isfinite(torch.tensor(row["loss_largest"])) and 0.0 <= row["val_acc_largest"] <= 1.0
