"""The shared training loop: determinism, resume after a crash, checkpoints, early stopping."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

from neurofm.atomic import DiskFull
from neurofm.errors import NeuroFMError
from neurofm.runfiles import load_config, load_weights
from neurofm.train.checkpoint import save_checkpoint
from neurofm.train.distributed import DistInfo
from neurofm.train.loop import LoopConfig, train
from neurofm.train.runlog import read_log

SINGLE = DistInfo(0, 1, 0, torch.device("cpu"))


def toy_batches(seed: int, batch: int = 8) -> callable:
    """Batches that are a pure function of (seed, step): what resume relies on."""

    def make(start: int) -> Iterator[dict[str, torch.Tensor]]:
        step = start
        while True:
            g = torch.Generator().manual_seed(seed * 100_003 + step)
            x = torch.randn(batch, 4, generator=g)
            yield {"x": x, "y": x.sum(dim=1, keepdim=True) * 0.5}
            step += 1

    return make


def mse_step(model: nn.Module, batch: dict, gen: torch.Generator) -> tuple[torch.Tensor, dict]:
    noise = torch.randn(batch["x"].shape, generator=gen) * 0.01
    pred = model(batch["x"] + noise)
    return nn.functional.mse_loss(pred, batch["y"]), {}


def make_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))


def cfg(**kw) -> LoopConfig:
    base = {"steps": 30, "lr": 1e-2, "checkpoint_every": 10, "log_every": 5, "seed": 3}
    return LoopConfig(**{**base, **kw})


def test_loop_learns_and_is_deterministic(tmp_path: Path) -> None:
    results = []
    for name in ("a", "b"):
        model = make_model()
        res = train(model, mse_step, toy_batches(1), cfg(), tmp_path / name, {}, SINGLE)
        results.append((res, model.state_dict()))
    (r1, w1), (_r2, w2) = results
    for k in w1:
        torch.testing.assert_close(w1[k], w2[k], rtol=0, atol=0)
    rows = read_log(tmp_path / "a", "train")
    assert rows[-1]["loss"] < rows[0]["loss"]
    assert [r["step"] for r in rows] == [5, 10, 15, 20, 25, 30]
    assert 0.0 <= r1.data_wait_fraction < 1.0


def test_resume_after_crash_matches_uninterrupted(tmp_path: Path) -> None:
    full = make_model()
    train(full, mse_step, toy_batches(2), cfg(), tmp_path / "full", {}, SINGLE)

    calls = {"n": 0}

    def crashing(model: nn.Module, batch: dict, gen: torch.Generator) -> tuple:
        calls["n"] += 1
        if calls["n"] == 25:
            raise RuntimeError("simulated crash")
        return mse_step(model, batch, gen)

    run = tmp_path / "crashed"
    with pytest.raises(RuntimeError):
        train(make_model(), crashing, toy_batches(2), cfg(), run, {"name": "x"}, SINGLE)
    assert json.loads((run / "checkpoints/last/config.json").read_text())["step"] == 20
    resumed = make_model()
    res = train(resumed, mse_step, toy_batches(2), cfg(), run, {}, SINGLE, resume=True)
    assert res.steps == 30
    for k, v in full.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[k], v, rtol=0, atol=0)
    steps = [r["step"] for r in read_log(run, "train")]
    assert steps == sorted(set(steps)), "resumed log must not repeat steps"


def test_early_stopping_and_best_checkpoint(tmp_path: Path) -> None:
    scores = iter([3.0, 2.5, 2.0, 2.6, 2.7, 2.8])  # steps 0 (before training), 5, 10, ...

    def evaluate(model: nn.Module) -> dict[str, float]:
        return {"val_loss": next(scores)}

    c = cfg(steps=60, eval_every=5, monitor="val_loss", patience=3)
    res = train(make_model(), mse_step, toy_batches(3), c, tmp_path, {}, SINGLE, evaluate=evaluate)
    assert res.stopped_early and res.steps == 25
    assert res.best_step == 10 and res.best["val_loss"] == 2.0
    assert load_config(tmp_path / "checkpoints/best")["step"] == 10
    assert [r["step"] for r in read_log(tmp_path, "val")] == [0, 5, 10, 15, 20, 25]


def test_initial_weights_win_when_training_only_hurts(tmp_path: Path) -> None:
    scores = iter([1.0, 2.0, 3.0])

    def evaluate(model: nn.Module) -> dict[str, float]:
        return {"val_loss": next(scores)}

    model = make_model()
    start = {k: v.clone() for k, v in model.state_dict().items()}
    c = cfg(steps=60, eval_every=5, monitor="val_loss", patience=2)
    res = train(model, mse_step, toy_batches(3), c, tmp_path, {}, SINGLE, evaluate=evaluate)
    assert res.stopped_early and res.steps == 10 and res.best_step == 0
    best = load_weights(tmp_path / "checkpoints/best")
    for k, v in start.items():
        torch.testing.assert_close(best[k], v, rtol=0, atol=0)
    assert not torch.equal(model.state_dict()["0.weight"], start["0.weight"])


def test_lr_scales_give_each_prefix_its_learning_rate(tmp_path: Path) -> None:
    model = make_model()
    frozen_first = {k: v.clone() for k, v in model.state_dict().items()}
    c = cfg(steps=5, lr=1e-2, warmup_steps=0, lr_scales={"0.": 0.0})
    train(model, mse_step, toy_batches(4), c, tmp_path, {}, SINGLE)
    after = model.state_dict()
    torch.testing.assert_close(after["0.weight"], frozen_first["0.weight"], rtol=0, atol=0)
    assert not torch.equal(after["2.weight"], frozen_first["2.weight"])


def test_checkpoint_write_failure_keeps_previous(tmp_path: Path, monkeypatch) -> None:
    folder = tmp_path / "ck"
    save_checkpoint(folder, {"w": torch.ones(3)}, {"v": 1})
    import neurofm.runfiles as rf

    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(rf, "save_file", disk_full)
    with pytest.raises(DiskFull, match="free space"):  # a full disk is one line, not a trace
        save_checkpoint(folder, {"w": torch.zeros(3)}, {"v": 2})
    assert load_config(folder)["v"] == 1
    torch.testing.assert_close(load_weights(folder)["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["ck"]


def test_corrupt_checkpoint_is_one_line_error(tmp_path: Path) -> None:
    folder = save_checkpoint(tmp_path / "ck", {"w": torch.ones(3)}, {"v": 1})
    (folder / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(NeuroFMError, match="corrupt checkpoint weights"):
        load_weights(folder)
    (folder / "config.json").write_text("{not json")
    with pytest.raises(NeuroFMError, match="corrupt checkpoint config"):
        load_config(folder)


def test_training_never_autocasts_on_the_cpu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CPU bf16 autocast gives wrong convolution weight gradients on some CPUs (oneDNN;
    docs/examples/bf16_conv3d_grad.py): the loop must enable autocast on CUDA only."""
    from neurofm.train import loop

    seen: list[tuple[str, bool]] = []
    real = torch.autocast

    def spy(device_type: str, *args: object, enabled: bool = True, **kw: object) -> object:
        seen.append((device_type, enabled))
        return real(device_type, *args, enabled=enabled, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(loop.torch, "autocast", spy)
    assert cfg(steps=3).amp  # asked for, and still off on the CPU
    train(make_model(), mse_step, toy_batches(1), cfg(steps=3), tmp_path / "r", {}, SINGLE)
    assert seen and all(not (device == "cpu" and on) for device, on in seen)


@pytest.mark.parametrize("schedule", ["cosine", "poly"])
def test_logged_learning_rate_follows_the_schedule(tmp_path: Path, schedule: str) -> None:
    import math

    c = cfg(steps=30, lr=1e-2, warmup_steps=5, log_every=5, schedule=schedule)
    train(make_model(), mse_step, toy_batches(1), c, tmp_path / schedule, {}, SINGLE)
    logged = {r["step"]: r["lr"] for r in read_log(tmp_path / schedule, "train")}
    assert sorted(logged) == [5, 10, 15, 20, 25, 30]
    for done, lr in logged.items():  # the rate after `done` steps, worked out by hand
        t = (done - 5) / 25
        f = (1 - t) ** 0.9 if schedule == "poly" else 0.5 * (1 + math.cos(math.pi * t))
        assert lr == pytest.approx(1e-2 * f, abs=1e-12), done


def test_poly_runs_below_cosine_early_and_above_it_late() -> None:
    from neurofm.train.loop import lr_factor

    early = [lr_factor(s, 110, 10, k) for k in ("poly", "cosine") for s in (30,)]
    late = [lr_factor(s, 110, 10, k) for k in ("poly", "cosine") for s in (90,)]
    assert early[0] < early[1] and late[0] > late[1]
    assert lr_factor(4, 110, 10, "poly") == lr_factor(4, 110, 10, "cosine") == 0.5
    with pytest.raises(NeuroFMError, match="unknown schedule 'step'"):
        cfg(schedule="step")
