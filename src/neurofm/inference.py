"""The one way a task model is applied to a preprocessed image.

Finetuning validation (which picks the best checkpoint) and deployed prediction both call
:func:`infer`, so the checkpoint is chosen with exactly the inferer that will serve it:
segmentation runs MONAI's sliding-window inference with Gaussian blending on the preprocessed
grid (padded to at least one window), the other tasks centre-crop or pad the image to the
model's input size and read one output. What comes back is on the preprocessed grid and in model
units (probability map, or raw logit / standardised value); mapping it to the file's grid and to
years or probabilities is the caller's job.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from monai.inferers import sliding_window_inference

from neurofm.models import TaskModel

SW_OVERLAP = 0.5
SW_MODE = "gaussian"
SW_BATCH = 2


def fit_to_shape(
    image: np.ndarray, shape: tuple[int, ...], pad_values: Sequence[float]
) -> np.ndarray:
    """Centre-crop or pad ``(C, X, Y, Z)`` to ``shape`` (spatial), padding channel c with
    ``pad_values[c]`` (the normalised value of air) so padding looks like background."""
    out = np.empty((image.shape[0], *shape), dtype=np.float32)
    for c, v in enumerate(pad_values):
        out[c] = v
    src, dst = [], []
    for n, m in zip(image.shape[1:], shape, strict=True):
        if n >= m:
            a = (n - m) // 2
            src.append(slice(a, a + m))
            dst.append(slice(0, m))
        else:
            a = (m - n) // 2
            src.append(slice(0, n))
            dst.append(slice(a, a + n))
    out[(slice(None), *dst)] = image[(slice(None), *src)]
    return out


def pad_to_at_least(
    image: np.ndarray, shape: tuple[int, ...], pad_values: Sequence[float]
) -> tuple[np.ndarray, tuple[slice, ...]]:
    """Pad ``(C, X, Y, Z)`` to spatial sizes >= ``shape``; returns the crop that undoes it."""
    target = tuple(max(n, m) for n, m in zip(image.shape[1:], shape, strict=True))
    if target == image.shape[1:]:
        return image, tuple(slice(0, n) for n in image.shape[1:])
    out = fit_to_shape(image, target, pad_values)
    starts = [(t - n) // 2 for t, n in zip(target, image.shape[1:], strict=True)]
    return out, tuple(slice(a, a + n) for a, n in zip(starts, image.shape[1:], strict=True))


@torch.no_grad()
def segment_probability(
    model: TaskModel,
    image: np.ndarray,
    roi: tuple[int, int, int],
    pad_values: Sequence[float],
    device: torch.device,
) -> np.ndarray:
    """Foreground probability ``(X, Y, Z)`` float32 on ``image``'s grid."""
    model.eval()
    padded, crop = pad_to_at_least(image, roi, pad_values)
    x = torch.from_numpy(padded)[None].to(device)
    logits = sliding_window_inference(
        x, roi, sw_batch_size=SW_BATCH, predictor=model, overlap=SW_OVERLAP, mode=SW_MODE
    )
    assert isinstance(logits, torch.Tensor)
    return np.asarray(torch.sigmoid(logits)[0, 0].float().cpu().numpy()[crop], dtype=np.float32)


@torch.no_grad()
def volume_output(
    model: TaskModel,
    image: np.ndarray,
    size: tuple[int, int, int],
    pad_values: Sequence[float],
    device: torch.device,
) -> float:
    """The model's single output (logit, or standardised value) for the whole image."""
    model.eval()
    x = torch.from_numpy(fit_to_shape(image, size, pad_values))[None].to(device)
    return float(model(x).float().reshape(-1)[0].cpu())


def infer(
    model: TaskModel,
    kind: str,
    image: np.ndarray,
    pad_values: Sequence[float],
    *,
    input_size: tuple[int, int, int],
    patch_size: tuple[int, int, int],
    device: torch.device,
) -> float | np.ndarray:
    """Probability map (segmentation) or single output (other kinds) of one preprocessed image."""
    if kind == "segmentation":
        return segment_probability(model, image, patch_size, pad_values, device)
    return volume_output(model, image, input_size, pad_values, device)
