"""Classification by denoising error: the decision rule, independent of any network.

For one image ``x0`` the classifier draws ``K`` noise volumes from a generator seeded with
``seed``, noises ``x0`` with each of them at ``T`` fixed timesteps, and asks the denoiser to
predict the noise once per class on the *same* noisy image. Each of the ``K x T`` draws votes for
the class with the lower mean squared noise-prediction error (ties go to the lower class index).

Outputs, and why:

* probability of class ``c`` = ``(votes_c + 1/2) / (K T + n_classes / 2)``: the vote share with
  a Jeffreys prior, so a unanimous vote is a confident probability but never exactly 0 or 1
  (a hard 0/1 would make the Brier score and log loss punish a single unlucky case without
  bound). The vote share rather than a softmax of error gaps is the default because it needs no
  temperature fitted on held-out labels (there are ~5 validation cases in the few-shot setting);
  the mean error gap is returned as well, as a continuous score for ranking (AUROC) studies;
* uncertainty = entropy of the raw vote shares in bits (0: unanimous, 1: an even binary split);
* explanation = the per-voxel error of each class averaged over draws; ``map(0) - map(1)`` is
  where the class-1 hypothesis explains the image better.

Timesteps are evenly spaced (midpoints of ``T`` equal bins) over ``[0, t_max * steps)``: the
informative range for classification is low-to-middle noise, where the class still shapes the
prediction; at high noise both hypotheses predict nearly the same thing (Li et al. 2023,
"Your diffusion model is secretly a zero-shot classifier").

Noise draws are generated one by one from a CPU generator, so the values depend on the seed and
the image shape only, never on the batch size or the device.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from neurofm.diffusion.schedule import NoiseSchedule
from neurofm.errors import NeuroFMError

Denoiser = Callable[[Tensor, Tensor, Tensor], Tensor]
"""``(x_t (B, C, ...), t (B,) int, y (B,) int) -> predicted noise (B, C, ...)``."""


@dataclass(frozen=True)
class ClassifierSettings:
    """How many draws, at which timesteps, from which seed."""

    k: int = 4
    t: int = 8
    t_max: float = 0.5
    seed: int = 0
    batch: int = 8

    def __post_init__(self) -> None:
        where = "diffusion classifier"
        if self.k < 1 or self.t < 1:
            raise NeuroFMError(where, f"K and T must be at least 1 (got K={self.k}, T={self.t})")
        if not 0.0 < self.t_max <= 1.0:
            raise NeuroFMError(where, f"t_max must be in (0, 1] (got {self.t_max:g})")
        if self.batch < 1:
            raise NeuroFMError(where, f"batch must be at least 1 (got {self.batch})")

    @property
    def evaluations(self) -> int:
        """Noisy images per case; the network runs this many times per class."""
        return self.k * self.t


def eval_timesteps(schedule: NoiseSchedule, t: int, t_max: float) -> list[int]:
    """``t`` timesteps at the midpoints of equal bins of ``[0, t_max * steps)``."""
    top = t_max * schedule.steps
    return [min(schedule.steps - 1, int((i + 0.5) / t * top)) for i in range(t)]


@dataclass
class Verdict:
    """Everything the rule saw for one image."""

    errors: np.ndarray  # (K, T, n_classes): mean squared error of each draw and class
    maps: np.ndarray | None  # (n_classes, *spatial): per-voxel error averaged over draws
    timesteps: list[int]

    @property
    def n_classes(self) -> int:
        return int(self.errors.shape[-1])

    @property
    def votes(self) -> np.ndarray:
        """Winning class of each draw, ``(K, T)``."""
        return np.argmin(self.errors, axis=-1)

    @property
    def vote_share(self) -> np.ndarray:
        """Raw share of draws won by each class."""
        counts = np.bincount(self.votes.ravel(), minlength=self.n_classes)
        return counts / counts.sum()

    @property
    def probabilities(self) -> np.ndarray:
        """Jeffreys-smoothed vote shares (module docstring)."""
        counts = np.bincount(self.votes.ravel(), minlength=self.n_classes)
        return (counts + 0.5) / (counts.sum() + 0.5 * self.n_classes)

    @property
    def probability(self) -> float:
        """Probability of class 1 (the positive class of a binary task)."""
        return float(self.probabilities[1])

    @property
    def entropy(self) -> float:
        """Entropy of the vote shares in bits."""
        p = self.vote_share[self.vote_share > 0]
        return float(-(p * np.log2(p)).sum()) + 0.0  # + 0.0: a unanimous vote is 0.0, not -0.0

    @property
    def mean_gap(self) -> float:
        """Mean over draws of ``error(class 0) - error(class 1)``: > 0 favours class 1."""
        return float(np.mean(self.errors[..., 0] - self.errors[..., 1]))

    def subset(self, k: int, t_index: Sequence[int]) -> Verdict:
        """The verdict the first ``k`` noise draws at the timesteps ``t_index`` would give."""
        idx = list(t_index)
        return Verdict(self.errors[:k][:, idx], None, [self.timesteps[i] for i in idx])


@torch.no_grad()
def classify(
    denoiser: Denoiser,
    x0: Tensor,
    schedule: NoiseSchedule,
    settings: ClassifierSettings,
    n_classes: int = 2,
    within: Tensor | None = None,
    keep_maps: bool = True,
) -> Verdict:
    """Apply the rule to one image ``x0`` ``(C, *spatial)``.

    ``within`` (bool, spatial) restricts the scalar errors to those voxels (e.g. the head, so
    air does not dilute the difference); maps always cover every voxel.
    """
    if n_classes < 2:
        raise NeuroFMError("diffusion classifier", f"needs at least 2 classes (got {n_classes})")
    spatial = tuple(x0.shape[1:])
    sel = torch.ones(spatial, dtype=torch.bool) if within is None else within.bool().cpu()
    if tuple(sel.shape) != spatial or not bool(sel.any()):
        raise NeuroFMError("diffusion classifier", f"'within' must be a non-empty {spatial} mask")
    ts = eval_timesteps(schedule, settings.t, settings.t_max)
    gen = torch.Generator(device="cpu").manual_seed(settings.seed)
    errors = np.zeros((settings.k, settings.t, n_classes))
    maps = torch.zeros((n_classes, *spatial), dtype=torch.float64) if keep_maps else None
    per_call = max(1, settings.batch // n_classes)
    sel_dev = sel.to(x0.device)
    for k in range(settings.k):
        noise = torch.randn(x0.shape, generator=gen, dtype=torch.float32).to(x0.device, x0.dtype)
        for start in range(0, settings.t, per_call):
            chunk = list(range(start, min(settings.t, start + per_call)))
            n = len(chunk)
            t = torch.tensor([ts[i] for i in chunk], device=x0.device)
            xt = schedule.q_sample(x0.expand(n, *x0.shape), t, noise.expand(n, *x0.shape))
            y = torch.arange(n_classes, device=x0.device).repeat_interleave(n)
            eps = denoiser(xt.repeat(n_classes, *([1] * x0.ndim)), t.repeat(n_classes), y)
            sq = ((eps.float() - noise.float()) ** 2).sum(dim=1).reshape(n_classes, n, *spatial)
            errors[k, chunk, :] = sq[:, :, sel_dev].mean(dim=-1).T.double().cpu().numpy()
            if maps is not None:
                maps += sq.sum(dim=1).double().cpu()
    out = None if maps is None else (maps / settings.evaluations).numpy()
    return Verdict(errors, out, ts)
