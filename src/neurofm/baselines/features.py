"""One-line hand features per task: pure functions of arrays, fixed before any data was seen.

Each is the rule a radiologist would write on a napkin, so a learned model's gain can be read
beside the gain over it (docs/baselines.md). Rules, fixed in advance and not tuned on test data:

- head mask: voxels > 0 in every sequence the feature reads (inputs are skull-stripped with a
  zero background, as the embedded benchmark writes them and most clinical pipelines deliver);
- intensities are z-scored per case within the head, so a site's arbitrary intensity scale
  cancels;
- infarct: the 99.9th percentile of z(DWI) - z(ADC) inside the head (a lesion is bright on
  DWI and dark on ADC; the percentile, not the maximum, so one noisy voxel does not decide);
- brain age: the fraction of head voxels darker than half the head's median T1 intensity
  (CSF, i.e. ventricles and sulci, widen with age);
- meningioma: head voxels with z(DWI) above a threshold, keeping the largest 6-connected
  component (a meningioma is one mass, mildly bright on DWI b1000).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

INFARCT_PERCENTILE = 99.9
DARK_T1_FRACTION_OF_MEDIAN = 0.5


def head_mask(*channels: np.ndarray) -> np.ndarray:
    """Voxels > 0 in every given channel (same shape)."""
    mask = np.ones(channels[0].shape, dtype=bool)
    for c in channels:
        mask &= c > 0
    return mask


def zscore_within(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``(image - mean) / std`` with mean and std taken inside ``mask`` (std 0 gives zeros)."""
    values = image[mask].astype(np.float64)
    std = float(values.std())
    if std == 0.0:
        return np.zeros(image.shape, dtype=np.float64)
    return (image.astype(np.float64) - float(values.mean())) / std


def infarct_score(dwi: np.ndarray, adc: np.ndarray) -> float:
    """99.9th percentile of z(DWI) - z(ADC) inside the head (both > 0)."""
    head = head_mask(dwi, adc)
    diff = zscore_within(dwi, head)[head] - zscore_within(adc, head)[head]
    return float(np.percentile(diff, INFARCT_PERCENTILE))


def dark_t1_fraction(t1: np.ndarray) -> float:
    """Fraction of head voxels (T1 > 0) below half the head's median T1 intensity."""
    values = t1[t1 > 0]
    return float(np.mean(values < DARK_T1_FRACTION_OF_MEDIAN * float(np.median(values))))


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 6-connected component of a binary mask (empty stays empty)."""
    labels, n = ndimage.label(mask)
    if n == 0:
        return np.zeros(mask.shape, dtype=bool)
    sizes = np.bincount(labels.ravel())[1:]
    return np.asarray(labels == int(np.argmax(sizes)) + 1)


def threshold_segment(z: np.ndarray, head: np.ndarray, threshold: float) -> np.ndarray:
    """Largest component of the head voxels with ``z > threshold``."""
    return largest_component((z > threshold) & head)
