"""Pure metric functions and the registry that says how each is computed from tidy rows."""

from neurofm.metrics.classification import (
    auroc,
    average_precision,
    balanced_accuracy,
    expected_calibration_error,
)
from neurofm.metrics.registry import (
    KIND_CASE_ROWS,
    METRICS,
    MetricSpec,
    case_metrics,
)
from neurofm.metrics.regression import absolute_error, bias, mae, pearson, rmse
from neurofm.metrics.segmentation import (
    assd,
    dice,
    hd95,
    normalised_surface_distance,
    segmentation_metrics,
    surface_distances,
)

__all__ = [
    "KIND_CASE_ROWS",
    "METRICS",
    "MetricSpec",
    "absolute_error",
    "assd",
    "auroc",
    "average_precision",
    "balanced_accuracy",
    "bias",
    "case_metrics",
    "dice",
    "expected_calibration_error",
    "hd95",
    "mae",
    "normalised_surface_distance",
    "pearson",
    "rmse",
    "segmentation_metrics",
    "surface_distances",
]
