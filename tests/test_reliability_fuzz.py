"""Fuzzing bad input (hypothesis): configs against ``SearchSpace.validate``, YAML documents against the run
file schema, argument lists against the CLI. Bad input is always one clear SupernasError line, never a
traceback or an "internal error"."""
from __future__ import annotations

import math
import os

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from search_fixtures import small_space
from supernas.cli import main
from supernas.config import RunConfig, parse_config
from supernas.errors import ConfigError, SupernasError
from supernas.space import Choice, SearchSpace

FUZZ = settings(max_examples=200, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

# ------------------------------------------------------------------------------- configs vs validate
SPACE = small_space()
MIXED = SearchSpace([Choice("act", ("relu", "hswish")), Choice("ratio", (0.25, 0.5, 1.0)),
                     Choice("se", (False, True)), Choice("kernel", (3, 5, 7))])
scalars = st.one_of(st.none(), st.booleans(), st.integers(-10, 40), st.floats(allow_nan=True),
                    st.text(max_size=6), st.sampled_from([3, 5, 7, 8, 16, 24, 32, 1, 2, 0.25, 0.5, 1.0, "relu",
                                                          True, False, 3.0, 5.0]))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.text(max_size=4), inner, max_size=3)),
                      max_leaves=6)


def _names(space: SearchSpace) -> st.SearchStrategy:
    return st.one_of(st.sampled_from(space.names), st.text(max_size=8))


def _configs(space: SearchSpace) -> st.SearchStrategy:
    """Mostly near-valid dicts (real names, real and wrong values), sometimes not a dict at all."""
    near = st.fixed_dictionaries({}, optional={n: st.one_of(st.sampled_from(space[n].options), values)
                                              for n in space.names})
    extra = st.dictionaries(_names(space), values, max_size=6)
    return st.one_of(near, near, extra, values)


@pytest.mark.parametrize("space", [SPACE, MIXED], ids=["nested", "mixed-types"])
def test_validate_raises_only_config_error(space):
    @FUZZ
    @given(cfg=_configs(space))
    def check(cfg):
        try:
            out = space.validate(cfg)
        except ConfigError as e:
            assert str(e) and "\n" not in str(e)
            return
        # accepted: canonical, idempotent, and every value is a legal option
        assert space.validate(out) == out
        assert space.key(out) == space.key(cfg)
        assert all(any(o == v and type(o) is type(v) for o in space[k].options) for k, v in out.items())

    check()


# ---------------------------------------------------------------------------- YAML vs the run schema
SECTIONS = {name: list(field.annotation.model_fields) if hasattr(field.annotation, "model_fields") else []
            for name, field in RunConfig.model_fields.items()}
keys = st.one_of(st.sampled_from(sorted(SECTIONS)), st.sampled_from(sorted({k for v in SECTIONS.values() for k in v})),
                 st.text(max_size=8))
yaml_scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 10**12), st.floats(allow_nan=True),
                         st.integers(-10**40, 10**40), st.sampled_from([1e20, 1e39, 1e308, -1e308, 2.5, 2**63]),
                         st.text(max_size=10), st.sampled_from(["mbv3", "resnet", "linas", "cpu", "accuracy",
                                                                "latency_ms@cpu", "macs", "digits", "onnx", "-1"]))
yaml_values = st.recursive(yaml_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(keys, inner, max_size=3)), max_leaves=6)


@st.composite
def run_documents(draw):
    """A run file: known sections with known and unknown keys and random values; or any YAML value."""
    if draw(st.integers(0, 4)) == 0:
        return draw(yaml_values)
    doc = {}
    for section in draw(st.lists(st.sampled_from(sorted(SECTIONS)), max_size=4, unique=True)):
        fields = SECTIONS[section]
        if fields:
            doc[section] = draw(st.dictionaries(st.one_of(st.sampled_from(fields), keys), yaml_values, max_size=3))
        else:
            doc[section] = draw(yaml_values)
    return doc


@FUZZ
@given(doc=run_documents())
def test_parse_config_accepts_or_gives_one_config_error_line(doc):
    text = yaml.safe_dump(doc, allow_unicode=True)  # through real YAML text, as a user's file would be
    try:
        cfg = parse_config(yaml.safe_load(text))
    except ConfigError as e:
        assert str(e).startswith("config") and "\n" not in str(e)
        return
    assert isinstance(cfg, RunConfig)
    assert parse_config(cfg.model_dump(mode="json")) == cfg  # what was accepted round-trips


KNOWN_PATHS = [("seed",), ("search", "options", "x"), ("search", "constraints", "macs"), ("supernet", "args", "depths"),
               ("supernet", "args", "width_mult"), ("train", "num_threads"), ("train", "epochs"), ("targets", "cpu")]


@FUZZ
@given(path=st.sampled_from(KNOWN_PATHS), levels=st.integers(0, 80), leaf=yaml_scalars,
       kinds=st.lists(st.booleans(), min_size=80, max_size=80))
def test_nesting_and_huge_numbers_at_known_keys(path, levels, leaf, kinds):
    """A value nested 0-80 levels deep (lists and mappings) or a huge number where a run file has a key."""
    value = leaf
    for as_list in kinds[:levels]:
        value = [value] if as_list else {"k": value}
    doc: dict = {}
    node = doc
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    text = yaml.safe_dump(doc)
    try:
        cfg = parse_config(yaml.safe_load(text))
    except ConfigError as e:
        assert str(e).startswith("config") and "\n" not in str(e)
        return
    assert parse_config(cfg.model_dump(mode="json")) == cfg


@FUZZ
@given(text=st.text(max_size=80))
def test_arbitrary_text_as_a_run_file(text, tmp_path_factory):
    p = tmp_path_factory.mktemp("yaml") / "run.yaml"
    p.write_text(text, encoding="utf-8", errors="surrogatepass")
    from supernas.config import load_config
    try:
        load_config(p)
    except ConfigError as e:
        assert "\n" not in str(e)


# ---------------------------------------------------------------------------------- argv vs the CLI
COMMANDS = ["run", "train", "search", "measure", "export", "report", "bench", "nope", "--help"]
OPTIONS = ["--config", "-c", "--out", "-o", "--quiet", "--fresh", "--resume", "--no-resume", "--pick",
           "--format", "--configs", "--objectives", "--help", "--dump-config", "-q", "--", "-"]


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli-fuzz")
    (d / "corrupt.yaml").write_text("train: [epochs: 1\n  :: {")
    (d / "list.yaml").write_text("- 1\n- 2\n")
    (d / "unknown.yaml").write_text("search:\n  strategy: nope\n")
    (d / "junk.db").write_bytes(os.urandom(2048))
    (d / "empty_dir").mkdir()
    (d / "empty_run").mkdir()
    (d / "empty_run" / "config.yaml").write_text("seed: -\n  x")
    return [str(d / n) for n in ("corrupt.yaml", "list.yaml", "unknown.yaml", "junk.db", "empty_dir", "empty_run",
                                 "missing.yaml")]


def _fuzz_argv(bad_files):
    tokens = st.one_of(st.sampled_from(OPTIONS), st.sampled_from(bad_files),
                       st.sampled_from(["knee", "best-accuracy", "onnx", "7", "largest", "macs,params", "x@y"]),
                       st.text(max_size=12))
    return st.tuples(st.sampled_from(COMMANDS), st.lists(tokens, max_size=6)).map(lambda t: [t[0], *t[1]])


def _would_do_real_work(argv: list[str]) -> bool:
    """``run`` without a run file trains the embedded default for minutes: never fuzzed."""
    return argv[0] == "run" and "--config" not in argv and "-c" not in argv


def test_cli_random_argv_exits_0_or_2_with_clean_output(bad_files, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # anything a command would create lands here

    @FUZZ
    @given(argv=_fuzz_argv(bad_files))
    def check(argv):
        if _would_do_real_work(argv):
            argv = [*argv, "--config", bad_files[-1]]
        try:
            main(argv)
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        out = capsys.readouterr()
        text = out.out + out.err
        assert code in (0, 2), (argv, code, text[-500:])
        assert "Traceback" not in text and "internal error" not in text, (argv, text[-500:])
        if code == 2:
            assert text.strip(), argv  # the reason (or, for a bare group, its usage) is printed

    check()
    assert not (tmp_path / "runs").exists()  # no fuzzed command started a real run
