"""Colour-blind-safe colours (Okabe & Ito 2008), one per model, shared by plots and the viewer.

Bluish green is kept for the reference mask in the viewer, so no model is ever drawn in it.
"""

from __future__ import annotations

from collections.abc import Sequence

REFERENCE_COLOUR = "#009E73"
_MODEL_COLOURS = ("#0072B2", "#D55E00", "#E69F00", "#56B4E9", "#CC79A7", "#F0E442", "#000000")


def model_colours(models: Sequence[str]) -> dict[str, str]:
    """Fixed colour per model in sorted-name order, so every page colours a model the same."""
    return {m: _MODEL_COLOURS[i % len(_MODEL_COLOURS)] for i, m in enumerate(sorted(set(models)))}
