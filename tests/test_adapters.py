"""Adaptation modes (full, probe, adapter) and loading pretrained weights across channels."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from neurofm.errors import NeuroFMError
from neurofm.models import (
    TaskModel,
    TaskModelConfig,
    UNetConfig,
    adapt_input_kernel,
    configure_trainable,
    count_parameters,
    load_encoder_weights,
    trainable_parameters,
)
from neurofm.pretrain import PretrainModel

torch.set_num_threads(1)
BACKBONE = UNetConfig(in_channels=2, features=(4, 8, 16), blocks=(1, 1, 1))


def _model(kind: str = "classification", adapter_rank: int = 0, **kw: object) -> TaskModel:
    torch.manual_seed(0)
    return TaskModel(TaskModelConfig(BACKBONE, kind, adapter_rank=adapter_rank, **kw))  # type: ignore[arg-type]


def _step(model: TaskModel) -> dict[str, torch.Tensor]:
    """One Adam step on a fixed batch; returns the parameters before the step."""
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    opt = torch.optim.Adam(trainable_parameters(model), lr=1e-2)
    x = torch.randn(2, 2, 16, 16, 16, generator=torch.Generator().manual_seed(1))
    model(x).square().mean().backward()
    opt.step()
    return before


def _changed(model: TaskModel, before: dict[str, torch.Tensor]) -> set[str]:
    return {k for k, v in model.named_parameters() if not torch.equal(v, before[k])}


def test_full_mode_trains_everything() -> None:
    model = _model()
    assert configure_trainable(model, "full") == count_parameters(model)
    before = _step(model)
    assert any(k.startswith("encoder.") for k in _changed(model, before))


def test_probe_mode_only_head_changes() -> None:
    model = _model(head="mlp")
    n = configure_trainable(model, "probe")
    assert n == count_parameters(model.head)
    before = _step(model)
    assert all(p.grad is None for p in model.encoder.parameters())
    changed = _changed(model, before)
    assert changed and all(k.startswith("head.") for k in changed)
    assert {k for k, _ in model.named_parameters() if k.startswith("head.")} == changed


def test_probe_mode_for_segmentation_trains_decoder_and_head() -> None:
    model = _model("segmentation")
    n = configure_trainable(model, "probe")
    assert model.decoder is not None
    assert n == count_parameters(model.decoder) + count_parameters(model.head)
    changed = _changed(model, _step(model))
    assert any(k.startswith("decoder.") for k in changed)
    assert not any(k.startswith("encoder.") for k in changed)


def test_adapter_mode_only_adapters_and_head_change() -> None:
    model = _model(adapter_rank=2)
    n = configure_trainable(model, "adapter")
    assert model.encoder.adapters is not None
    assert n == count_parameters(model.encoder.adapters) + count_parameters(model.head)
    before = _step(model)
    _step(model)  # the adapters' down-projections move once their zero-initialised up moved
    changed = _changed(model, before)
    assert any(k.startswith("encoder.adapters.") and ".up." in k for k in changed)
    assert any(k.startswith("encoder.adapters.") and ".down." in k for k in changed)
    assert all(k.startswith(("encoder.adapters.", "head.")) for k in changed)


def test_adapters_at_init_do_not_change_outputs() -> None:
    plain = _model("segmentation").eval()
    adapted = _model("segmentation", adapter_rank=3).eval()
    report = load_encoder_weights(adapted, plain.state_dict())
    adapted.head.load_state_dict(plain.head.state_dict())
    assert any(k.startswith("encoder.adapters.") for k in report.kept_initialised)
    x = torch.randn(1, 2, 16, 16, 16)
    torch.testing.assert_close(adapted(x), plain(x), rtol=0, atol=0)


def test_adapter_mode_needs_adapters_and_modes_are_checked() -> None:
    with pytest.raises(NeuroFMError, match="adapter_rank"):
        configure_trainable(_model(), "adapter")
    with pytest.raises(NeuroFMError, match="unknown adaptation mode"):
        configure_trainable(_model(), "lora")  # type: ignore[arg-type]


def test_frozen_batchnorm_encoder_stays_in_eval_mode() -> None:
    cfg = UNetConfig(in_channels=2, features=(4, 8), blocks=(1, 1), norm="batch")
    model = TaskModel(TaskModelConfig(cfg, "regression"))
    configure_trainable(model, "probe")
    model.train()
    assert not any(m.training for m in model.encoder.modules())
    assert model.head.training
    configure_trainable(model, "full")
    assert all(m.training for m in model.encoder.modules())


# --- channel adaptation -------------------------------------------------------------------------


def test_primary_channel_reproduces_single_channel_activations() -> None:
    torch.manual_seed(0)
    pre = PretrainModel(BACKBONE, projection_dim=None)  # 1 input channel
    task = TaskModel(TaskModelConfig(UNetConfig(4, 1, (4, 8, 16), (1, 1, 1)), "classification"))
    report = load_encoder_weights(
        task, pre.state_dict(), dst_channels=["dwi", "flair", "adc", "swi"]
    )
    assert report.channel_sources == (
        "dwi_b1000<-pretrained", "flair<-zero", "adc<-zero", "swi<-zero"
    )  # fmt: skip
    x = torch.randn(2, 1, 16, 16, 16)
    others = torch.randn(2, 3, 16, 16, 16)  # whatever the other sequences show
    both = torch.cat([x, others], dim=1)
    torch.testing.assert_close(task.encoder.stem.conv(both), pre.encoder.stem.conv(x))
    # all deeper weights are copied verbatim, so the whole encoder agrees too
    for a, b in zip(task.encoder(both), pre.encoder(x), strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    # the zero kernels still learn: the other channels get gradients
    task.encoder(both)[-1].square().sum().backward()
    grad = task.encoder.stem.conv.weight.grad
    assert grad is not None and float(grad[:, 1:].abs().sum()) > 0


def test_named_channels_copy_matching_kernels_and_zero_the_rest() -> None:
    w = torch.randn(6, 2, 3, 3, 3)
    new, sources = adapt_input_kernel(w, 3, ["T2w", "t1"], ["t1", "flair", "t2"])
    assert sources == ["t1<-t1", "flair<-zero", "t2<-t2"]
    torch.testing.assert_close(new[:, 0], w[:, 1])
    assert float(new[:, 1].abs().sum()) == 0.0
    torch.testing.assert_close(new[:, 2], w[:, 0])
    # same names, other order: a pure permutation
    perm, _ = adapt_input_kernel(w, 2, ["t1", "t2"], ["t2", "t1"])
    torch.testing.assert_close(perm, w.flip(1))
    # no names: the first channel sums the pretrained kernels (the same image in every old
    # channel gives the pretrained response), the others are zero
    summed, sources = adapt_input_kernel(w, 5)
    assert sources == ["0<-sum", "1<-zero", "2<-zero", "3<-zero", "4<-zero"]
    torch.testing.assert_close(summed[:, 0], w.sum(dim=1))
    assert float(summed[:, 1:].abs().sum()) == 0.0


def test_an_input_mix_starts_the_encoder_on_the_weighted_sum_of_its_channels() -> None:
    """With ``{"dwi_b1000": 1, "adc": -1}`` the adapted first conv applied to (DWI, FLAIR, ADC)
    computes exactly what the pretrained single-channel conv computes on DWI - ADC."""
    torch.manual_seed(3)
    w = torch.randn(6, 1, 3, 3, 3)
    names = ["dwi_b1000", "flair", "adc", "swi|t2s"]
    new, sources = adapt_input_kernel(w, 4, None, names, {"DWI": 1.0, "adc": -1.0})
    assert sources == ["dwi_b1000<-pretrained*1", "flair<-zero", "adc<-pretrained*-1",
                       "swi|t2s<-zero"]  # fmt: skip
    x = torch.randn(1, 4, 8, 8, 8)
    mixed = torch.nn.functional.conv3d(x, new, padding=1)
    direct = torch.nn.functional.conv3d(x[:, :1] - x[:, 2:3], w, padding=1)
    torch.testing.assert_close(mixed, direct)
    with pytest.raises(NeuroFMError, match="not among the channels"):
        adapt_input_kernel(w, 4, None, names, {"t1": 1.0})
    with pytest.raises(NeuroFMError, match="channel names"):
        adapt_input_kernel(w, 4, None, None, {"dwi_b1000": 1.0})


def test_pretrained_checkpoint_loads_encoder_and_decoder_not_heads() -> None:
    torch.manual_seed(1)
    pre = PretrainModel(BACKBONE, projection_dim=8)
    seg = _model("segmentation")
    report = load_encoder_weights(seg, pre.state_dict())
    assert any(k.startswith("decoder.") for k in report.loaded)
    assert {k.split(".")[0] for k in report.ignored} == {"reconstruction", "projection"}
    assert report.kept_initialised == ("head.weight", "head.bias")
    assert seg.decoder is not None and pre.decoder is not None
    for key, value in pre.decoder.state_dict().items():
        torch.testing.assert_close(seg.decoder.state_dict()[key], value)
    # encoder-level state dict (pretrain_model.encoder.state_dict()) works the same way
    cls = _model("classification")
    report = load_encoder_weights(cls, pre.encoder.state_dict())
    torch.testing.assert_close(
        cls.encoder.stages[2][0].conv1.conv.weight, pre.encoder.stages[2][0].conv1.conv.weight
    )
    assert "loaded" in report.summary()


def test_architecture_mismatch_names_checkpoint_and_keys(tmp_path: Path) -> None:
    other = PretrainModel(UNetConfig(features=(4, 8, 32), blocks=(1, 1, 2)), projection_dim=None)
    ckpt = tmp_path / "run" / "encoder.safetensors"
    with pytest.raises(NeuroFMError) as exc:
        load_encoder_weights(_model(), other.state_dict(), source=ckpt)
    msg = str(exc.value)
    assert msg.startswith(str(ckpt)) and "\n" not in msg
    assert "encoder.stages.2.0.conv1.conv.weight (checkpoint (32, 8, 3, 3, 3)" in msg
    assert "and 12 more" in msg  # one line, however many keys differ
    with pytest.raises(NeuroFMError, match="no encoder weights"):
        load_encoder_weights(_model(), {"head.weight": torch.zeros(1)}, source=ckpt)


def test_non_strict_keeps_mismatched_encoder_weights_initialised() -> None:
    other = PretrainModel(UNetConfig(features=(4, 8, 32), blocks=(1, 1, 1)), projection_dim=None)
    model = _model()
    before = model.encoder.stages[2][0].conv1.conv.weight.detach().clone()
    report = load_encoder_weights(model, other.state_dict(), strict_other=False)
    assert "encoder.stages.2.0.conv1.conv.weight" in report.kept_initialised
    assert torch.equal(model.encoder.stages[2][0].conv1.conv.weight, before)
    torch.testing.assert_close(
        model.encoder.stages[1][0].conv1.conv.weight, other.encoder.stages[1][0].conv1.conv.weight
    )
