"""The YAML run file: strict validation with one-line errors naming the key."""
import pytest
import yaml

from supernas.config import RunConfig, dump_config, load_config, parse_config
from supernas.errors import ConfigError


def test_defaults_roundtrip(tmp_path):
    cfg = RunConfig()
    p = tmp_path / "run.yaml"
    p.write_text(dump_config(cfg))
    assert load_config(p) == cfg


@pytest.mark.parametrize("doc, message", [
    ({"trian": {}}, "config error at trian: unknown key"),
    ({"train": {"epochs": 0}}, "train.epochs 0 searches a supernet as it was trained: it needs supernet.pretrained"),
    ({"train": {"epochs": -1}}, "config error at train.epochs: Input should be greater than or equal to 0"),
    ({"train": {"optimizer": "adam"}}, "config error at train.optimizer"),
    ({"supernet": {"family": "mbv4"}}, "unknown supernet family 'mbv4'"),
    ({"search": {"objectives": ["acc"]}}, "unknown objective 'acc'"),
    ({"search": {"objectives": ["latency_ms@gpu"]}}, "names target 'gpu', which is not in targets"),
    ({"search": {"evaluations": 0}}, "config error at search.evaluations"),
    ({"targets": {"cpu": {"backend": "tpu"}}}, "target 'cpu': backend"),
    ({"search": {"strategy": "linass"}}, "unknown search strategy 'linass'"),
    ({"export": {"formats": ["tflite"]}}, "config error at export.formats.0"),
    ({"search": {"constraints": {"macs": "abc"}}}, "constraint on 'macs' must be a number"),
    ({"search": {"constraints": {"params": 5}}}, "constraint on 'params': not a search objective"),
    ({"search": {"constraints": {"macs": [">>", 5]}}}, "macs"),
    ({"search": {"options": {"populaton": 4}}}, "bad option for strategy 'linas'"),
    ({"search": {"screen_samples": 0}}, "config error at search.screen_samples"),
    ({"search": {"screen_samples": 2, "objectives": ["macs", "params"]}}, "screens accuracy or top5"),
    ({"search": {"screen_repeats": 2}}, "config error at search.screen_repeats"),
    ({"search": {"screen_repeats": 7, "objectives": ["accuracy", "macs"]}}, "screens latency"),
    ({"supernet": {"family": "resnet", "args": {"blok": "basic"}}}, "unknown argument 'blok' for supernet 'resnet'"),
    ({"supernet": {"args": {"dropout": 2.5}}}, "dropout must be a number in [0, 1), got 2.5"),
    ({"supernet": {"args": {"width_mult": float("inf")}}}, "width_mult must be finite"),
    ({"data": {"mixup": 0.7, "cutmix": 0.5}}, "mixup + cutmix is the share of mixed batches: at most 1, got 1.2"),
    ({"data": {"cutmix": 1.5}}, "config error at data.cutmix"),
    ([1, 2], "must be a YAML mapping"),
])
def test_bad_values_give_one_line(doc, message):
    with pytest.raises(ConfigError) as e:
        parse_config(doc, "run.yaml")
    text = str(e.value)
    assert message in text and "\n" not in text


def test_bad_yaml_and_missing_file(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("train: [1,\n  epochs: 2")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(p)
    with pytest.raises(ConfigError, match="run file not found"):
        load_config(tmp_path / "missing.yaml")


def test_partial_file_fills_defaults(tmp_path):
    p = tmp_path / "run.yaml"
    p.write_text(yaml.safe_dump({"train": {"epochs": 3}, "search": {"strategy": "nsga2"}}))
    cfg = load_config(p)
    assert cfg.train.epochs == 3 and cfg.search.strategy == "nsga2" and cfg.train.optimizer == "sgd"


def test_examples_are_valid_run_files():
    from pathlib import Path

    examples = sorted((Path(__file__).parents[1] / "examples").glob("*.yaml"))
    assert len(examples) >= 2
    for p in examples:
        cfg = load_config(p)
        assert cfg.search.objectives and cfg.targets


@pytest.mark.parametrize("levels", [30, 600, 50_000])
@pytest.mark.parametrize("where", ["seed: {}", "search:\n  options:\n    x: {}", "search:\n  constraints:\n    macs: {}",
                                   "supernet:\n  args:\n    depths: {}"])
def test_absurd_nesting_is_refused_in_one_line(tmp_path, levels, where):
    p = tmp_path / "deep.yaml"
    p.write_text(where.format("[" * levels + "1" + "]" * levels) + "\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert "nested" in str(e.value) and "\n" not in str(e.value)


def test_huge_run_file_and_thread_count_are_refused(tmp_path):
    p = tmp_path / "big.yaml"
    p.write_text("name: x\n" + "# padding\n" * 200_000)
    with pytest.raises(ConfigError, match="a run file is at most"):
        load_config(p)
    with pytest.raises(ConfigError, match="train.num_threads"):
        parse_config({"train": {"num_threads": 10 ** 20}}, "run.yaml")
