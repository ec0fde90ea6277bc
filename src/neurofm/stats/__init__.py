"""Seeded case-bootstrap intervals and paired model comparisons (pure functions)."""

from neurofm.stats.bootstrap import (
    ConfidenceInterval,
    bootstrap_ci,
    bootstrap_indices,
    bootstrap_values,
    percentile_interval,
)
from neurofm.stats.paired import (
    PairedComparison,
    p_not_better,
    paired_comparison,
    wilcoxon_greater,
)

__all__ = [
    "ConfidenceInterval",
    "PairedComparison",
    "bootstrap_ci",
    "bootstrap_indices",
    "bootstrap_values",
    "p_not_better",
    "paired_comparison",
    "percentile_interval",
    "wilcoxon_greater",
]
