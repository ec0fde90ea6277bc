"""Cases needed for a target score, with a bootstrap interval, or an honest "cannot extrapolate".

Uncertainty comes from the repeats: each resample redraws, with replacement, the repeat scores
within every sample size (deviations from the size's mean scaled by ``sqrt(m / (m - 1))`` so
the resampled mean has the unbiased variance) and refits the curve (weights kept from the
data). When some size has a single repeat there is nothing to redraw there, so the resamples
instead perturb the fitted means by their residuals with random signs (wild bootstrap). The
interval of ``n`` is the percentile interval of the refitted ``n``; a resample whose asymptote
stays below the target needs infinitely many cases, so if more than ``alpha / 2`` of them do,
the upper end is unbounded and no number is given.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from neurofm.plan.curve import (
    B_RANGE,
    CurvePoints,
    PowerLawFit,
    early_slope,
    fit_many,
    fit_power_law,
    n_for_score,
)

Status = Literal["ok", "cannot_extrapolate"]
MAX_EXTRAPOLATION = 100.0
"""A number of cases more than this many times the largest size observed is not reported:
the curve's tail is then set by the functional form, not by the data."""


@dataclass(frozen=True)
class PlanResult:
    """The fitted curve and what it says about ``target`` (scores in the metric's own sign)."""

    target: float
    higher_is_better: bool
    sizes: list[float]
    means: list[float]
    fit: dict[str, float]
    """``c, a, b`` and their standard errors, in the original metric's sign."""
    asymptote_ci: tuple[float, float]
    early_slope: float
    status: Status
    n_needed: float | None
    n_ci: tuple[float, float | None] | None
    """Lower and upper ends; the upper end is None (unbounded) when status is not ok."""
    reasons: list[str] = field(default_factory=list)
    n_boot: int = 0
    boot_unreachable: float = 0.0
    """Fraction of resamples whose asymptote never reaches the target."""
    unreachable: bool = False
    """The fitted asymptote, or the whole of its interval, stays short of the target."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def resample_means(points: CurvePoints, n_boot: int, rng: np.random.Generator,
                   fitted: np.ndarray) -> np.ndarray:  # fmt: skip
    """(n_boot, K) resampled means: repeats redrawn within each size, or a wild bootstrap of
    the residuals around ``fitted`` when some size has a single repeat."""
    if min(len(s) for s in points.scores) >= 2:
        cols = []
        for s in points.scores:
            m = len(s)
            # deviations scaled by sqrt(m / (m - 1)): plain resampling of m repeats shrinks the
            # variance of their mean by (m - 1) / m, which with 3-5 repeats narrows the interval
            spread = s.mean() + np.sqrt(m / (m - 1)) * (s - s.mean())
            cols.append(spread[rng.integers(0, m, (n_boot, m))].mean(axis=1))
        return np.stack(cols, axis=1)
    resid = points.means - fitted
    signs = rng.choice([-1.0, 1.0], size=(n_boot, len(resid)))
    return fitted[None, :] + signs * resid[None, :]


def plan_target(
    points: CurvePoints,
    target: float,
    *,
    higher_is_better: bool = True,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> PlanResult:
    """Fit the curve to ``points`` and estimate the cases needed to reach ``target``."""
    sign = 1.0 if higher_is_better else -1.0
    pts = CurvePoints(points.sizes, tuple(sign * s for s in points.scores))
    tgt = sign * target
    fit: PowerLawFit = fit_power_law(pts)
    rng = np.random.default_rng(seed)
    boot_y = resample_means(pts, n_boot, rng, fit.predict(pts.sizes))
    boot = fit_many(pts.sizes, boot_y, pts.sigma())
    boot_n = n_for_score(boot[:, 0], boot[:, 1], boot[:, 2], tgt)
    c_lo, c_hi = np.quantile(boot[:, 0], [alpha / 2, 1 - alpha / 2])
    unreachable = float(np.mean(~np.isfinite(boot_n)))
    n_point = float(n_for_score(fit.c, fit.a, fit.b, tgt))

    reasons = []
    unreachable_target = not np.isfinite(n_point) or c_hi <= tgt
    if not np.isfinite(n_point):
        reasons.append(f"the fitted asymptote {sign * fit.c:.4g} does not reach the target")
    if c_hi <= tgt:
        reasons.append("the target lies beyond the asymptote's confidence interval")
    if unreachable > alpha / 2:
        reasons.append(
            f"{unreachable:.0%} of bootstrap curves never reach the target (upper bound unbounded)"
        )
    if fit.b <= B_RANGE[0] * 1.01 or fit.b >= B_RANGE[1] * 0.99:
        reasons.append(f"the exponent b={fit.b:.3g} sits at its bound: the points do not fix it")
    limit = MAX_EXTRAPOLATION * float(pts.sizes.max())
    if np.isfinite(n_point) and n_point > limit:
        reasons.append(f"n={n_point:.3g} is over {MAX_EXTRAPOLATION:g}x the largest size observed")

    # no interpolation between order statistics: an infinite resample must not make NaN
    n_lo, n_hi = (float(v) for v in np.quantile(boot_n, [alpha / 2, 1 - alpha / 2],
                                                 method="inverted_cdf"))  # fmt: skip
    status: Status = "cannot_extrapolate" if reasons else "ok"
    n_ci: tuple[float, float | None] | None = (n_lo, n_hi)
    if status != "ok":
        n_ci = (n_lo, None) if np.isfinite(n_lo) else None
    c_ci = (c_lo, c_hi) if sign > 0 else (-c_hi, -c_lo)
    return PlanResult(
        target=target,
        higher_is_better=higher_is_better,
        sizes=[float(v) for v in pts.sizes],
        means=[float(v) for v in points.means],
        fit={
            "c": sign * fit.c,
            "a": sign * fit.a,
            "b": fit.b,
            "se_c": fit.se[0],
            "se_a": fit.se[1],
            "se_b": fit.se[2],
            "rmse": fit.rmse,
        },
        asymptote_ci=(float(c_ci[0]), float(c_ci[1])),
        early_slope=sign * early_slope(pts),
        status=status,
        n_needed=n_point if status == "ok" else None,
        n_ci=n_ci,
        reasons=reasons,
        n_boot=n_boot,
        boot_unreachable=unreachable,
        unreachable=unreachable_target,
    )
