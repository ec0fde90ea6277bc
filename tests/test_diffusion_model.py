"""The class-conditional diffusion U-Net, and the diffusion head through the CLI: train, predict
like any infarct model, explain, refuse bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from neurofm.errors import NeuroFMError
from neurofm.models import UNet, get_preset, load_encoder_weights
from neurofm.models.diffusion_unet import DiffusionUNet, DiffusionUNetConfig, timestep_embedding
from test_baselines import cli

torch.set_num_threads(1)
FAST = ["--steps", "3", "--batch-size", "2", "--workers", "0", "--threads", "1"]
SMALL = ["--input-size", "32", "--k", "1", "--t", "2"]


def predict(run: Path, split: Path, out: Path) -> tuple[list[str], list[float]]:
    """`neurofm predict` on every case of ``split``: case names and probabilities."""
    assert cli("predict", "--task", "infarct", "--model", run, "--input", split,
               "--output", out, "--device", "cpu") == 0  # fmt: skip
    cases = sorted(p.name for p in split.iterdir() if p.is_dir())
    return cases, [float((out / f"{c}.txt").read_text()) for c in cases]


def _net(**kw: object) -> DiffusionUNet:
    torch.manual_seed(0)
    return DiffusionUNet(DiffusionUNetConfig(get_preset("tiny", in_channels=2), **kw))  # type: ignore[arg-type]


def test_output_is_noise_shaped_and_conditioning_starts_neutral() -> None:
    net = _net().eval()
    x = torch.randn(2, 2, 32, 32, 32)
    t = torch.tensor([5, 400])
    with torch.no_grad():
        a = net(x, t, torch.tensor([0, 0]))
        b = net(x, t, torch.tensor([1, 2]))  # class 1 and the null class
    assert a.shape == x.shape
    torch.testing.assert_close(a, b)  # zero-initialised FiLM: labels change nothing yet
    # one optimiser step on a class-dependent target makes the class matter
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    net.train()
    y = torch.tensor([0, 1])
    loss = ((net(x, t, y) - y.float().reshape(-1, 1, 1, 1, 1)) ** 2).mean()
    loss.backward()
    opt.step()
    net.eval()
    with torch.no_grad():
        assert not torch.allclose(net(x, t, torch.tensor([0, 0])), net(x, t, torch.tensor([1, 1])))


def test_timestep_embedding_and_label_range() -> None:
    e = timestep_embedding(torch.tensor([0, 10]), 8)
    assert e.shape == (2, 8)
    torch.testing.assert_close(e[0], torch.tensor([0.0] * 4 + [1.0] * 4))  # sin 0, cos 0
    assert e[1, 0] == pytest.approx(float(np.sin(10.0)))
    with pytest.raises(NeuroFMError, match="class labels"):
        _net()(torch.randn(1, 2, 32, 32, 32), torch.tensor([1]), torch.tensor([3]))
    with pytest.raises(NeuroFMError, match="n_classes"):
        DiffusionUNetConfig(n_classes=1)


def test_class_dropout_rate() -> None:
    net = _net(class_dropout=0.3)
    y = net.drop_classes(torch.zeros(20000, dtype=torch.long), torch.Generator().manual_seed(0))
    assert set(y.unique().tolist()) == {0, 2}
    assert float((y == 2).float().mean()) == pytest.approx(0.3, abs=0.015)


def test_pretrained_encoder_and_decoder_load_unchanged() -> None:
    torch.manual_seed(1)
    pre = UNet(get_preset("tiny"))  # single-channel, like a pretraining run
    net = _net()
    report = load_encoder_weights(net, pre.state_dict(), dst_channels=["dwi_b1000", "flair"])
    state = net.state_dict()
    for key, value in pre.state_dict().items():
        if key.startswith(("encoder.", "decoder.")) and key != "encoder.stem.conv.weight":
            torch.testing.assert_close(state[key], value)
    assert report.channel_sources == ("dwi_b1000<-pretrained", "flair<-zero")
    other = UNet(get_preset("tiny", features=(4, 8, 16, 32)))
    with pytest.raises(NeuroFMError, match="architecture mismatch"):
        load_encoder_weights(_net(), other.state_dict())


@pytest.mark.slow
def test_diffusion_head_trains_predicts_and_explains(
    tiny_prepared: Path, tiny_benchmark: Path, tmp_path: Path
) -> None:
    run = tmp_path / "diff"
    assert cli("finetune-diffusion", tiny_prepared, "--out", run, *FAST, *SMALL) == 0
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["head"] == "diffusion" and cfg["kind"] == "finetune"
    assert cfg["diffusion"]["classifier"] == {"k": 1, "t": 2, "t_max": 0.5, "seed": 0}
    assert cfg["diffusion"]["schedule"] == {"kind": "linear", "steps": 1000}
    split = tiny_benchmark / "infarct" / "test"
    preds = tmp_path / "preds"
    cases, values = predict(run, split, preds)
    # K x T = 2 draws: Jeffreys-smoothed shares are 0.5/3, 1.5/3 or 2.5/3
    assert all(min(abs(v - q) for q in (1 / 6, 0.5, 5 / 6)) < 1e-5 for v in values)
    # the same seed gives the same probabilities
    assert predict(run, split, tmp_path / "again") == (cases, values)
    assert cli("evaluate", "--task", "infarct", "--predictions", preds,
               "--references", split, "--out", tmp_path / "ev") == 0  # fmt: skip
    maps = tmp_path / "maps"
    assert cli("diffusion", "explain", "--model", run, "--input", split, "--output", maps) == 0
    import nibabel as nib

    first = next((split / cases[0]).glob("dwi_b1000.nii*"))
    img, ref = nib.load(maps / f"{cases[0]}_error_diff.nii.gz"), nib.load(first)
    assert img.shape == ref.shape and np.allclose(img.affine, ref.affine)  # type: ignore[attr-defined]
    assert (maps / "localisation.csv").is_file()
    bench = tmp_path / "bench.json"
    assert cli("bench", "diffusion", "--model", run, "--input", split, "--cases", "1",
               "--out", bench) == 0  # fmt: skip
    result = json.loads(bench.read_text())
    assert result["k"] == 1 and result["t"] == 2 and result["network_evaluations_per_case"] == 4
    assert result["train_seconds"] > 0 and result["predict_seconds_per_case"] > 0


@pytest.mark.slow
def test_bad_input_is_one_line_and_touches_nothing(
    tiny_prepared: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "x"
    for args, words in (
        (["--task", "brain_age"], "the diffusion head classifies"),
        (["--k", "0"], "K and T must be at least 1"),
        (["--t", "0"], "K and T must be at least 1"),
    ):
        assert cli("finetune-diffusion", tiny_prepared, "--out", out, *FAST, *args) == 2
        err = capsys.readouterr().err.strip()
        assert words in err and len(err.splitlines()) == 1
        assert not out.exists()
    # a pretraining run of another architecture: weights do not fit its own config
    pre = tmp_path / "pre"
    assert cli("pretrain", tiny_prepared, "--out", pre, *FAST) == 0
    other = tmp_path / "other"
    other.mkdir()
    cfg = json.loads((pre / "config.json").read_text())
    cfg["backbone"]["features"] = [4, 8, 16, 32]
    (other / "config.json").write_text(json.dumps(cfg))
    (other / "model.safetensors").write_bytes((pre / "model.safetensors").read_bytes())
    capsys.readouterr()
    args = ["--init", other, "--out", tmp_path / "o", *FAST, *SMALL]
    assert cli("finetune-diffusion", tiny_prepared, *args) == 2
    err = capsys.readouterr().err.strip()
    assert "architecture mismatch" in err and len(err.splitlines()) == 1
    # a finetuned (not pretraining) run as --init
    assert cli("finetune-diffusion", tiny_prepared, "--init", tmp_path / "o", "--out", out) == 2
    assert not out.exists()


def test_finetune_head_diffusion_refuses_before_touching_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "x"
    for args, words in (
        (["--task", "brain_age"], ["the diffusion head classifies"]),
        (["--task", "infarct", "--patience", "3", "--mode", "probe"],
         ["--head diffusion:", "--patience", "--mode", "do(es) not apply"]),
        (["--task", "infarct", "--lr", "0"], ["--lr must be positive"]),
    ):  # fmt: skip
        assert cli("finetune", tmp_path / "data", "--head", "diffusion", "--out", out, *args) == 2
        err = capsys.readouterr().err.strip()
        assert all(w in err for w in words) and len(err.splitlines()) == 1, err
        assert not out.exists()


@pytest.mark.slow
def test_finetune_head_diffusion_is_the_one_training_path_and_packages(
    tiny_prepared: Path, tiny_benchmark: Path, tmp_path: Path
) -> None:
    from safetensors.torch import load_file

    from neurofm.diffusion.settings import DiffusionSettings

    run = tmp_path / "diff"
    args = ["--out", run, *FAST, "--input-size", "32"]
    assert cli("finetune", tiny_prepared, "--task", "infarct", "--head", "diffusion", *args) == 0
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["head"] == "diffusion"
    # given options count; the rest are the diffusion recipe's defaults, not finetuning's
    assert cfg["recipe"]["steps"] == 3 and cfg["recipe"]["input_size"] == 32
    assert cfg["recipe"]["lr"] == DiffusionSettings.lr != 1e-3
    assert cfg["diffusion"]["classifier"] == {"k": 4, "t": 8, "t_max": 0.5, "seed": 0}
    # the sibling command with the same options trains the same weights (one code path)
    alias = tmp_path / "alias"
    assert cli("finetune-diffusion", tiny_prepared, *args[:1], alias, *args[2:]) == 0
    a, b = load_file(run / "model.safetensors"), load_file(alias / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    split = tiny_benchmark / "infarct" / "test"
    preds = tmp_path / "preds"
    cases, values = predict(run, split, preds)
    # K x T = 32 draws: the Jeffreys-smoothed share is (votes + 1/2) / 33 for some whole votes
    votes = [v * 33 - 0.5 for v in values]
    assert all(abs(n - round(n)) < 1e-4 and 0 <= round(n) <= 32 for n in votes), values
    ev = tmp_path / "ev"
    assert cli("evaluate", "--task", "infarct", "--predictions", preds,
               "--references", split, "--out", ev) == 0  # fmt: skip
    assert (ev / "results.csv").is_file()
    # packaged: the sandboxed self-test reproduces the probability predicted above
    pkg = tmp_path / "pkg"
    assert cli("package", "build", run, "--out", pkg, "--sample", split / cases[0],
               "--task", "infarct", "--id", "tiny-diffusion") == 0  # fmt: skip
    selftest = next((pkg / "selftest").glob("*.txt"))
    assert float(selftest.read_text()) == pytest.approx(values[0], abs=1e-6)
