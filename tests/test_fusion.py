"""Early vs late fusion of input sequences in a task model."""

from __future__ import annotations

import pytest
import torch

from neurofm.errors import NeuroFMError
from neurofm.models import TaskModelConfig, build_task_model, get_preset, load_encoder_weights
from neurofm.models.unet import global_pool
from neurofm.train.settings import FinetuneSettings

torch.set_num_threads(1)


def _model(fusion: str, channels: int = 3, pool: str = "avg") -> torch.nn.Module:
    torch.manual_seed(0)
    backbone = get_preset("tiny", in_channels=channels)
    return build_task_model(
        TaskModelConfig(backbone, kind="regression", pool=pool, fusion=fusion)  # type: ignore[arg-type]
    ).eval()


def test_late_fusion_concatenates_one_shared_encoder_pass_per_sequence() -> None:
    model = _model("late", pool="avgmax")
    x = torch.randn(2, 3, 32, 32, 32)
    with torch.no_grad():
        emb = model.embed(x)
        by_hand = torch.cat(
            [global_pool(model.encoder(x[:, i : i + 1])[-1], "avgmax") for i in range(3)], dim=1
        )
        assert emb.shape == (2, 3 * 2 * 64)  # 3 sequences x avgmax x 64 bottleneck channels
        torch.testing.assert_close(emb, by_hand)
        torch.testing.assert_close(model(x).reshape(-1), model.head(by_hand).reshape(-1))
    assert model.encoder.stem.conv.weight.shape[1] == 1  # shared single-channel encoder


def test_late_fusion_embedding_is_ordered_by_sequence() -> None:
    model = _model("late", channels=2)
    x = torch.randn(1, 2, 32, 32, 32)
    with torch.no_grad():
        a, b = model.embed(x), model.embed(x.flip(1))
    d = a.shape[1] // 2
    torch.testing.assert_close(a[:, :d], b[:, d:])
    assert not torch.allclose(a[:, :d], a[:, d:])


def test_early_fusion_is_one_multichannel_pass() -> None:
    model = _model("early")
    assert model.encoder.stem.conv.weight.shape[1] == 3
    assert model.embed(torch.randn(1, 3, 32, 32, 32)).shape == (1, 64)


def test_fusion_round_trips_through_the_config() -> None:
    cfg = TaskModelConfig(get_preset("tiny", in_channels=4), kind="classification", fusion="late")
    again = TaskModelConfig.from_dict(cfg.to_dict())
    assert again.fusion == "late" and again.embed_dim == 4 * 64
    assert TaskModelConfig.from_dict({"kind": "regression"}).fusion == "early"  # older configs


def test_single_channel_pretrained_encoder_loads_unchanged_for_late_fusion() -> None:
    pretrained = build_task_model(TaskModelConfig(get_preset("tiny", in_channels=1)))
    model = _model("late")
    load_encoder_weights(model, pretrained.state_dict(), include_decoder=False)
    torch.testing.assert_close(model.encoder.stem.conv.weight, pretrained.encoder.stem.conv.weight)


def test_late_fusion_is_refused_where_there_is_no_pooled_head() -> None:
    with pytest.raises(NeuroFMError, match="--fusion: late fusion needs a pooled head"):
        FinetuneSettings(task="meningioma", fusion="late")
    with pytest.raises(NeuroFMError, match="--fusion: late fusion needs a pooled head"):
        FinetuneSettings(task="infarct", head="mil", fusion="late")
    with pytest.raises(NeuroFMError, match="unknown fusion 'middle'"):
        FinetuneSettings(task="infarct", fusion="middle")  # type: ignore[arg-type]
    with pytest.raises(NeuroFMError, match="late fusion"):
        TaskModelConfig(kind="segmentation", fusion="late")
