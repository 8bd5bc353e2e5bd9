"""Pre-flight: what used to fail only after training (a misspelt strategy option, a malformed constraint, an
unknown constraint column, an unreachable Ray cluster) and what this machine cannot do (a missing GPU, more
threads than cores, weights beyond memory) is refused before anything is written, one line per problem."""
from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest
import yaml

from cli_helpers import assert_one_line, cli
from supernas.config import parse_config
from supernas.errors import PreflightError
from supernas.run.preflight import disk_estimate, preflight, ray_handshake, ray_problem
from test_reliability_inputs import run_file


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def assert_nothing_written(cfgfile: Path) -> None:
    out = Path(yaml.safe_load(cfgfile.read_text())["out"])
    assert not out.exists(), sorted(out.rglob("*"))  # no run directory, so no checkpoint


@pytest.mark.parametrize("search, needle", [
    ({"options": {"populaton": 4}}, "search: bad option for strategy"),
    ({"constraints": {"macs": "abc"}}, "constraint on 'macs' must be a number"),
    ({"constraints": {"params": 5}}, "constraint on 'params': not a search objective"),
    ({"ray_address": "127.0.0.1:{port}", "workers": 2}, "nothing answers at 127.0.0.1"),
], ids=["strategy-option", "malformed-constraint", "unknown-constraint-column", "unreachable-ray"])
def test_the_four_late_failures_come_before_training(tmp_path, capsys, search, needle):
    base = {"strategy": "random", "objectives": ["accuracy", "macs"], "evaluations": 4}
    search = {k: v.format(port=closed_port()) if isinstance(v, str) else v for k, v in search.items()}
    cfgfile = run_file(tmp_path, "late", search={**base, **search})
    assert_one_line(*cli(["run", "-c", cfgfile, "-q"], capsys), needle.split("{")[0])
    assert_nothing_written(cfgfile)


def test_every_problem_is_listed_at_once(tmp_path, capsys):
    cfgfile = run_file(tmp_path, "many", data={"dataset": str(tmp_path / "no-such-folder")},
                       targets={"gpu": {"backend": "cuda"}, "cpu": {"backend": "cpu", "threads": 1000}},
                       search={"strategy": "random", "objectives": ["accuracy", "latency_ms@gpu", "latency_ms@cpu"],
                               "evaluations": 4})
    code, err = cli(["train", cfgfile, "-q"], capsys)
    lines = err.strip().splitlines()
    assert code == 2 and all(line.startswith("error: ") for line in lines), err
    text = "\n".join(lines)
    assert "no-such-folder" in text and "1000 threads" in text
    import torch

    assert len(lines) == (2 if torch.cuda.is_available() else 3), lines
    assert_nothing_written(cfgfile)


def test_weights_beyond_memory_and_unbuildable_arguments_are_refused_before_allocation(tmp_path, capsys):
    for name, width in (("wide", 400.0), ("absurd", 1e39)):
        cfgfile = run_file(tmp_path, name)
        doc = yaml.safe_load(cfgfile.read_text())
        doc["supernet"]["args"]["width_mult"] = width
        cfgfile.write_text(yaml.safe_dump(doc))
        assert_one_line(*cli(["run", "-c", cfgfile, "-q"], capsys), "supernet", "mbv3")
        assert_nothing_written(cfgfile)


def _cfg(tmp_path, **sections):
    return parse_config(yaml.safe_load(run_file(tmp_path, "unit", **sections).read_text()))


def test_oversubscribed_threads_are_accepted_when_asked_for(tmp_path):
    search = {"strategy": "random", "objectives": ["accuracy", "latency_ms@cpu"], "evaluations": 4}
    many = {"cpu": {"backend": "cpu", "threads": 1000}}
    with pytest.raises(PreflightError, match="1000 threads"):
        preflight(_cfg(tmp_path, targets=many, search=search), tmp_path)
    many["cpu"]["oversubscribe"] = True
    assert preflight(_cfg(tmp_path, targets=many, search=search), tmp_path) == []


def test_unused_targets_are_not_checked(tmp_path):
    cfg = _cfg(tmp_path, targets={"gpu": {"backend": "cuda"}})  # objectives: accuracy, macs
    assert preflight(cfg, tmp_path) == []


def test_too_little_disk_is_a_warning_not_an_error(tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple

    cfg = _cfg(tmp_path)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(1 << 30, 1 << 30, 1000))
    warnings = preflight(cfg, tmp_path / "run")
    assert len(warnings) == 1 and "MiB free" in warnings[0] and "the run will write" in warnings[0]
    assert disk_estimate(cfg, 1_000_000) > 3_000_000  # checkpoint (weights, momentum, temp copy) and exports


def test_a_disk_warning_reaches_the_cli_as_one_line(tmp_path, monkeypatch, capsys):
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(1 << 30, 1 << 30, 1000))
    cfgfile = run_file(tmp_path, "disk")
    code, err = cli(["train", cfgfile, "-q"], capsys)
    warned = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert code == 0 and len(warned) == 1 and "MiB free" in warned[0], err


def test_something_on_the_port_that_is_not_ray_is_found_before_training():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]

    def accept_and_hang_up():
        try:
            while True:
                conn, _ = server.accept()
                conn.close()
        except OSError:
            pass

    threading.Thread(target=accept_and_hang_up, daemon=True).start()
    try:
        assert ray_problem(2, None) is None  # a local Ray is started by the search itself
        problem = ray_handshake(f"127.0.0.1:{port}", timeout_s=6)
    finally:
        server.close()
    assert problem is not None and problem.startswith(f"search.ray_address '127.0.0.1:{port}'"), problem
    assert ray_problem(1, "127.0.0.1:notaport") == "search.ray_address '127.0.0.1:notaport': 'notaport' is not a port number"


def _nested(levels: int) -> str:
    return "[" * levels + "1" + "]" * levels


@pytest.mark.parametrize("doc, needle", [
    (f"seed: {_nested(500)}", "nested"),
    (f"search:\n  options:\n    x: {_nested(5000)}", "nested"),
    (f"search:\n  constraints:\n    macs: {_nested(50_000)}", "nested"),
    (f"supernet:\n  args:\n    depths: {_nested(30)}", "nested more than"),
    ("train:\n  num_threads: 100000000000000000000", "train.num_threads"),
    ("supernet:\n  args:\n    width_mult: 1.0e+39", "supernet"),
    ("supernet:\n  args:\n    dropout: 2.5", "dropout must be a number in [0, 1)"),
], ids=["seed", "options", "constraints", "args", "threads", "width", "dropout"])
def test_absurd_run_files_are_one_line_before_anything_is_written(tmp_path, capsys, doc, needle):
    cfgfile = tmp_path / "absurd.yaml"
    cfgfile.write_text(f"out: {tmp_path / 'out'}\n{doc}\n")
    assert_one_line(*cli(["train", cfgfile, "-q"], capsys), needle)
    assert not (tmp_path / "out").exists()
