"""Post-processing of predicted masks, chosen per run (``FinetuneRunConfig.largest_component``).

Keeping only the largest connected component is nnU-Net's standard post-processing for a
one-lesion-per-case target: on development seeds it removed the scattered false-positive blobs
that dominate the out-of-domain HD95 of meningioma models (docs/model-quality.md). Components
are face-connected (``scipy.ndimage.label``'s default), the rule that was measured.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def keep_largest_component(mask: np.ndarray) -> np.ndarray:
    """``mask`` (any shape, nonzero = foreground) reduced to its largest connected component,
    same dtype; an empty mask stays empty, ties keep the component found first."""
    labels, n = ndimage.label(mask != 0)
    if n <= 1:
        return mask
    sizes = np.bincount(labels.ravel())[1:]
    keep = labels == 1 + int(np.argmax(sizes))
    return np.where(keep, mask, np.zeros_like(mask))
