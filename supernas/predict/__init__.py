"""Per-objective predictors of a sub-network's measurements from its config features."""
from .features import (QUANTITIES, Block, CostTable, FeatureMap, as_feature_map, blocks_of, build_cost_table,
                       count_costs)
from .models import (DEFAULT_MODELS, EXACT_TOLERANCE, MODELS, Exact, OnFeatures, Predictor, fit_predictor,
                     fit_predictors, load_predictors, predict_matrix, quality, save_predictors)

__all__ = ["Block", "CostTable", "DEFAULT_MODELS", "EXACT_TOLERANCE", "Exact", "FeatureMap", "MODELS", "OnFeatures",
           "Predictor", "QUANTITIES", "as_feature_map", "blocks_of", "build_cost_table", "count_costs", "fit_predictor",
           "fit_predictors", "load_predictors", "predict_matrix", "quality", "save_predictors"]
