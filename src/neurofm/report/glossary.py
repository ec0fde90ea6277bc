"""Plain-language names, units and meanings of the metrics, for readers who are not statisticians.

Whether higher is better comes from :mod:`neurofm.metrics` where it defines it; the words here
are only for display.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MetricInfo:
    """How to name and explain a metric on the page."""

    label: str
    unit: str
    meaning: str
    decimals: int = 2
    """Decimals shown: three for scores on a 0–1 scale, two for mm and years."""

    @property
    def axis_label(self) -> str:
        return f"{self.label} ({self.unit})" if self.unit else self.label


METRICS: dict[str, MetricInfo] = {
    "dice": MetricInfo(
        "Dice",
        "0–1",
        "Overlap between the predicted and the reference tumour mask: 1 is a perfect match, "
        "0 no overlap.",
        3,
    ),
    "nsd": MetricInfo(
        "Normalised surface Dice",
        "0–1",
        "Share of the predicted and reference tumour borders that lie within a small tolerance "
        "(a few mm) of each other: how often the outline is close enough to be clinically "
        "acceptable.",
        3,
    ),
    "hd95": MetricInfo(
        "HD95",
        "mm",
        "95th percentile of the distance between the predicted and the reference border: the "
        "size of the worst errors, ignoring the 5 % most extreme.",
    ),
    "auroc": MetricInfo(
        "AUROC",
        "0–1",
        "Chance that a random scan with an infarct gets a higher score than a random scan "
        "without one: 0.5 is guessing, 1 is perfect separation.",
        3,
    ),
    "ap": MetricInfo(
        "Average precision",
        "0–1",
        "Area under the precision-recall curve: how clean the list of flagged scans is across "
        "all thresholds; a random model scores the infarct prevalence.",
        3,
    ),
    "balanced_accuracy": MetricInfo(
        "Balanced accuracy",
        "0–1",
        "Mean of sensitivity and specificity at a probability threshold of 0.5.",
        3,
    ),
    "ece": MetricInfo(
        "Calibration error (ECE)",
        "0–1",
        "How far the predicted probabilities are from the observed rates: when the model says "
        "70 %, about 70 % of such scans should have an infarct. 0 is perfectly calibrated.",
        3,
    ),
    "assd": MetricInfo(
        "Average surface distance",
        "mm",
        "Average distance between the predicted and the reference tumour border.",
    ),
    "mae": MetricInfo(
        "Mean absolute error",
        "years",
        "Average difference between the predicted and the true age.",
    ),
    "rmse": MetricInfo(
        "Root mean squared error",
        "years",
        "Like the mean absolute error, but large misses count more.",
    ),
    "pearson": MetricInfo(
        "Pearson r",
        "−1–1",
        "Linear correlation between predicted and true age: 1 means the predictions rise "
        "perfectly with age.",
        3,
    ),
    "bias": MetricInfo(
        "Bias",
        "years",
        "Average of predicted minus true age: above 0 the model makes brains look older, "
        "below 0 younger. Best at 0.",
    ),
}


def metric_info(name: str) -> MetricInfo:
    """Known metrics get their plain words; unknown ones are shown under their own name."""
    return METRICS.get(name, MetricInfo(name, "", ""))
