"""Per-objective predictors: scikit-learn regressors over ``space.features(cfg)``, chosen by k-fold CV.

Every candidate is a pipeline (feature scaling -> regressor) wrapped so that the target is standardised
too; the candidate with the best cross-validated score (Kendall tau by default) is refitted on all data.
Quality numbers are out-of-fold: Kendall tau, Spearman rho and MAPE (a fraction: 0.05 means 5%).

With a :class:`~supernas.predict.features.FeatureMap` (``features=``) the regressors see its derived
columns (per-block lookup one-hots, counted per-block costs) while the fitted predictor still takes rows
of ``space.features``; a column that the map's cost table computes exactly (``macs``, ``params``,
``bytes``) and that reproduces the measurements is computed, not learned (model ``exact``).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

import joblib
import numpy as np
from scipy.stats import kendalltau, spearmanr
from sklearn.base import RegressorMixin
from sklearn.compose import TransformedTargetRegressor
from sklearn.ensemble import GradientBoostingRegressor
from sklearn.linear_model import RidgeCV
from sklearn.metrics import mean_absolute_percentage_error
from sklearn.model_selection import KFold, cross_val_predict
from sklearn.neural_network import MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVR
from threadpoolctl import threadpool_limits

from ..errors import ConfigError, SupernasError
from ..measure.objectives import split_column
from ..space import Config, SearchSpace
from .features import QUANTITIES, FeatureMap

SELECT_BY = ("kendall_tau", "spearman_rho", "mape")


def _wrap(regressor: Any, scale_x: bool = True) -> RegressorMixin:
    steps = [StandardScaler(), regressor] if scale_x else [regressor]
    return TransformedTargetRegressor(regressor=make_pipeline(*steps), transformer=StandardScaler())


MODELS: dict[str, Callable[[int], RegressorMixin]] = {
    "ridge": lambda seed: _wrap(RidgeCV(alphas=np.logspace(-3, 3, 13))),
    "svr": lambda seed: _wrap(SVR(kernel="rbf", C=10.0, epsilon=0.01, gamma="scale")),
    # 100 trees at rate 0.1: the same CV/held-out tau as 200 at 0.05 on the demo's predictor benchmark, half the time
    "gbm": lambda seed: _wrap(GradientBoostingRegressor(n_estimators=100, max_depth=3, learning_rate=0.1,
                                                        subsample=0.8, random_state=seed), scale_x=False),
    "mlp": lambda seed: _wrap(MLPRegressor(hidden_layer_sizes=(64, 64), alpha=1e-3, learning_rate_init=3e-3,
                                           max_iter=1500, tol=1e-5, random_state=seed)),
}
DEFAULT_MODELS: tuple[str, ...] = ("ridge", "svr", "gbm", "mlp")


def quality(y_true: Sequence[float], y_pred: Sequence[float]) -> dict[str, float]:
    """Kendall tau, Spearman rho and MAPE (fraction) of predictions against measurements."""
    t, p = np.asarray(y_true, dtype=float), np.asarray(y_pred, dtype=float)
    if len(t) < 2 or np.ptp(t) == 0:
        tau = rho = float("nan")
    else:
        tau, rho = float(kendalltau(t, p).statistic), float(spearmanr(t, p).statistic)
    return {"kendall_tau": tau, "spearman_rho": rho, "mape": float(mean_absolute_percentage_error(t, p))}


def _score(q: Mapping[str, float], select: str) -> float:
    v = q[select]
    if np.isnan(v):
        return -np.inf
    return -v if select == "mape" else v


class OnFeatures:
    """A fitted regressor over a :class:`FeatureMap`'s columns; predicts from ``space.features`` rows."""

    def __init__(self, features: FeatureMap, estimator: RegressorMixin) -> None:
        self.features, self.estimator = features, estimator

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.estimator.predict(self.features.transform(X))


class Exact:
    """A quantity computed from a :class:`FeatureMap`'s cost table (no fitting)."""

    def __init__(self, features: FeatureMap, quantity: str) -> None:
        self.features, self.quantity = features, quantity

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.features.totals(X)[:, QUANTITIES.index(self.quantity)]


#: largest relative difference between a cost table's total and a measurement for ``exact`` to be used
EXACT_TOLERANCE = 1e-6


def _exact(features: FeatureMap | None, column: str, X: np.ndarray, y: np.ndarray) -> Exact | None:
    """An :class:`Exact` predictor for ``column`` when the map computes it and it matches every value."""
    if features is None or features.table is None:
        return None
    name = split_column(column)[0] if column else ""
    if name not in features.table.exact:
        return None
    ex = Exact(features, name)
    err = np.abs(ex.predict(X) - y) / np.maximum(np.abs(y), 1e-12)
    return ex if float(err.max()) <= EXACT_TOLERANCE else None


@dataclass
class Predictor:
    """A fitted regressor for one metric column with its cross-validated quality.

    ``quality`` holds ``model``, ``kendall_tau``, ``spearman_rho``, ``mape`` (fraction), ``n_samples``,
    ``folds``, ``candidates`` (the same numbers for every model tried), ``fit_s`` (seconds for the whole
    fit) and ``cv_s`` (seconds each candidate's cross-validation took).
    """

    column: str
    model: str
    estimator: RegressorMixin
    quality: dict[str, Any] = field(default_factory=dict)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predictions for a feature matrix (rows of ``space.features``)."""
        return np.asarray(self.estimator.predict(np.atleast_2d(X)), dtype=float)

    def predict_configs(self, space: SearchSpace, cfgs: Iterable[Mapping[str, Any]]) -> np.ndarray:
        return self.predict(space.features_many(list(cfgs)))

    def save(self, path: str | os.PathLike) -> None:
        joblib.dump(self, path)

    @staticmethod
    def load(path: str | os.PathLike) -> "Predictor":
        return load_predictors(path)  # type: ignore[return-value]


def fit_predictor(X: np.ndarray, y: Sequence[float], *, column: str = "", models: Sequence[str] = DEFAULT_MODELS,
                  folds: int = 5, seed: int = 0, select: str = "kendall_tau",
                  features: FeatureMap | None = None) -> Predictor:
    """Cross-validate every model in ``models`` (names from ``MODELS``), refit the best on all data.

    ``X`` holds rows of ``space.features``. ``select`` is the CV criterion: ``kendall_tau`` (default),
    ``spearman_rho`` or ``mape``. ``features`` (a :class:`FeatureMap` of the same space) gives the models
    its derived columns, and computes ``column`` exactly when its cost table can (quality ``model``
    ``exact``). ``quality["fit_s"]`` is the wall time of the whole fit. Deterministic for a ``seed``.
    BLAS / OpenMP pools are held to one thread while fitting: the matrices are tiny, and a second thread
    only spins (several times slower on a busy machine, the same results).
    """
    with threadpool_limits(limits=1):
        return _fit(X, y, column, models, folds, seed, select, features)


def _fit(X: np.ndarray, y: Sequence[float], column: str, models: Sequence[str], folds: int, seed: int,
         select: str, features: FeatureMap | None) -> Predictor:
    X = np.asarray(X, dtype=float)
    y_arr = np.asarray(y, dtype=float)
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise ConfigError(f"unknown predictor model {unknown[0]!r}; known: {', '.join(MODELS)}")
    if not models:
        raise ConfigError("fit_predictor needs at least one model")
    if select not in SELECT_BY:
        raise ConfigError(f"unknown selection criterion {select!r}; known: {', '.join(SELECT_BY)}")
    if X.ndim != 2 or len(X) != len(y_arr):
        raise ConfigError(f"predictor data: {len(X)} feature rows but {len(y_arr)} targets")
    if not np.all(np.isfinite(y_arr)):
        raise ConfigError(f"predictor data for {column or 'target'} holds non-finite values")
    n_folds = min(folds, len(y_arr))
    if n_folds < 2:
        raise SupernasError(f"need at least 2 measured configs to fit a predictor for {column or 'target'}, "
                            f"got {len(y_arr)}")
    t0 = time.perf_counter()
    base = {"n_samples": int(len(y_arr)), "folds": n_folds, "select": select}
    exact = _exact(features, column, X, y_arr)
    if exact is not None:
        q_ex = quality(y_arr, exact.predict(X))
        return Predictor(column, "exact", exact, {"model": "exact", **q_ex, **base, "candidates": {"exact": q_ex},
                                                  "fit_s": time.perf_counter() - t0})
    Xt = features.transform(X) if features is not None else X
    cv = KFold(n_splits=n_folds, shuffle=True, random_state=seed)
    candidates: dict[str, dict[str, float]] = {}
    cv_s: dict[str, float] = {}
    for name in models:
        t1 = time.perf_counter()
        oof = cross_val_predict(MODELS[name](seed), Xt, y_arr, cv=cv)
        candidates[name] = quality(y_arr, oof)
        cv_s[name] = time.perf_counter() - t1
    best = max(models, key=lambda m: _score(candidates[m], select))  # first wins ties: order is preference
    estimator = MODELS[best](seed).fit(Xt, y_arr)
    if features is not None:
        estimator = OnFeatures(features, estimator)
    q: dict[str, Any] = {"model": best, **candidates[best], **base, "candidates": candidates,
                         "fit_s": time.perf_counter() - t0, "cv_s": cv_s}
    return Predictor(column, best, estimator, q)


def fit_predictors(space: SearchSpace, configs: Sequence[Mapping[str, Any]],
                   values: Sequence[Mapping[str, float]], columns: Sequence[str], **kw: Any) -> dict[str, Predictor]:
    """One predictor per column, from measured ``configs`` and their ``values`` dicts (``kw`` as in
    :func:`fit_predictor`, e.g. ``features=FeatureMap(space, table)``)."""
    if len(configs) != len(values):
        raise ConfigError(f"{len(configs)} configs but {len(values)} measurements")
    X = space.features_many(configs)
    out = {}
    for col in columns:
        missing = [i for i, v in enumerate(values) if col not in v]
        if missing:
            raise ConfigError(f"measurement {missing[0]} has no column {col!r}")
        out[col] = fit_predictor(X, [float(v[col]) for v in values], column=col, **kw)
    return out


def save_predictors(predictors: Predictor | Mapping[str, Predictor], path: str | os.PathLike) -> None:
    """Write one predictor or a ``{column: Predictor}`` dict with joblib."""
    joblib.dump(predictors, path)


def load_predictors(path: str | os.PathLike) -> Predictor | dict[str, Predictor]:
    """Read what :func:`save_predictors` wrote; a missing or foreign file is a one-line error."""
    try:
        obj = joblib.load(path)
    except FileNotFoundError as e:
        raise SupernasError(f"predictor file {path} does not exist") from e
    except Exception as e:  # noqa: BLE001 - any unpickling failure means a foreign or corrupt file
        raise SupernasError(f"{path} is not a supernas predictor file: {type(e).__name__}") from e
    ok = isinstance(obj, Predictor) or (isinstance(obj, dict) and all(isinstance(v, Predictor) for v in obj.values()))
    if not ok:
        raise SupernasError(f"{path} is not a supernas predictor file")
    return obj


def predict_matrix(predictors: Mapping[str, Predictor], columns: Sequence[str], X: np.ndarray) -> np.ndarray:
    """(n, len(columns)) predictions for a feature matrix."""
    return np.column_stack([predictors[c].predict(X) for c in columns])


__all__ = ["DEFAULT_MODELS", "EXACT_TOLERANCE", "MODELS", "Exact", "OnFeatures", "Predictor", "fit_predictor", "fit_predictors", "load_predictors",
           "predict_matrix", "quality", "save_predictors"]
