"""Self-supervised losses: masked reconstruction and symmetric InfoNCE (NT-Xent)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from neurofm.errors import NeuroFMError
from neurofm.pretrain import ProjectionHead, info_nce, masked_reconstruction_loss


def test_masked_loss_ignores_unmasked_voxels_and_matches_manual_mse() -> None:
    g = torch.Generator().manual_seed(0)
    pred = torch.randn(2, 1, 6, 6, 6, generator=g)
    target = torch.randn(2, 1, 6, 6, 6, generator=g)
    mask = torch.rand(2, 1, 6, 6, 6, generator=g) < 0.4
    loss = masked_reconstruction_loss(pred, target, mask)
    expected = ((pred - target)[mask] ** 2).mean()
    torch.testing.assert_close(loss, expected)
    changed = torch.where(mask, pred, pred + 100.0)
    torch.testing.assert_close(masked_reconstruction_loss(changed, target, mask), loss)
    moved = torch.where(mask, pred + 1.0, pred)
    assert masked_reconstruction_loss(moved, target, mask) != loss
    empty = torch.zeros_like(mask)
    assert masked_reconstruction_loss(pred, target, empty) == 0


def _nt_xent_loop(z1: torch.Tensor, z2: torch.Tensor, t: float) -> float:
    """Textbook SimCLR loss written with Python loops (independent reference)."""
    z = [F.normalize(v, dim=0) for v in torch.cat([z1, z2])]
    n = len(z) // 2
    total = 0.0
    for i in range(2 * n):
        pos = (i + n) % (2 * n)
        num = math.exp(float(z[i] @ z[pos]) / t)
        den = sum(math.exp(float(z[i] @ z[k]) / t) for k in range(2 * n) if k != i)
        total += -math.log(num / den)
    return total / (2 * n)


def test_info_nce_matches_loop_reference_and_is_symmetric() -> None:
    g = torch.Generator().manual_seed(1)
    z1, z2 = torch.randn(5, 8, generator=g), torch.randn(5, 8, generator=g)
    for t in (0.1, 0.5):
        assert info_nce(z1, z2, t).item() == pytest.approx(_nt_xent_loop(z1, z2, t), rel=1e-5)
    torch.testing.assert_close(info_nce(z1, z2), info_nce(z2, z1))


def test_matching_pairs_score_lower_than_shuffled_pairs() -> None:
    g = torch.Generator().manual_seed(2)
    z = torch.randn(8, 16, generator=g)
    noisy = z + 0.1 * torch.randn(8, 16, generator=g)
    shuffled = noisy[torch.roll(torch.arange(8), 1)]
    assert info_nce(z, noisy) < info_nce(z, shuffled) - 1.0


def test_info_nce_needs_two_pairs() -> None:
    with pytest.raises(NeuroFMError, match="B >= 2"):
        info_nce(torch.randn(1, 4), torch.randn(1, 4))


def test_projection_head_shape() -> None:
    head = ProjectionHead(16, hidden_dim=32, out_dim=8)
    assert head(torch.randn(3, 16)).shape == (3, 8)
