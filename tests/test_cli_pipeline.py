"""Tiny end to end through the CLI: synth -> prepare -> load a batch of patches."""

from __future__ import annotations

from pathlib import Path

import torch

from neurofm.cli import main
from neurofm.data.cache import PreparedDataset
from neurofm.data.patches import PatchDataset, make_loader


def run(*args: str) -> int:
    try:
        main(list(args))
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def test_synth_prepare_load_batch(tmp_path: Path) -> None:
    raw, prep = tmp_path / "raw", tmp_path / "prep"
    assert run("synth", str(raw), "--preset", "tiny", "--seed", "2") == 0
    assert run("prepare", str(raw), str(prep), "--spacing", "8") == 0
    # a second prepare reuses everything and changes nothing
    before = (prep / "meningioma" / "train" / "manifest.json").read_bytes()
    assert run("prepare", str(raw), str(prep), "--spacing", "8") == 0
    assert (prep / "meningioma" / "train" / "manifest.json").read_bytes() == before
    data = PreparedDataset(prep / "meningioma" / "train")
    ds = PatchDataset(data, 16, foreground_prob=1.0, samples_per_epoch=4)
    batch = next(iter(make_loader(ds, batch_size=4, workers=1, seed=0)))
    assert batch["image"].shape == (4, 3, 16, 16, 16)
    assert batch["mask"].shape == (4, 1, 16, 16, 16)
    assert batch["image"].dtype == torch.float32
    assert float(batch["mask"].sum()) > 0  # foreground oversampling found the tumours
    # refusing to overwrite a non-empty benchmark folder is a one-line error (exit 2)
    assert run("synth", str(raw), "--preset", "tiny") == 2


def test_usage_error_is_a_short_message_not_a_traceback(capsys) -> None:  # type: ignore[no-untyped-def]
    assert run("finetune", "--no-such-option") == 2
    err = capsys.readouterr().err
    assert "No such option" in err and "Traceback" not in err


def test_demo_unknown_objective_fails_before_writing(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "demo"
    assert run("demo", "--out", str(out), "--objective", "byol") == 2
    assert "unknown objective 'byol'" in capsys.readouterr().err
    assert not out.exists()
    assert run("demo", "--out", str(out), "--decoder-objective", "simclr") == 2
    assert "unknown objective 'simclr'" in capsys.readouterr().err
    assert run("demo", "--out", str(out), "--infarct-head", "cnn") == 2
    assert "unknown infarct head 'cnn'" in capsys.readouterr().err
    assert not out.exists()
