"""DDPM noise schedules and the forward (noising) process.

Hand-written because the two formulas are a few lines and the classifier needs exact control of
which timesteps and noise it uses; MONAI's generative schedulers live in a separate package
(``monai-generative``) that neurofm does not depend on.

* ``linear``: betas from 1e-4 to 0.02 over ``steps`` (Ho et al. 2020);
* ``cosine``: ``alpha_bar(t) = cos^2((t/steps + s) / (1 + s) * pi/2)``, betas clipped at 0.999
  (Nichol & Dhariwal 2021), which destroys less of the image at small ``t``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, get_args

import torch
from torch import Tensor

from neurofm.errors import NeuroFMError

ScheduleKind = Literal["linear", "cosine"]


def betas(kind: ScheduleKind, steps: int) -> Tensor:
    """The ``steps`` noise variances of schedule ``kind`` (float64)."""
    if kind not in get_args(ScheduleKind):
        raise NeuroFMError("schedule", f"unknown schedule {kind!r} (known: linear, cosine)")
    if steps < 2:
        raise NeuroFMError("schedule", f"needs at least 2 diffusion steps (got {steps})")
    if kind == "linear":
        return torch.linspace(1e-4, 0.02, steps, dtype=torch.float64)
    s = 0.008
    t = torch.arange(steps + 1, dtype=torch.float64) / steps
    f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    alpha_bar = f / f[0]
    return (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=0.999)


@dataclass(frozen=True)
class NoiseSchedule:
    """``alpha_bar[t]``: the share of signal variance left after ``t + 1`` noising steps."""

    kind: ScheduleKind = "linear"
    steps: int = 1000

    @property
    def alpha_bar(self) -> Tensor:
        return torch.cumprod(1.0 - betas(self.kind, self.steps), dim=0)

    def q_sample(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """``x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) noise`` for a batch ``(B, ...)``
        with one timestep per item (``t`` integer ``(B,)``)."""
        if t.ndim != 1 or t.shape[0] != x0.shape[0] or noise.shape != x0.shape:
            raise NeuroFMError(
                "q_sample", f"x0 {tuple(x0.shape)}, t {tuple(t.shape)}, noise {tuple(noise.shape)}"
            )
        if bool((t < 0).any()) or bool((t >= self.steps).any()):
            raise NeuroFMError("q_sample", f"timesteps must be in [0, {self.steps})")
        ab = self.alpha_bar.to(x0.device)[t.long()].to(x0.dtype)
        ab = ab.reshape(-1, *([1] * (x0.ndim - 1)))
        return ab.sqrt() * x0 + (1 - ab).sqrt() * noise

    def to_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "steps": self.steps}
