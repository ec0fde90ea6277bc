"""U-Net family, registry, task heads, FLOP counting and `neurofm models`."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from neurofm.cli import main
from neurofm.errors import NeuroFMError
from neurofm.models import (
    MODEL_PRESETS,
    TaskModel,
    TaskModelConfig,
    UNetConfig,
    build_task_model,
    build_unet,
    count_flops,
    count_parameters,
    get_preset,
    global_pool,
    preset_stats,
)

torch.set_num_threads(1)
SMALL = UNetConfig(features=(4, 8, 16), blocks=(1, 2, 1))


def test_unet_shapes_encoder_features_and_embedding() -> None:
    torch.manual_seed(0)
    model = build_unet(SMALL)
    x = torch.randn(2, 1, 16, 16, 24)
    feats = model.encoder(x)
    assert [tuple(f.shape) for f in feats] == [
        (2, 4, 16, 16, 24),
        (2, 8, 8, 8, 12),
        (2, 16, 4, 4, 6),
    ]
    assert model(x).shape == (2, 1, 16, 16, 24)
    emb = model.embed(x)
    assert emb.shape == (2, 16)
    torch.testing.assert_close(emb, feats[-1].mean(dim=(2, 3, 4)))


def test_tiny_preset_strided_stem_is_full_resolution_out() -> None:
    cfg = get_preset("tiny", in_channels=2, out_channels=3)
    assert cfg.divisor == 16
    model = build_unet(cfg)
    x = torch.randn(1, 2, 32, 32, 48)
    assert [f.shape[2] for f in model.encoder(x)] == [16, 8, 4, 2]
    assert model(x).shape == (1, 3, 32, 32, 48)


@pytest.mark.parametrize("shape", [(1, 1, 10, 16, 16), (1, 1, 4, 4, 4), (1, 2, 16, 16, 16)])
def test_bad_input_shape_is_one_line_error(shape: tuple[int, ...]) -> None:
    model = build_unet(SMALL)
    with pytest.raises(NeuroFMError, match="multiples of 4"):
        model(torch.zeros(shape))


def test_presets_and_overrides() -> None:
    assert set(MODEL_PRESETS) == {"tiny", "tiny-wide", "small", "large"}
    tiny, wide = MODEL_PRESETS["tiny"], MODEL_PRESETS["tiny-wide"]  # width alone doubles
    assert wide == get_preset("tiny", features=tuple(2 * f for f in tiny.features))
    ratio = sum(p.numel() for p in build_unet(wide).parameters()) / sum(
        p.numel() for p in build_unet(tiny).parameters()
    )
    assert 3.5 < ratio < 4.5
    cfg = get_preset("small", in_channels=4)
    assert cfg.in_channels == 4 and cfg.features == MODEL_PRESETS["small"].features
    with pytest.raises(NeuroFMError, match="unknown model preset 'huge'"):
        get_preset("huge")
    with pytest.raises(NeuroFMError, match="widht"):
        get_preset("tiny", widht=3)
    with pytest.raises(NeuroFMError, match="blocks"):
        UNetConfig(features=(4, 8), blocks=(1,))
    with pytest.raises(NeuroFMError, match="norm"):
        UNetConfig(norm="layer")  # type: ignore[arg-type]


def test_configs_round_trip_through_json() -> None:
    cfg = TaskModelConfig(get_preset("tiny", in_channels=4), "segmentation", "mlp", adapter_rank=4)
    again = TaskModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    with pytest.raises(NeuroFMError, match="unknown field"):
        UNetConfig.from_dict({"features": [4, 8], "blocks": [1, 1], "depth": 2})


@pytest.mark.parametrize(
    ("kind", "head", "out_shape"),
    [
        ("classification", "linear", (2,)),
        ("regression", "mlp", (2,)),
        ("segmentation", "linear", (2, 1, 16, 16, 16)),
    ],
)
def test_task_model_outputs(kind: str, head: str, out_shape: tuple[int, ...]) -> None:
    cfg = TaskModelConfig(UNetConfig(3, 1, (4, 8, 16), (1, 1, 1)), kind, head)  # type: ignore[arg-type]
    model = build_task_model(cfg)
    x = torch.randn(2, 3, 16, 16, 16)
    out = model(x)
    assert out.shape == out_shape
    assert model.embed(x).shape == (2, 16)
    assert (model.decoder is not None) == (kind == "segmentation")
    if head == "mlp":
        assert sum(isinstance(m, nn.Linear) for m in model.head.modules()) == 2


def test_global_pool_modes_match_hand_computation() -> None:
    x = torch.zeros(1, 2, 4, 4, 4)
    x[0, 0, 1, 2, 3] = 8.0  # one bright voxel in channel 0
    x[0, 1] = -1.0
    assert global_pool(x).tolist() == [[8.0 / 64, -1.0]]
    assert global_pool(x, "max").tolist() == [[8.0, -1.0]]
    assert global_pool(x, "avgmax").tolist() == [[8.0 / 64, -1.0, 8.0, -1.0]]


def test_avgmax_head_reads_both_poolings_and_configs_default_to_avg() -> None:
    cfg = TaskModelConfig(UNetConfig(2, 1, (4, 8, 16), (1, 1, 1)), "classification", pool="avgmax")
    model = build_task_model(cfg)
    x = torch.randn(3, 2, 16, 16, 16)
    assert cfg.embed_dim == 32 and model.embed(x).shape == (3, 32)
    torch.testing.assert_close(model(x), model.head(model.embed(x)))
    old = cfg.to_dict()
    del old["pool"]  # a config written before pooling was configurable
    assert TaskModelConfig.from_dict(old).pool == "avg"
    with pytest.raises(NeuroFMError, match="pool 'sum'"):
        TaskModelConfig(SMALL, "classification", pool="sum")  # type: ignore[arg-type]


def test_mil_head_is_the_mean_of_the_top_voxel_scores() -> None:
    torch.manual_seed(0)
    cfg = TaskModelConfig(UNetConfig(2, 1, (4, 8), (1, 1)), "classification", "mil", mil_top=5)
    model = build_task_model(cfg).eval()
    x = torch.randn(2, 2, 8, 8, 8)
    assert model.decoder is not None
    voxels = model.head(model.decoder(model.encoder(x))).reshape(2, -1)
    expected = voxels.sort(dim=1, descending=True).values[:, :5].mean(dim=1)
    torch.testing.assert_close(model(x), expected)
    with pytest.raises(NeuroFMError, match="head 'mil' is for classification"):
        TaskModelConfig(SMALL, "regression", "mil")


def test_task_model_encoder_keys_match_unet_encoder() -> None:
    task = TaskModel(TaskModelConfig(SMALL, "regression"))
    unet = build_unet(SMALL)
    assert task.encoder.state_dict().keys() == unet.encoder.state_dict().keys()


def test_channels_last_gives_the_same_output() -> None:
    torch.manual_seed(0)
    model = build_unet(SMALL).eval()
    x = torch.randn(1, 1, 16, 16, 16)
    ref = model(x)
    fast = build_unet(SMALL, channels_last_3d=True).eval()
    fast.load_state_dict(model.state_dict())
    assert fast.encoder.stem.conv.weight.is_contiguous(memory_format=torch.channels_last_3d)
    out = fast(x.contiguous(memory_format=torch.channels_last_3d))
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-4)


def test_flops_of_a_conv_match_hand_count() -> None:
    conv = nn.Conv3d(3, 5, kernel_size=3, padding=1, bias=False)
    assert count_flops(conv, (1, 3, 8, 8, 8)) == 2 * 3 * 5 * 27 * 8**3


def test_preset_stats_params_and_flops() -> None:
    stats = preset_stats("tiny", 32)
    model = build_unet(MODEL_PRESETS["tiny"])
    assert stats.params_unet == count_parameters(model)
    assert stats.params_encoder == count_parameters(model.encoder) < stats.params_unet
    assert stats.flops_encoder is not None and stats.flops_unet is not None
    assert 0 < stats.flops_encoder < stats.flops_unet
    # the strided stem alone: 1 -> 8 channels, 3^3 kernel, at (32/2)^3 output voxels
    assert stats.flops_encoder > 2 * 8 * 27 * 16**3
    assert preset_stats("large", 48).flops_unet is None  # 48 is not a multiple of 32


def test_cli_models_table(capsys: pytest.CaptureFixture[str]) -> None:
    main(["models", "--patch", "32"])
    out = capsys.readouterr().out
    for name in MODEL_PRESETS:
        assert name in out
    assert "0.32" in out  # tiny: 0.32 M parameters
    with pytest.raises(SystemExit) as exc:
        main(["models", "--patch", "0"])
    assert exc.value.code == 2
