"""Self-supervised losses as pure functions (lightly-style), plus the projection head they need.

Written here rather than imported: lightly is not a dependency and MONAI's ``ContrastiveLoss``
normalises by the batch differently and is not symmetric in the two views.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from neurofm.errors import NeuroFMError


def masked_reconstruction_loss(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Mean squared error over masked voxels only (MAE: visible voxels carry no loss).

    ``pred``/``target``: ``(B, C, X, Y, Z)``; ``mask``: bool ``(B, 1, X, Y, Z)`` or
    ``(B, C, X, Y, Z)``, True where the input was hidden. An all-False mask gives 0.
    """
    weight = mask.to(pred.dtype).expand_as(pred)
    squared = (pred - target).square() * weight
    return squared.sum() / weight.sum().clamp_min(1.0)


def info_nce(z1: Tensor, z2: Tensor, temperature: float = 0.1) -> Tensor:
    """Symmetric NT-Xent (SimCLR) over a batch of positive pairs ``(z1[i], z2[i])``.

    Each of the 2B embeddings is an anchor whose positive is its pair and whose negatives are
    the other 2B - 2; cosine similarities are divided by ``temperature``. Shapes ``(B, D)``.
    """
    if z1.shape != z2.shape or z1.ndim != 2 or z1.shape[0] < 2:
        raise NeuroFMError(
            "info_nce",
            f"needs two (B, D) embeddings with B >= 2 (raise the batch size), got "
            f"{tuple(z1.shape)} and {tuple(z2.shape)}",
        )
    b = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    logits = z @ z.T / temperature
    self_mask = torch.eye(2 * b, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    targets = torch.cat([torch.arange(b, 2 * b), torch.arange(b)]).to(z.device)
    return F.cross_entropy(logits, targets)


class ProjectionHead(nn.Module):
    """SimCLR projection MLP ``Linear -> ReLU -> Linear`` from embedding to contrastive space.

    No batch norm: per-rank batches in few-GPU pretraining can be tiny.
    """

    def __init__(self, in_dim: int, hidden_dim: int = 256, out_dim: int = 128) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden_dim), nn.ReLU(inplace=True), nn.Linear(hidden_dim, out_dim)
        )

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.net(x)
        return out
