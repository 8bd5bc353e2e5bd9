"""A run directory grows (more evaluations, more epochs) and refuses any other change, naming the key."""
from __future__ import annotations

import pytest

from supernas.errors import ConfigError
from supernas.run import default_config, open_run, run_changes


def _cfg(tmp_path, **changes):
    cfg = default_config()
    cfg.out = str(tmp_path / "run")
    for dotted, value in changes.items():
        section, key = dotted.split("__")
        setattr(getattr(cfg, section), key, value)
    return cfg


def test_more_evaluations_and_other_exports_reopen_the_run(tmp_path):
    open_run(_cfg(tmp_path))
    paths = open_run(_cfg(tmp_path, search__evaluations=120, export__formats=["onnx"]))
    text = paths.config.read_text()
    assert "evaluations: 120" in text  # the run file of record is the grown one
    assert run_changes(_cfg(tmp_path), _cfg(tmp_path, search__evaluations=120)) == {
        "search.evaluations": (60, 120)}


@pytest.mark.parametrize("change, key", [
    (dict(search__objectives=["accuracy", "macs"]), "search.objectives"),
    (dict(train__lr=0.3), "train.lr"),
    (dict(supernet__args={"width_mult": 0.5}), "supernet.args"),
    (dict(seed=1), "seed"),
])
def test_any_other_change_is_refused_naming_the_key(tmp_path, change, key):
    open_run(_cfg(tmp_path))
    cfg = _cfg(tmp_path)
    if "seed" in change:
        cfg.seed = change["seed"]
    else:
        cfg = _cfg(tmp_path, **change)
    with pytest.raises(ConfigError, match=rf"another run file \({key}"):
        open_run(cfg)


def test_more_epochs_archive_the_search_of_the_shorter_training(tmp_path):
    paths = open_run(_cfg(tmp_path))
    paths.results.write_bytes(b"stand-in for results.db")
    paths.search_json.write_text("{}")
    open_run(_cfg(tmp_path, train__epochs=default_config().train.epochs + 2))
    old = default_config().train.epochs
    assert not paths.results.exists()
    assert (paths.root / "archive" / f"epochs-{old}" / "results.db").read_bytes() == b"stand-in for results.db"
    with pytest.raises(ConfigError, match="can grow"):
        open_run(_cfg(tmp_path, train__epochs=old))  # shrinking back is refused
