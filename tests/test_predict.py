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
    assert set(q["cv_s"]) == {"ridge", "gbm", "svr"} and q["fit_s"] >= sum(q["cv_s"].values()) > 0
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


# ----------------------------------------------------------------------------- derived features
from search_fixtures import small_eval, small_space  # noqa: E402
from supernas.predict import FeatureMap, blocks_of, build_cost_table, count_costs  # noqa: E402


def test_blocks_and_lookup_one_hots():
    space = small_space()
    blocks = {b.name: b for b in blocks_of(space)}
    assert set(blocks) == {"fixed", "b1", "b2"}
    names = space.names
    assert [names[j] for j in blocks["b1"].local] == ["b1.kernel"]
    assert [names[j] for j in blocks["b1"].context] == ["width", "res"]  # top-level free choices
    assert blocks["b1"].size == 3 * 4 * 3 and blocks["fixed"].size == 4 * 3
    cfgs = list(space.enumerate())
    fmap = FeatureMap(space, parts=("lookup",))
    Z = fmap.lookup(space.features_many(cfgs))
    active = np.array([1 + (c["depth"] > 1) + (c["depth"] > 2) for c in cfgs])
    assert np.array_equal(Z.sum(axis=1), active)  # one 1 per active block and one for the fixed layers
    assert len(np.unique(Z, axis=0)) == len(cfgs)  # a lossless encoding
    assert fmap.transform(space.features_many(cfgs)).shape == (len(cfgs), fmap.n_lookup) == (len(cfgs), len(fmap.names()))


def test_lookup_makes_products_of_choices_linear():
    """small_eval's macs (res^2 x width x (1 + depth/2 + kernels/7)) is a sum of per-block products:
    exactly linear in the lookup columns, not in the ordinal/one-hot base features."""
    from sklearn.linear_model import LinearRegression

    space = small_space()
    cfgs = list(space.enumerate())
    y = np.array([small_eval(c)["macs"] for c in cfgs])
    X = space.features_many(cfgs)
    base = LinearRegression().fit(X, y)
    look = LinearRegression().fit(FeatureMap(space, parts=("lookup",)).transform(X), y)
    lookup_err = np.max(np.abs(look.predict(FeatureMap(space, parts=("lookup",)).transform(X)) - y) / y)
    assert lookup_err < 1e-8
    assert np.max(np.abs(base.predict(X) - y) / y) > 0.05


def test_feature_map_rejects_foreign_rows():
    space = small_space()
    with pytest.raises(ConfigError, match="columns"):
        FeatureMap(space).transform(np.zeros((2, 5)))
    with pytest.raises(ConfigError, match="unknown feature part"):
        FeatureMap(space, parts=("bogus",))
    with pytest.raises(ConfigError, match="CostTable"):
        FeatureMap(space).totals(space.features_many([space.largest()]))


def test_cost_table_belongs_to_its_space(tiny_table):
    with pytest.raises(ConfigError, match="another search space"):
        FeatureMap(small_space(), tiny_table)


@pytest.fixture(scope="module")
def tiny_mbv3():
    import torch

    import supernas as sn
    torch.manual_seed(0)
    return sn.create_supernet("mbv3", num_classes=10, image_size=8, in_channels=1, width_mult=0.25, stem_stride=1,
                              last_channels=16, depths=(1, 2), kernel_sizes=(3,), expand_ratios=(2, 4),
                              resolutions=(4, 8)).eval()


@pytest.fixture(scope="module")
def tiny_table(tiny_mbv3):
    return build_cost_table(tiny_mbv3, seed=0, check=8)


def test_cost_table_is_exact_for_additive_costs(tiny_mbv3, tiny_table):
    space = tiny_mbv3.space
    assert set(tiny_table.exact) >= {"macs", "params", "bytes", "activations", "ops"}
    fmap = FeatureMap(space, tiny_table)
    cfgs = space.sample_many(6, seed=42)
    X = space.features_many(cfgs)
    counted = [count_costs(tiny_mbv3.extract(c).eval(), tiny_mbv3.example_input(c)) for c in cfgs]
    from supernas.measure import count
    direct = [count(tiny_mbv3.extract(c).eval(), example=tiny_mbv3.example_input(c)) for c in cfgs]
    assert [c["macs"] for c in counted] == [d["macs"] for d in direct]
    tot = fmap.totals(X)
    for k, q in enumerate(("macs", "params", "bytes", "activations", "ops")):
        assert np.allclose(tot[:, k], [c[q] for c in counted], rtol=1e-9)
    assert np.allclose(fmap.block_costs(X).sum(axis=1), tot)
    Xt = fmap.transform(X)
    assert Xt.shape[1] == len(fmap.names()) and np.all(np.isfinite(Xt))


def test_a_stages_first_block_reads_the_width_before_it(small_resnet, tiny_mbv3):
    """In the elastic ResNet a stage's first block (and its projection) reads the previous stage's (or the
    stem's) width: that width is in its context; later blocks read only their own stage's width."""
    names = small_resnet.space.names
    context = {b.name: [names[j] for j in b.context] for b in blocks_of(small_resnet.space)}
    assert context["stage1.block1"] == ["stage1.width", "stem.width"]
    assert context["stage3.block1"] == ["stage3.width", "stage2.width"]
    assert context["stage3.block2"] == ["stage3.width"]
    features = {b.name: [names[j] for j in b.context] for b in blocks_of(small_resnet.space, inputs=False)}
    assert features["stage3.block1"] == ["stage3.width"]  # the one-hot features get the input width as costs
    m = tiny_mbv3.space  # no free widths in mbv3: only the resolution, as before
    assert all([m.names[j] for j in b.context] == ["resolution"] for b in blocks_of(m))


@pytest.mark.slow
def test_cost_table_is_exact_on_resnet_and_says_when_it_is_not(small_resnet, monkeypatch):
    """With the width before a stage in its first block's context, the ResNet's MACs, parameters and
    bytes are sums of per-block costs (computed exactly, as on mbv3). When the joint size cap drops that
    context, they are not, and the table must say so."""
    from supernas.predict import features

    table = build_cost_table(small_resnet, seed=0, check=8)
    assert set(table.exact) >= {"macs", "params", "bytes"}
    fmap = FeatureMap(small_resnet.space, table)
    cfgs = small_resnet.space.sample_many(5, seed=3)
    X = small_resnet.space.features_many(cfgs)
    from supernas.measure import count
    assert np.allclose(fmap.totals(X)[:, 0], [count(small_resnet.extract(c).eval(), example=small_resnet.example_input(c))
                                              ["macs"] for c in cfgs], rtol=1e-9)
    assert fmap.transform(X).shape[1] == len(fmap.names())
    assert fmap.lookup(X, fmap.feature_blocks).shape[1] < fmap.n_lookup  # features: the smaller one-hots
    monkeypatch.setattr(features, "MAX_JOINT", 2)
    capped = build_cost_table(small_resnet, seed=0, check=8)
    assert "macs" not in capped.exact and capped.max_rel_error["macs"] > 1e-6


def test_exact_columns_are_computed_and_others_learned(tiny_mbv3, tiny_table, tmp_path):
    space = tiny_mbv3.space
    fmap = FeatureMap(space, tiny_table)
    cfgs = space.sample_many(30, seed=5)
    X = space.features_many(cfgs)
    macs = fmap.totals(X)[:, 0]
    pred = fit_predictor(X, macs, column="macs", features=fmap, folds=3)
    assert pred.model == "exact" and pred.quality["mape"] == 0 and pred.quality["kendall_tau"] == pytest.approx(1)
    test = space.sample_many(10, seed=9)
    from supernas.measure import count
    truth = [count(tiny_mbv3.extract(c).eval(), example=tiny_mbv3.example_input(c))["macs"] for c in test]
    assert np.allclose(pred.predict_configs(space, test), truth)
    off = fit_predictor(X, macs * (1 + 0.01 * np.sin(np.arange(30))), column="macs", features=fmap, folds=3,
                        models=("ridge",))  # another counting convention: learned, not computed
    assert off.model == "ridge" and "exact" not in off.quality["candidates"]
    lat = fit_predictor(X, 1 + macs / 1e5, column="latency_ms@cpu", features=fmap, folds=3, models=("ridge",))
    assert lat.model == "ridge" and lat.quality["fit_s"] > 0
    save_predictors({"macs": pred, "lat": lat}, tmp_path / "p.joblib")
    back = load_predictors(tmp_path / "p.joblib")
    for k, p in (("macs", pred), ("lat", lat)):
        assert np.array_equal(back[k].predict(X), p.predict(X))


def test_predictors_on_features_take_linas_rows(tiny_mbv3, tiny_table):
    """A predictor fitted with a FeatureMap predicts from the same rows LINAS builds from vectors."""
    from supernas.search.linas import canonical_vectors, vector_features

    space = tiny_mbv3.space
    fmap = FeatureMap(space, tiny_table)
    cfgs = space.sample_many(25, seed=1)
    X = space.features_many(cfgs)
    y = fmap.totals(X)[:, 4] * 0.01 + fmap.totals(X)[:, 0] * 1e-5
    pred = fit_predictor(X, y, column="latency_ms@cpu", features=fmap, folds=3, models=("ridge", "gbm"))
    Xv = vector_features(space, canonical_vectors(space, np.stack([space.encode(c) for c in cfgs])))
    assert np.array_equal(pred.predict(Xv), pred.predict(X))
    assert quality(y, pred.predict(X))["kendall_tau"] > 0.95


def test_linas_with_a_feature_map_computes_exact_columns(tiny_mbv3, tiny_table):
    """LINAS given a FeatureMap: MACs come from the cost table (every scenario equals the count), the
    learned column's ensemble sees the derived features, proposals stay new and seeded."""
    from supernas.errors import ConfigError
    from supernas.search import create_strategy
    from supernas.search.acquisition import BootstrapEnsemble, KnownColumn

    space = tiny_mbv3.space
    fmap = FeatureMap(space, tiny_table)

    def evaluate(cfg):
        t = fmap.totals(space.features_many([cfg]))[0]
        return {"accuracy": 0.5 + 0.1 * np.log(t[0]) - 1e-4 * t[4], "macs": float(t[0])}

    def run(seed):
        s = create_strategy("linas", space, ["accuracy", "macs"], seed=seed, models=("ridge",), initial=8,
                            population=3, features=fmap)
        keys = []
        for _ in range(5):
            cfgs = s.ask(3)
            s.tell(cfgs, [evaluate(c) for c in cfgs])
            keys += [space.key(c) for c in cfgs]
        return s, keys

    s, keys = run(0)
    assert len(set(keys)) == len(keys) == 14 and run(0)[1] == keys  # 3 + 3 + 2 initial, then rounds of 3
    assert isinstance(s.ensembles["macs"], KnownColumn) and isinstance(s.ensembles["accuracy"], BootstrapEnsemble)
    test = space.sample_many(5, seed=3)
    X = space.features_many(test)
    scen = s.ensembles["macs"].scenarios(X, 4, np.random.default_rng(0))
    assert scen.shape == (4, 5) and np.allclose(scen, fmap.totals(X)[:, 0])
    assert s.ensembles["accuracy"].transform is not None
    parts = create_strategy("linas", space, ["accuracy", "macs"], features=["base", "lookup"])
    assert parts.features.parts == ("base", "lookup")
    with pytest.raises(ConfigError, match="unknown feature part 'cost'"):
        create_strategy("linas", space, ["accuracy", "macs"], features=["cost"])
