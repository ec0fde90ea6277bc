"""Patch-unit random masking for masked autoencoding."""

from __future__ import annotations

import pytest
import torch

from neurofm.errors import NeuroFMError
from neurofm.pretrain import random_patch_mask


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_exact_unit_ratio_per_sample_and_block_structure() -> None:
    mask = random_patch_mask(3, (16, 8, 12), unit=4, ratio=0.6, generator=_gen(0))
    assert mask.shape == (3, 1, 16, 8, 12) and mask.dtype == torch.bool
    units = mask.view(3, 4, 4, 2, 4, 3, 4)  # (B, gx, 4, gy, 4, gz, 4)
    first = units[:, :, :1, :, :1, :, :1]
    assert torch.equal(units, first.expand_as(units))  # constant inside every 4^3 block
    n_units = 4 * 2 * 3
    per_sample = first.reshape(3, -1).sum(dim=1)
    assert per_sample.tolist() == [round(0.6 * n_units)] * 3
    assert not torch.equal(mask[0], mask[1])  # each sample draws its own blocks


def test_same_generator_seed_same_mask_other_seed_differs() -> None:
    a = random_patch_mask(2, (16, 16, 16), 4, generator=_gen(7))
    b = random_patch_mask(2, (16, 16, 16), 4, generator=_gen(7))
    c = random_patch_mask(2, (16, 16, 16), 4, generator=_gen(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_sizes_not_multiple_of_unit_are_cropped() -> None:
    mask = random_patch_mask(1, (10, 9, 7), unit=4, ratio=0.5, generator=_gen(0))
    assert mask.shape == (1, 1, 10, 9, 7)
    full = random_patch_mask(1, (12, 12, 8), unit=4, ratio=0.5, generator=_gen(0))
    assert torch.equal(mask, full[..., :10, :9, :7])  # same blocks, edge blocks cut


@pytest.mark.parametrize(("ratio", "expected"), [(0.0, 0), (1.0, 64)])
def test_ratio_extremes(ratio: float, expected: int) -> None:
    mask = random_patch_mask(1, (8, 8, 8), unit=2, ratio=ratio, generator=_gen(0))
    assert int(mask[:, :, ::2, ::2, ::2].sum()) == expected


def test_bad_parameters_are_one_line_errors() -> None:
    with pytest.raises(NeuroFMError, match="ratio"):
        random_patch_mask(1, (8, 8, 8), unit=2, ratio=1.5)
    with pytest.raises(NeuroFMError, match="unit"):
        random_patch_mask(1, (8, 8, 8), unit=0)
