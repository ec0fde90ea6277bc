"""The one training loop that pretraining and finetuning share.

What varies between runs is passed in as functions, not subclasses: ``step_fn`` computes a loss
from a batch, ``batches(start_step)`` yields batches from a given step on (so a resumed run sees
the same data it would have seen), and ``evaluate`` (optional) scores the model on held-out data
for early stopping. The loop owns the rest: DDP, mixed precision on CUDA, gradient clipping, the
schedule, atomic checkpoints, resume, logging and the data-wait measurement.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from neurofm.errors import NeuroFMError
from neurofm.runfiles import load_weights
from neurofm.train.checkpoint import clean_stale_temporaries, load_train_state, save_checkpoint
from neurofm.train.distributed import DistInfo, all_reduce_mean, barrier
from neurofm.train.runlog import RunLog
from neurofm.train.settings import require_at_least, require_choice, require_positive

Batch = dict[str, Any]
StepFn = Callable[[nn.Module, Batch, torch.Generator], tuple[torch.Tensor, Mapping[str, Any]]]
EvalFn = Callable[[nn.Module], dict[str, float]]


@dataclass
class LoopConfig:
    """Optimisation recipe; stored in every checkpoint config."""

    steps: int = 200
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 10
    schedule: str = "cosine"  # decay after the warm-up: one of LR_SCHEDULES
    grad_clip: float | None = 1.0
    checkpoint_every: int = 50
    log_every: int = 10
    eval_every: int = 0
    monitor: str = ""
    monitor_mode: str = "min"
    patience: int = 0
    lr_scales: dict[str, float] = field(default_factory=dict)  # parameter-name prefix -> factor
    amp: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("lr", "checkpoint_every", "log_every"):
            require_positive(name, getattr(self, name))
        for name in ("steps", "weight_decay", "warmup_steps", "eval_every", "patience"):
            require_at_least(name, getattr(self, name), 0)
        if self.grad_clip is not None:
            require_positive("grad_clip", self.grad_clip)
        require_choice("schedule", self.schedule, LR_SCHEDULES)
        if self.monitor_mode not in ("min", "max"):
            raise NeuroFMError(None, f"monitor_mode must be min or max (got {self.monitor_mode!r})")
        if self.eval_every and not self.monitor:
            raise NeuroFMError(None, "eval_every needs a monitor: the metric early stopping reads")


@dataclass
class LoopResult:
    """What happened: steps run, the last logged values, timing and the best evaluation."""

    steps: int
    last: dict[str, float] = field(default_factory=dict)
    best: dict[str, float] = field(default_factory=dict)
    best_step: int = -1
    seconds: float = 0.0
    data_wait_fraction: float = 0.0
    stopped_early: bool = False


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch so a CPU run is reproducible."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


LR_SCHEDULES = ("cosine", "poly")
"""Learning-rate decays after the linear warm-up: cosine to zero, or nnU-Net's polynomial
``(1 - progress) ** 0.9`` (below cosine until ~44 % of the decay, above it after, also ending
at zero)."""
WEIGHT_SELECTIONS = ("best", "last")
"""Which weights a finetuning keeps: the validation-selected step (with early stopping) or the
final step (a fixed schedule, as nnU-Net keeps its final checkpoint; validation only logged)."""


def lr_factor(step: int, steps: int, warmup_steps: int, schedule: str = "cosine") -> float:
    """Multiplier of the peak learning rate at optimiser step ``step`` (0-based)."""
    if step < warmup_steps:
        return (step + 1) / max(1, warmup_steps)
    progress = min(1.0, (step - warmup_steps) / max(1, steps - warmup_steps))
    if schedule == "poly":
        return (1.0 - progress) ** 0.9
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def _schedule(cfg: LoopConfig) -> Callable[[int], float]:
    return lambda step: lr_factor(step, cfg.steps, cfg.warmup_steps, cfg.schedule)


def _param_groups(model: nn.Module, cfg: LoopConfig) -> list[dict[str, Any]]:
    """Trainable parameters grouped by learning rate: ``cfg.lr`` times the factor of the first
    matching prefix in ``cfg.lr_scales`` (e.g. ``{"encoder.": 0.1}`` finetunes a pretrained
    encoder ten times slower than its fresh head)."""
    groups: dict[float, list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            factor = next((f for k, f in cfg.lr_scales.items() if name.startswith(k)), 1.0)
            groups.setdefault(factor, []).append(p)
    return [{"params": ps, "lr": cfg.lr * f} for f, ps in groups.items()]


def _to_device(batch: Batch, device: torch.device) -> Batch:
    return {
        k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()
    }


def train(
    model: nn.Module,
    step_fn: StepFn,
    batches: Callable[[int], Iterator[Batch]],
    cfg: LoopConfig,
    run_dir: Path,
    config: dict[str, Any],
    dist: DistInfo,
    *,
    evaluate: EvalFn | None = None,
    resume: bool = False,
    describe: str = "training",
    show_progress: bool = True,
) -> LoopResult:
    """Train ``model`` for ``cfg.steps`` optimiser steps and write checkpoints into ``run_dir``.

    Checkpoints: ``checkpoints/last`` every ``cfg.checkpoint_every`` steps (with optimiser state,
    for ``resume``) and ``checkpoints/best`` when ``evaluate`` improves ``cfg.monitor``. The final
    weights to use are in ``best`` when evaluation ran, else ``last``.
    """
    ckpt_dir = Path(run_dir) / "checkpoints"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    clean_stale_temporaries(ckpt_dir)
    device = dist.device
    model.to(device)
    seed_everything(cfg.seed + dist.rank)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        _param_groups(model, cfg), lr=cfg.lr, weight_decay=cfg.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(cfg))
    generator = torch.Generator(device="cpu").manual_seed(cfg.seed * 1000 + dist.rank)
    start, best, best_step, bad_evals = 0, dict[str, float](), -1, 0
    log = RunLog(run_dir, enabled=dist.is_main)

    last = ckpt_dir / "last"
    if resume and (last / "train_state.pt").exists():
        state = load_train_state(last)
        assert state is not None
        model.load_state_dict(load_weights(last))
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        np.random.set_state(state["numpy_rng"])
        random.setstate(state["python_rng"])
        start, best, best_step = state["step"], state["best"], state["best_step"]
        bad_evals = state["bad_evals"]
        log.truncate_after(start)

    wrapped: nn.Module = model
    if dist.distributed:
        ids = [device.index] if device.type == "cuda" else None
        wrapped = DistributedDataParallel(model, device_ids=ids)
    use_amp = cfg.amp and device.type == "cuda"

    def checkpoint(step: int) -> None:
        if not dist.is_main:
            return
        state = {
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "generator": generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "numpy_rng": np.random.get_state(),
            "python_rng": random.getstate(),
            "step": step,
            "best": best,
            "best_step": best_step,
            "bad_evals": bad_evals,
        }
        meta = {**config, "loop": asdict(cfg), "step": step}
        save_checkpoint(last, model.state_dict(), meta, state)

    result = LoopResult(steps=start, best=best, best_step=best_step)
    t_start, wait = time.perf_counter(), 0.0
    window: dict[str, list[float]] = {}
    progress = Progress(
        TextColumn(f"[bold]{describe}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeRemainingColumn(),
        disable=not (show_progress and dist.is_main),
        transient=False,
    )
    with progress, log:
        task = progress.add_task(describe, total=cfg.steps, completed=start, info="")
        if evaluate is not None and cfg.eval_every and start == 0:
            # the starting point is a candidate too: if training only makes the held-out score
            # worse (a good pretrained initialisation), the run keeps its initial weights
            best, best_step = evaluate(model), 0
            log.log(0, best, phase="val")
            if dist.is_main:
                save_checkpoint(ckpt_dir / "best", model.state_dict(), {**config, "step": 0})
        wrapped.train()
        it = batches(start)
        for step in range(start, cfg.steps):
            t0 = time.perf_counter()
            batch = _to_device(next(it), device)
            wait += time.perf_counter() - t0
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                loss, logs = step_fn(wrapped, batch, generator)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            optimizer.step()
            scheduler.step()
            window.setdefault("loss", []).append(float(loss.detach()))
            for k, v in logs.items():
                window.setdefault(k, []).append(float(v))
            done = step + 1
            if done % cfg.log_every == 0 or done == cfg.steps:
                means = {k: all_reduce_mean(float(np.mean(v)), dist) for k, v in window.items()}
                means["lr"] = float(scheduler.get_last_lr()[0])
                log.log(done, means)
                result.last, window = means, {}
                progress.update(task, info=f"loss {means['loss']:.4f}")
            if (
                evaluate is not None
                and cfg.eval_every
                and (done % cfg.eval_every == 0 or done == cfg.steps)
            ):
                scores = evaluate(model)
                wrapped.train()
                log.log(done, scores, phase="val")
                value = scores[cfg.monitor]
                better = (
                    not best
                    or (cfg.monitor_mode == "min" and value < best[cfg.monitor])
                    or (cfg.monitor_mode == "max" and value > best[cfg.monitor])
                )
                if better:
                    best, best_step, bad_evals = scores, done, 0
                    if dist.is_main:
                        save_checkpoint(
                            ckpt_dir / "best", model.state_dict(), {**config, "step": done}
                        )
                else:
                    bad_evals += 1
                if cfg.patience and bad_evals >= cfg.patience:
                    result.stopped_early = True
                    checkpoint(done)
                    progress.update(task, completed=done)
                    result.steps = done
                    break
            if done % cfg.checkpoint_every == 0 or done == cfg.steps:
                checkpoint(done)
            progress.update(task, completed=done)
            result.steps = done
    barrier(dist)
    result.seconds = time.perf_counter() - t_start
    result.data_wait_fraction = wait / max(result.seconds, 1e-9)
    result.best, result.best_step = best, best_step
    return result
