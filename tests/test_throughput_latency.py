"""`neurofm bench latency`: window counts as MONAI runs them, model sizes, one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from monai.data.utils import dense_patch_slices

from neurofm.cli import main
from neurofm.errors import NeuroFMError
from neurofm.models import build_task_model
from neurofm.models.flops import count_parameters
from neurofm.throughput.latency import (
    LatencySettings,
    baseline_config,
    demo_config,
    measure_task,
    windows,
)

torch.set_num_threads(1)


@pytest.mark.parametrize("shape", [(50, 59, 48), (32, 32, 32), (20, 70, 33), (97, 233, 189)])
@pytest.mark.parametrize("roi", [32, 96])
def test_windows_match_monai(shape: tuple[int, int, int], roi: int) -> None:
    padded = tuple(max(n, roi) for n in shape)
    interval = [roi if n == roi else max(1, int(roi * 0.5)) for n in padded]
    assert windows(shape, roi) == len(dense_patch_slices(padded, (roi,) * 3, interval))


def test_case_shape_is_the_clinical_extent_on_the_grid() -> None:
    assert LatencySettings(spacing=4.0).shape == (50, 59, 48)
    assert LatencySettings(spacing=1.0).shape == (197, 233, 189)


def test_baseline_sized_unet_is_larger_than_the_demo_model() -> None:
    demo = demo_config("meningioma")
    base = baseline_config(demo)
    assert base.backbone.in_channels == demo.backbone.in_channels == 3
    assert base.backbone.features == (32, 64, 128, 256, 512)
    assert (base.kind, base.head) == (demo.kind, demo.head)
    n_demo = count_parameters(build_task_model(demo))
    n_base = count_parameters(build_task_model(base))
    assert n_base > 20 * n_demo


def test_measure_task_times_both_models_on_one_case() -> None:
    s = LatencySettings(spacing=8.0, repeats=1, input_size=32, patch_size=32)
    r = measure_task("brain_age", s)
    demo, base = r["models"]["demo"], r["models"]["fomo25_unet_b_sized"]
    assert r["kind"] == "regression" and demo["windows_per_case"] == 1
    assert 0 < demo["seconds_best"] <= demo["seconds_median"]
    assert r["baseline_over_demo"]["flops"] == pytest.approx(
        base["forward_flops_per_case"] / demo["forward_flops_per_case"]
    )
    assert r["baseline_over_demo"]["flops"] > 10


def test_bad_settings_are_one_line_errors(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    with pytest.raises(NeuroFMError, match="--patch: 40 must be a multiple of 16"):
        LatencySettings(patch_size=40)
    out = tmp_path / "l.json"
    with pytest.raises(SystemExit) as info:
        main(["bench", "latency", "--task", "nope", "--out", str(out)])
    assert info.value.code == 2 and "\n" not in capsys.readouterr().err.strip()
    assert not out.exists()
    with pytest.raises(SystemExit) as info:
        main(["bench", "latency", "--repeats", "0", "--out", str(out)])
    assert info.value.code == 2 and not out.exists()
