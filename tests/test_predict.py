"""Predictors: cross-validated model choice, quality reporting, determinism, save/load, bad input."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import kendalltau, spearmanr

from search_fixtures import wide_eval, wide_space
from supernas.errors import ConfigError, SupernasError
from supernas.predict import (Predictor, fit_predictor, fit_predictors, load_predictors, quality,
                              save_predictors)


@pytest.fixture(scope="module")
def data():
    space = wide_space()
    cfgs = space.sample_many(120, seed=3)
    return space, cfgs, [wide_eval(c) for c in cfgs]


def test_quality_matches_scipy_and_extremes():
    rng = np.random.default_rng(0)
    y = rng.uniform(1, 2, 50)
    p = y + rng.normal(0, 0.1, 50)
    q = quality(y, p)
    assert q["kendall_tau"] == pytest.approx(kendalltau(y, p).statistic)
    assert q["spearman_rho"] == pytest.approx(spearmanr(y, p).statistic)
    assert q["mape"] == pytest.approx(np.mean(np.abs(p - y) / y))
    assert quality(y, y)["kendall_tau"] == pytest.approx(1.0) and quality(y, y)["mape"] == 0
    assert quality(y, -y)["kendall_tau"] == pytest.approx(-1.0)


def test_fit_predictor_reports_cv_quality_and_picks_best(data):
    space, cfgs, vals = data
    X = space.features_many(cfgs)
    pred = fit_predictor(X, [v["latency_ms@cpu"] for v in vals], column="latency_ms@cpu",
                         models=("ridge", "gbm", "svr"), folds=4, seed=0)
    q = pred.quality
    assert set(q["candidates"]) == {"ridge", "gbm", "svr"}
    assert pred.model == max(q["candidates"], key=lambda m: q["candidates"][m]["kendall_tau"])
    assert q["n_samples"] == 120 and q["folds"] == 4
    for key in ("kendall_tau", "spearman_rho", "mape"):
        assert q[key] == q["candidates"][pred.model][key]
    assert q["kendall_tau"] > 0.8 and q["mape"] < 0.1  # latency is smooth in the features
    # held-out quality agrees with the CV estimate
    test = space.sample_many(300, seed=99)
    held = quality([wide_eval(c)["latency_ms@cpu"] for c in test], pred.predict_configs(space, test))
    assert held["kendall_tau"] > 0.8


def test_select_by_mape_and_determinism(data):
    space, cfgs, vals = data
    X = space.features_many(cfgs)
    y = [v["accuracy"] for v in vals]
    a = fit_predictor(X, y, models=("ridge", "mlp"), folds=3, seed=5, select="mape")
    b = fit_predictor(X, y, models=("ridge", "mlp"), folds=3, seed=5, select="mape")
    assert a.model == min(a.quality["candidates"], key=lambda m: a.quality["candidates"][m]["mape"])
    assert np.array_equal(a.predict(X), b.predict(X))
    assert a.quality["candidates"] == b.quality["candidates"]


def test_fit_predictors_save_load_roundtrip(data, tmp_path):
    space, cfgs, vals = data
    preds = fit_predictors(space, cfgs, vals, ["accuracy", "latency_ms@cpu"], models=("ridge",), folds=3)
    assert set(preds) == {"accuracy", "latency_ms@cpu"} and all(isinstance(p, Predictor) for p in preds.values())
    save_predictors(preds, tmp_path / "p.joblib")
    back = load_predictors(tmp_path / "p.joblib")
    X = space.features_many(cfgs[:10])
    for col in preds:
        assert np.array_equal(back[col].predict(X), preds[col].predict(X))
        assert back[col].quality == preds[col].quality
    preds["accuracy"].save(tmp_path / "one.joblib")
    assert Predictor.load(tmp_path / "one.joblib").column == "accuracy"


def test_bad_input_is_one_line_error(data, tmp_path):
    space, cfgs, vals = data
    X = space.features_many(cfgs)
    y = [v["accuracy"] for v in vals]
    with pytest.raises(ConfigError, match="unknown predictor model 'xgb'"):
        fit_predictor(X, y, models=("xgb",))
    with pytest.raises(ConfigError, match="selection criterion"):
        fit_predictor(X, y, select="r2")
    with pytest.raises(SupernasError, match="at least 2"):
        fit_predictor(X[:1], y[:1])
    with pytest.raises(ConfigError, match="non-finite"):
        fit_predictor(X[:5], [1.0, 2.0, float("nan"), 3.0, 4.0])
    (tmp_path / "junk").write_bytes(b"not a pickle")
    with pytest.raises(SupernasError, match="not a supernas predictor file"):
        load_predictors(tmp_path / "junk")
    with pytest.raises(SupernasError, match="does not exist"):
        load_predictors(tmp_path / "missing")
