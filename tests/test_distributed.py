"""DDP on 2 CPU ranks (gloo): ranks stay identical and match one process on one global batch."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from neurofm.train.distributed import init_distributed, shutdown_distributed
from neurofm.train.loop import LoopConfig, train

pytestmark = pytest.mark.distributed
GLOBAL_BATCH = 8


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _why(stderr: str) -> str:
    """What a failed torchrun printed that says why: the ranks' own error lines, then the tail."""
    marks = ("terminate", "what()", "Error", "Fatal", "Abort", "Signal")
    lines = [ln for ln in stderr.splitlines() if any(m in ln for m in marks)]
    return "\n".join(lines[:40]) + "\n...\n" + stderr[-1500:]


def _batches(rank: int, world: int) -> callable:
    def make(start: int) -> Iterator[dict[str, torch.Tensor]]:
        step = start
        while True:
            g = torch.Generator().manual_seed(1000 + step)
            x = torch.randn(GLOBAL_BATCH, 4, generator=g)
            y = x.sum(dim=1, keepdim=True)
            per = GLOBAL_BATCH // world
            yield {"x": x[rank * per : (rank + 1) * per], "y": y[rank * per : (rank + 1) * per]}
            step += 1

    return make


def _step(model: nn.Module, batch: dict, gen: torch.Generator) -> tuple[torch.Tensor, dict]:
    return nn.functional.mse_loss(model(batch["x"]), batch["y"]), {}


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 1))


def _cfg() -> LoopConfig:
    return LoopConfig(steps=12, lr=5e-3, checkpoint_every=6, log_every=4, seed=0, grad_clip=None)


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(
        {
            "RANK": str(rank),
            "WORLD_SIZE": str(world),
            "LOCAL_RANK": str(rank),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
        }
    )
    torch.set_num_threads(1)
    info = init_distributed("cpu")
    model = _model()
    res = train(
        model, _step, _batches(rank, world), _cfg(), Path(out), {}, info, show_progress=False
    )
    torch.save({"state": model.state_dict(), "loss": res.last["loss"]}, f"{out}/rank{rank}.pt")
    shutdown_distributed()


def test_ddp_two_gloo_ranks_match_single_process(tmp_path: Path) -> None:
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    r0 = torch.load(tmp_path / "rank0.pt")
    r1 = torch.load(tmp_path / "rank1.pt")
    for k in r0["state"]:
        torch.testing.assert_close(r0["state"][k], r1["state"][k], rtol=0, atol=0)

    from neurofm.train.distributed import DistInfo

    single = _model()
    solo = DistInfo(0, 1, 0, torch.device("cpu"))
    res = train(single, _step, _batches(0, 1), _cfg(), tmp_path / "solo", {}, solo)
    # Same global batch: DDP averages the gradients of two half-batches, which equals the
    # full-batch mean gradient; only float summation order differs (tolerance 1e-5).
    for k, v in single.state_dict().items():
        torch.testing.assert_close(r0["state"][k], v, rtol=1e-5, atol=1e-5)
    assert abs(r0["loss"] - res.last["loss"]) < 1e-5 * max(1.0, abs(res.last["loss"]))


def test_torchrun_pretrain_and_finetune_cli(tiny_prepared: Path, tmp_path: Path) -> None:
    """`torchrun --nproc_per_node 2` runs the real commands with DDP on gloo."""
    import json
    import subprocess
    import sys

    torchrun = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
    ]
    fast = [
        "--steps",
        "2",
        "--batch-size",
        "2",
        "--workers",
        "0",
        "--device",
        "cpu",
        "--threads",
        "1",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    pre = tmp_path / "pre"
    cmd = [*torchrun, "-m", "neurofm.cli", "pretrain", str(tiny_prepared), "--out", str(pre), *fast]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, _why(res.stderr)
    assert json.loads((pre / "config.json").read_text())["world_size"] == 2
    ft = tmp_path / "ft"
    cmd = [*torchrun, "-m", "neurofm.cli", "finetune", str(tiny_prepared), "--task", "brain_age",
           "--init", str(pre), "--out", str(ft), "--input-size", "32", *fast]  # fmt: skip
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, _why(res.stderr)
    assert (ft / "model.safetensors").exists()


def test_ranks_meet_before_teardown_but_not_after_a_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A finished command waits for every rank before leaving the group (a rank that tears its
    sockets down early can make a slower peer abort); a failed one must not wait (its peers
    would never arrive) and still leaves the group."""
    import neurofm.train.distributed as d
    from neurofm.cli.cmd_train import _run

    calls: list[str] = []
    monkeypatch.setattr(d, "barrier", lambda info: calls.append("barrier"))
    monkeypatch.setattr(d, "shutdown_distributed", lambda: calls.append("shutdown"))
    with _run(tmp_path / "ok", "cpu", 0, overwrite=False, resume=False):
        calls.append("work")
    assert calls == ["barrier", "work", "barrier", "shutdown"]
    calls.clear()
    with (
        pytest.raises(RuntimeError),
        _run(tmp_path / "bad", "cpu", 0, overwrite=False, resume=False),
    ):
        calls.append("work")
        raise RuntimeError("a rank failed")
    assert calls == ["barrier", "work", "shutdown"]
