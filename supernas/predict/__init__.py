"""Per-objective predictors of a sub-network's measurements from its config features."""
from .models import (DEFAULT_MODELS, MODELS, Predictor, fit_predictor, fit_predictors, load_predictors,
                     predict_matrix, quality, save_predictors)

__all__ = ["DEFAULT_MODELS", "MODELS", "Predictor", "fit_predictor", "fit_predictors", "load_predictors",
           "predict_matrix", "quality", "save_predictors"]
