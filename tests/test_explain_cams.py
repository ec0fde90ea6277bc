"""CAMs and gradient maps on hand-made models whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from captum.attr import LayerAttribution, LayerGradCam
from torch import Tensor, nn

from neurofm.errors import NeuroFMError
from neurofm.explain.cams import (
    METHODS,
    attribute,
    cam_from,
    check_layers,
    check_methods,
    conv_stages,
    default_layer,
)
from neurofm.explain.road import road
from neurofm.models import TaskModelConfig, build_task_model, get_preset

torch.set_num_threads(1)
SHORTCUT = (9, 4, 11)


class Shortcut(nn.Module):
    """Two conv stages; the score reads one fixed voxel of the second stage's output."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(1, 3, 3, padding=1, bias=False)
        self.conv2 = nn.Conv3d(3, 4, 1, bias=False)
        with torch.no_grad():
            self.conv1.weight.zero_()
            self.conv1.weight[:, 0, 1, 1, 1] = torch.tensor([1.0, 0.5, 2.0])
            self.conv2.weight.copy_(torch.rand(4, 3, 1, 1, 1) + 0.1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv2(torch.relu(self.conv1(x)))
        return h[:, :, SHORTCUT[0], SHORTCUT[1], SHORTCUT[2]].sum(dim=1)


def shortcut_input() -> Tensor:
    g = torch.Generator().manual_seed(0)
    x = 0.3 * torch.rand(1, 1, 16, 12, 14, generator=g)
    x[0, 0, SHORTCUT[0], SHORTCUT[1], SHORTCUT[2]] = 3.0
    return x


def test_every_method_puts_the_shortcut_voxel_first_and_its_road_gap_is_high() -> None:
    model = Shortcut().eval()
    x = shortcut_input()
    maps = attribute(model, x, model, METHODS, ["conv1", "conv2"], samples=4)
    assert {a.method for a in maps} == set(METHODS)
    assert len(maps) == 6 * 2 + 2
    for a in maps:
        assert a.cam.shape == (16, 12, 14)
        assert not a.constant, a.name
        assert np.unravel_index(a.cam.argmax(), a.cam.shape) == SHORTCUT, a.name

    def prob(batch: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return torch.sigmoid(model(torch.from_numpy(batch).float()) - 5).numpy()

    hires = next(a for a in maps if a.name == "hirescam@conv2")
    result = road(x[0].numpy(), hires.cam, prob, fractions=(0.01, 0.05, 0.2), noise=0.01)
    assert result.original > 0.9
    assert max(result.morf) < 0.1 and min(result.lerf) > 0.9
    assert result.score > 0.8
    rng = np.random.default_rng(0)
    random = road(x[0].numpy(), rng.random(hires.cam.shape), prob, fractions=(0.01, 0.05, 0.2))
    assert abs(random.score) < 0.5 * result.score


def test_gradcam_matches_captum_layer_gradcam() -> None:
    model = Shortcut().eval()
    x = shortcut_input()
    ours = attribute(model, x, model, ["gradcam"], ["conv1"])[0].cam
    theirs = LayerGradCam(model, model.conv1).attribute(x, relu_attributions=True)
    theirs = LayerAttribution.interpolate(theirs, tuple(x.shape[2:]), "trilinear")
    np.testing.assert_allclose(ours, theirs[0, 0].detach().numpy(), rtol=1e-4, atol=1e-6)


def test_cam_formulas_on_a_hand_worked_two_channel_layer() -> None:
    acts = torch.tensor([[1.0, 3.0], [2.0, 0.0]]).reshape(2, 2, 1, 1)
    grads = torch.tensor([[0.5, -0.1], [-1.0, 2.0]]).reshape(2, 2, 1, 1)
    # Grad-CAM: weights mean(G) = (0.2, 0.5) -> 0.2*A0 + 0.5*A1 = (1.2, 0.6)
    np.testing.assert_allclose(cam_from("gradcam", acts, grads).ravel(), [1.2, 0.6], atol=1e-6)
    # HiResCAM: relu(sum G*A) = relu(0.5 - 2, -0.3 + 0) = (0, 0)
    np.testing.assert_allclose(cam_from("hirescam", acts, grads).ravel(), [0.0, 0.0], atol=1e-6)
    # LayerCAM: relu(G)*A summed = (0.5, 0)
    np.testing.assert_allclose(cam_from("layercam", acts, grads).ravel(), [0.5, 0.0], atol=1e-6)
    # XGrad-CAM: w = sum(G*A)/sum(A) = (0.2/4, -2/2) = (0.05, -1) -> relu(0.05 - 2, 0.15)
    np.testing.assert_allclose(cam_from("xgradcam", acts, grads).ravel(), [0.0, 0.15], atol=1e-6)


def test_a_dead_layer_is_reported_constant_not_rescaled() -> None:
    model = Shortcut().eval()
    with torch.no_grad():
        model.conv2.weight.zero_()  # the score no longer depends on anything
    maps = attribute(model, shortcut_input(), model, ["gradcam", "layercam"], ["conv1"])
    assert all(a.constant for a in maps)
    assert all(float(np.abs(a.cam).max()) == 0.0 for a in maps)


@pytest.mark.parametrize(
    ("kind", "head", "stem"), [("classification", "linear", 2), ("segmentation", "linear", 1)]
)
def test_layers_of_a_task_model_run_encoder_to_decoder(kind: str, head: str, stem: int) -> None:
    backbone = get_preset("tiny", in_channels=2)
    backbone = type(backbone)(**{**backbone.to_dict(), "stem_stride": stem})
    model = build_task_model(TaskModelConfig(backbone, kind=kind, head=head))  # type: ignore[arg-type]
    names = list(conv_stages(model))
    n = backbone.stages
    assert names[: n + 1] == ["encoder.stem"] + [f"encoder.stages.{i}" for i in range(n)]
    if kind == "segmentation":
        assert names[n + 1 :] == [f"decoder.stages.{j}" for j in range(n - 1)]
        assert default_layer(model) == f"decoder.stages.{n - 2}"
    else:
        assert len(names) == n + 1 and default_layer(model) == f"encoder.stages.{n - 1}"
    assert check_layers(model, ["all"]) == names
    with pytest.raises(NeuroFMError, match=r"valid: all, encoder\.stem"):
        check_layers(model, ["encoder.stages.9"])
    with pytest.raises(NeuroFMError, match="valid: gradcam"):
        check_methods(["gradcam", "guided"])


def test_nan_and_flat_maps_count_as_constant() -> None:
    from neurofm.explain.cams import is_constant

    assert is_constant(np.array([1.0, np.nan, 2.0]))
    assert is_constant(np.full((3, 3), 7.0))
    assert not is_constant(np.array([0.0, 1e-3]))
