"""Compute efficiency of a training step: counted model FLOPs per second beside a matmul peak.

A U-Net preset runs full training steps (forward, a mean-square loss, backward, AdamW) on random
patches; the FLOPs of one step are counted by ``torch.utils.flop_counter.FlopCounterMode``
(convolutions and matmuls, forward and backward), so ``achieved GFLOP/s = step FLOPs / step
time``. The peak it is set against is measured in the same process, interleaved with the steps:
a float32 ``torch.matmul`` of two ``n x n`` matrices, as close to the hardware's dense limit as
this process gets under the same load and threads.

Each CPU option the ecosystem offers is tried as a variant of the default (float32, contiguous,
eager): ``channels_last`` (``torch.channels_last_3d`` model and input), ``bf16``
(``torch.autocast("cpu", torch.bfloat16)``) and ``compile`` (``torch.compile``). A variant is
*kept* only if it is faster and its first-step output and gradients match the default's from the
same weights within its tolerance (relative L2 error; bf16 keeps about 3 significant digits, so
its tolerance is wider). The timing loop is hand-written: no library times a train step against a
matmul peak.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from neurofm.errors import NeuroFMError
from neurofm.models import build_unet, get_preset

VARIANTS: tuple[str, ...] = ("default", "channels_last", "bf16", "compile")
TOLERANCE: dict[str, float] = {"default": 0.0, "channels_last": 1e-3, "bf16": 5e-2, "compile": 1e-3}


@dataclass(frozen=True)
class ComputeSettings:
    """Which presets and variants are timed, on what batch, for how many steps."""

    presets: tuple[str, ...] = ("tiny", "small")
    variants: tuple[str, ...] = VARIANTS
    batch_size: int = 2
    patch: int = 32
    steps: int = 3
    warmup: int = 1
    matmul_size: int = 2048
    seed: int = 0

    def __post_init__(self) -> None:
        """Unknown variants and untimeable settings are one-line errors, before any work."""
        unknown = sorted(set(self.variants) - set(VARIANTS))
        if unknown:
            raise NeuroFMError("--variants", f"unknown {unknown} (known: {', '.join(VARIANTS)})")
        if "default" not in self.variants:
            raise NeuroFMError("--variants", "must include 'default' (the others are compared)")
        if self.steps < 1 or self.warmup < 1:
            raise NeuroFMError("--compute-steps", "steps and warm-up must be at least 1")
        for name in self.presets:
            div = get_preset(name).divisor
            if self.patch % div or self.patch < 2 * div:
                raise NeuroFMError(
                    "--compute-patch",
                    f"{self.patch} does not fit preset {name!r} (multiples of {div}, >= {2 * div})",
                )


def gflops(flops: float, seconds: float) -> float:
    """FLOPs over seconds, in GFLOP/s."""
    return flops / seconds / 1e9


def matmul_seconds(a: torch.Tensor, b: torch.Tensor, repeats: int) -> float:
    """Fastest of ``repeats`` ``a @ b``."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - t0)
    return best


def matmul_peak(n: int = 2048, repeats: int = 5) -> dict[str, float]:
    """Best float32 ``n x n`` matmul rate of ``repeats`` (2 n^3 FLOPs each), after one warm-up."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.matmul(a, b)
    best = matmul_seconds(a, b, repeats)
    return {"n": n, "seconds_best": best, "gflops": gflops(2 * n**3, best)}


def _autocast(variant: str) -> AbstractContextManager[Any]:
    if variant == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return nullcontext()


def _prepare(model: nn.Module, x: torch.Tensor, variant: str) -> tuple[Callable[..., Any], Any]:
    """The callable and input a variant trains with (the module itself is changed in place)."""
    if variant == "channels_last":
        model.to(memory_format=torch.channels_last_3d)  # type: ignore[call-overload]
        return model, x.contiguous(memory_format=torch.channels_last_3d)
    if variant == "compile":
        return torch.compile(model), x
    return model, x


def _step(
    fn: Callable[..., Any], x: torch.Tensor, variant: str, opt: torch.optim.Optimizer | None
) -> torch.Tensor:
    """One training step; the loss (mean square of the output) only has to reach every weight."""
    with _autocast(variant):
        y = fn(x)
    loss = y.float().square().mean()
    loss.backward()
    if opt is not None:
        opt.step()
        opt.zero_grad(set_to_none=True)
    return y.detach().float()


def step_flops(model: nn.Module, x: torch.Tensor) -> int:
    """FLOPs of one forward + backward of ``model`` on ``x`` (counted, not estimated)."""
    counter = FlopCounterMode(display=False)
    with counter:
        _step(model, x, "default", None)
    model.zero_grad(set_to_none=True)
    return int(counter.get_total_flops())


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / a.norm().clamp_min(1e-12))


def first_step(
    preset: str, variant: str, x: torch.Tensor, seed: int
) -> tuple[torch.Tensor, torch.Tensor, nn.Module, Callable[..., Any], Any]:
    """Output and flat gradient of one step from the seed's weights; also the ready model."""
    torch.manual_seed(seed)
    model = build_unet(get_preset(preset))
    fn, xin = _prepare(model, x, variant)
    y = _step(fn, xin, variant, None)
    grad = torch.cat([p.grad.reshape(-1) for p in model.parameters() if p.grad is not None])
    model.zero_grad(set_to_none=True)
    return y.contiguous(), grad, model, fn, xin


def measure_preset(preset: str, s: ComputeSettings) -> dict[str, Any]:
    """Every variant of one preset: step time, achieved GFLOP/s, error against the default.

    The variants' steps are interleaved (one step of each per round, then a few float32 matmuls)
    and the fastest of each counts, so a burst of load from other processes hits steps and peak
    alike; ``fraction_of_matmul_peak`` uses this preset's own peak.
    """
    gen = torch.Generator().manual_seed(s.seed)
    x = torch.randn((s.batch_size, 1, s.patch, s.patch, s.patch), generator=gen)
    torch.manual_seed(s.seed)
    flops = step_flops(build_unet(get_preset(preset)), x)
    results: dict[str, dict[str, Any]] = {}
    ready: dict[str, tuple[Callable[..., Any], Any, torch.optim.Optimizer]] = {}
    ref: tuple[torch.Tensor, torch.Tensor] | None = None
    for variant in [v for v in VARIANTS if v in s.variants]:  # default first
        try:
            t0 = time.perf_counter()
            y, g, model, fn, xin = first_step(preset, variant, x, s.seed)
            first_s = time.perf_counter() - t0
        except Exception as exc:  # a variant the platform lacks (no compiler ...) is a result too
            results[variant] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
            continue
        ref = ref or (y, g)
        results[variant] = {
            "first_step_s": first_s,
            "output_rel_error": _rel(ref[0], y),
            "grad_rel_error": _rel(ref[1], g),
            "tolerance": TOLERANCE[variant],
        }
        ready[variant] = (fn, xin, torch.optim.AdamW(model.parameters(), lr=1e-4))
    if "default" not in ready:
        raise NeuroFMError(preset, f"the default training step failed: {results['default']}")
    for _ in range(s.warmup):
        for variant, (fn, xin, opt) in ready.items():
            _step(fn, xin, variant, opt)
    times: dict[str, list[float]] = {v: [] for v in ready}
    n = s.matmul_size
    a, b = torch.randn(n, n), torch.randn(n, n)
    matmul = float("inf")
    for _ in range(s.steps):
        for variant, (fn, xin, opt) in ready.items():
            t0 = time.perf_counter()
            _step(fn, xin, variant, opt)
            times[variant].append(time.perf_counter() - t0)
        matmul = min(matmul, matmul_seconds(a, b, 3))
    peak = gflops(2 * n**3, matmul)
    for variant, ts in times.items():
        best = min(ts)
        results[variant] |= {
            "step_s_best": best,
            "step_s_median": statistics.median(ts),
            "gflops": gflops(flops, best),
            "fraction_of_matmul_peak": gflops(flops, best) / peak,
        }
    base = results["default"]["step_s_best"]
    for variant, r in results.items():
        if variant == "default" or "error" in r:
            continue
        r["speedup"] = base / r["step_s_best"]
        r["within_tolerance"] = max(r["output_rel_error"], r["grad_rel_error"]) <= r["tolerance"]
        r["kept"] = r["within_tolerance"] and r["speedup"] > 1.0
    return {"flops_per_step": flops, "matmul_peak_gflops": peak, "variants": results}


def run_compute_bench(s: ComputeSettings) -> dict[str, Any]:
    """Each preset's variants with its own interleaved matmul peak; the peak alone before and
    after, to show how much the load drifted during the run."""
    before = matmul_peak(s.matmul_size)
    presets = {name: measure_preset(name, s) for name in s.presets}
    after = matmul_peak(s.matmul_size)
    return {
        "settings": asdict(s),
        "threads": torch.get_num_threads(),
        "matmul_peak_alone": {"before": before, "after": after},
        "presets": presets,
    }
