"""A fresh voxel head starts at a small foreground prior (the overfit check's defect).

Before, the 1x1x1 head kept PyTorch's random bias (up to ±0.35): a fresh segmentation model
predicted probability ~0.5 everywhere and a fresh MIL model called every case positive, and the
recipe's few hundred steps barely moved the bias (docs/model-quality.md)."""

from __future__ import annotations

import torch

from neurofm.models import TaskModelConfig, build_task_model, get_preset
from neurofm.models.heads import VOXEL_PRIOR


def _fresh(kind: str, head: str, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    cfg = TaskModelConfig(get_preset("tiny", in_channels=2), kind=kind, head=head)  # type: ignore[arg-type]
    return build_task_model(cfg).eval()


def test_fresh_voxel_heads_predict_the_prior_not_a_coin_flip() -> None:
    torch.set_num_threads(1)
    x = torch.randn(2, 2, 32, 32, 32)
    for seed in range(3):
        with torch.no_grad():
            seg = torch.sigmoid(_fresh("segmentation", "linear", seed)(x))
            mil = torch.sigmoid(_fresh("classification", "mil", seed)(x))
        assert float(seg.mean()) < 0.05
        assert float(mil.max()) < 0.5
    head = _fresh("segmentation", "linear", 0).head
    assert isinstance(head, torch.nn.Conv3d) and head.bias is not None
    assert torch.allclose(torch.sigmoid(head.bias), torch.tensor([VOXEL_PRIOR]))
