"""Pretraining objectives: finite loss, gradients reach the encoder, a few steps lower the loss."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from neurofm.errors import NeuroFMError
from neurofm.models import TaskModel, TaskModelConfig, UNetConfig, load_encoder_weights
from neurofm.pretrain import (
    OBJECTIVES,
    MaskedAutoencoding,
    ViewAugment,
    build_pretrain_model,
    get_objective,
)

torch.set_num_threads(1)
BACKBONE = UNetConfig(features=(4, 8, 16), blocks=(1, 1, 1))


def _batch(channels: int) -> dict[str, torch.Tensor]:
    """Smooth blobs (learnable structure, unlike white noise), one per sample and channel."""
    g = torch.Generator().manual_seed(0)
    axis = torch.linspace(-1, 1, 16)
    xx, yy, zz = torch.meshgrid(axis, axis, axis, indexing="ij")
    images = []
    for _ in range(2 * channels):
        c = torch.rand(3, generator=g) - 0.5
        images.append(torch.exp(-((xx - c[0]) ** 2 + (yy - c[1]) ** 2 + (zz - c[2]) ** 2) / 0.2))
    return {"image": torch.stack(images).view(2, channels, 16, 16, 16) * 2 - 1}


@pytest.mark.parametrize("name", list(OBJECTIVES))
def test_objective_trains(name: str) -> None:
    spec = OBJECTIVES[name]
    torch.manual_seed(0)
    model = build_pretrain_model(BACKBONE, name, projection_dim=16, projection_hidden=32)
    objective = spec.build()
    batch = _batch(spec.image_channels)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator()
    losses = []
    for step in range(6):
        gen.manual_seed(1)  # same views and masks every step: a fixed problem to fit
        loss, logs = objective(model, batch, gen)
        assert torch.isfinite(loss) and logs["loss"] == loss.detach()
        opt.zero_grad()
        loss.backward()
        if step == 0:
            grad = model.encoder.stem.conv.weight.grad
            assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
            # every parameter built for this objective is used (DDP without find_unused)
            assert all(p.grad is not None for p in model.parameters())
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.9 * losses[0], losses


def test_models_have_only_the_parts_their_objective_uses() -> None:
    mae = build_pretrain_model(BACKBONE, "mae")
    assert mae.projection is None and mae.decoder is not None
    con = build_pretrain_model(BACKBONE, "contrastive")
    assert con.decoder is None and con.projection is not None
    with pytest.raises(NeuroFMError, match="no decoder"):
        MaskedAutoencoding()(con, _batch(1), torch.Generator())


def test_objectives_check_batch_channels_and_names() -> None:
    model = build_pretrain_model(BACKBONE, "modality")
    with pytest.raises(NeuroFMError, match=r"\(B, 2, X, Y, Z\)"):
        OBJECTIVES["modality"].build()(model, _batch(1), torch.Generator())
    with pytest.raises(NeuroFMError, match="unknown objective"):
        get_objective("jigsaw")
    with pytest.raises(NeuroFMError, match="bad parameters"):
        get_objective("mae").build(mask_ratio=0.7)


def test_same_generator_seed_same_loss() -> None:
    model = build_pretrain_model(BACKBONE, "hybrid")
    objective = get_objective("hybrid").build(ratio=0.75)
    a, _ = objective(model, _batch(1), torch.Generator().manual_seed(3))
    b, _ = objective(model, _batch(1), torch.Generator().manual_seed(3))
    c, _ = objective(model, _batch(1), torch.Generator().manual_seed(4))
    assert a == b and a != c


def test_view_augment_identity_and_variation() -> None:
    x = _batch(1)["image"]
    off = ViewAugment(
        flip=False,
        crop=None,
        scale=(1.0, 1.0),
        shift=(0.0, 0.0),
        noise_std=0.0,
        lowres_prob=0.0,
    )
    torch.testing.assert_close(off(x, torch.Generator()), x)
    # simulated low resolution alone: same shape, less voxel-to-voxel variation (blur)
    blur = replace(off, lowres_prob=1.0)(x, torch.Generator().manual_seed(0))
    assert blur.shape == x.shape
    assert (blur.diff(dim=-1).abs().mean() + blur.diff(dim=-2).abs().mean()) < (
        x.diff(dim=-1).abs().mean() + x.diff(dim=-2).abs().mean()
    )
    aug = ViewAugment()
    v1 = aug(x, torch.Generator().manual_seed(0))
    v2 = aug(x, torch.Generator().manual_seed(0))
    assert v1.shape == x.shape and torch.equal(v1, v2)
    assert not torch.allclose(v1, aug(x, torch.Generator().manual_seed(1)))


def test_pretrained_encoder_loads_into_a_multichannel_task_model() -> None:
    pre = build_pretrain_model(BACKBONE, "mae")
    task = TaskModel(TaskModelConfig(UNetConfig(3, 1, (4, 8, 16), (1, 1, 1)), "segmentation"))
    report = load_encoder_weights(task, pre.state_dict(), dst_channels=["t1", "t2", "flair"])
    assert len(report.channel_sources) == 3
    x = torch.randn(1, 1, 16, 16, 16)
    torch.testing.assert_close(
        task.embed(x.repeat(1, 3, 1, 1, 1)), pre.embed(x), atol=1e-4, rtol=1e-4
    )
    assert task(torch.randn(1, 3, 16, 16, 16)).shape == (1, 1, 16, 16, 16)
