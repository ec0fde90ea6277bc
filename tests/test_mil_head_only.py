"""A MIL head ranks only voxels inside the head (the overfit check's air shortcut).

Before, the top-k voxel scores of a MIL model could all lie in air outside the head: a
memorising model put 2 of 3 positive cases' evidence 12-16 mm outside the head
(docs/model-quality.md), and air differs between scanners."""

from __future__ import annotations

from dataclasses import replace

import torch

from neurofm.models import TaskModelConfig, build_task_model, get_preset
from neurofm.models.heads import restrict_to_head


def _head_and_air(seed: int = 0) -> torch.Tensor:
    """Two channels, a 24^3 'head' of tissue values in a 32^3 volume of air at the minimum."""
    g = torch.Generator().manual_seed(seed)
    x = torch.full((1, 2, 32, 32, 32), -1.5)
    x[:, :, 4:28, 4:28, 4:28] = torch.randn(1, 2, 24, 24, 24, generator=g).clamp(min=-1.4)
    return x


def test_restrict_to_head_lowers_air_to_the_case_minimum() -> None:
    x = _head_and_air()
    scores = torch.arange(32**3, dtype=torch.float32).reshape(1, -1)  # air corner scores high
    out = restrict_to_head(scores, x).reshape(32, 32, 32)
    inside = out[4:28, 4:28, 4:28]
    assert torch.equal(inside, scores.reshape(32, 32, 32)[4:28, 4:28, 4:28])
    air = out.clone()
    air[4:28, 4:28, 4:28] = float("nan")
    assert torch.all(air[~air.isnan()] == 0.0)  # the case's lowest score


class _FixedScores(torch.nn.Module):
    """A voxel head whose scores are given: the highest ones in the air corner."""

    def __init__(self, scores: torch.Tensor) -> None:
        super().__init__()
        self.scores = scores

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.scores.reshape(1, 1, 32, 32, 32) + 0.0 * features[:, :1]


def test_mil_case_logit_comes_from_the_head_not_the_air() -> None:
    torch.set_num_threads(1)
    cfg = TaskModelConfig(get_preset("tiny", in_channels=2), kind="classification", head="mil")
    x = _head_and_air()
    scores = torch.arange(32**3, dtype=torch.float32)  # the last voxels (air) score highest
    inside = (x.flatten(2) > x.flatten(2).amin(dim=2, keepdim=True) + 1e-4).any(dim=1)[0]
    expected = scores[inside].topk(cfg.mil_top).values.mean()
    everywhere = scores.topk(cfg.mil_top).values.mean()
    assert expected < everywhere  # air holds the top scores
    for head_only, want in ((True, expected), (False, everywhere)):
        torch.manual_seed(0)
        model = build_task_model(replace(cfg, mil_head_only=head_only)).eval()
        model.head = _FixedScores(scores)
        with torch.no_grad():
            assert torch.allclose(model(x), want.reshape(1))
