"""Test-retest reliability of embeddings across scanners: travelling heads and ICC(2,1).

Travelling heads are rendered with the embedded benchmark's own renderer: a brain-age job's
random key fixes the subject (age and anatomy are drawn before anything site-specific), so the
same key rendered at each site gives the same head scanned on different scanners.

ICC(2,1) (Shrout & Fleiss 1979: two-way random effects, absolute agreement, single rater) is
written out from the two-way ANOVA mean squares: it is a few lines, and the libraries that
provide it (pingouin) are not dependencies; it is checked against the worked example of
Shrout & Fleiss (their Table 2) in the tests.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from neurofm.errors import NeuroFMError
from neurofm.synth.benchmark import STREAM, Job, get_preset, render_job
from neurofm.synth.templates import load_template

TRAVEL_SPLIT_ID = 97
"""Split index of travelling-head keys: no benchmark split uses it, so no head is a test case."""


def icc_2_1(x: np.ndarray) -> np.ndarray:
    """ICC(2,1) of ``x`` shaped (subjects, raters[, features]); one value per feature."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 2:
        x = x[..., None]
    n, k = x.shape[:2]
    if n < 2 or k < 2:
        raise NeuroFMError(None, f"ICC needs >= 2 subjects and >= 2 raters, got {n}x{k}")
    grand = x.mean(axis=(0, 1))
    rows = x.mean(axis=1)
    cols = x.mean(axis=0)
    ss_r = k * ((rows - grand) ** 2).sum(axis=0)
    ss_c = n * ((cols - grand) ** 2).sum(axis=0)
    ss_e = ((x - grand) ** 2).sum(axis=(0, 1)) - ss_r - ss_c
    msr, msc, mse = ss_r / (n - 1), ss_c / (k - 1), ss_e / ((n - 1) * (k - 1))
    denom = msr + (k - 1) * mse + k * (msc - mse) / n
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(np.where(denom > 0, (msr - mse) / denom, np.nan))


def render_travelling_heads(out: Path, n_subjects: int, preset: str, seed: int) -> list[str]:
    """Render ``n_subjects`` brain-age heads at every site of the benchmark ``preset``/``seed``
    into ``out/brain_age/travel_<site>/head_<i>``; returns the site names."""
    p = get_preset(preset)
    template = load_template(p.template_spacing)
    lo = tuple(float(v) - p.margin_mm for v in template.icv_box[0])
    hi = tuple(float(v) + p.margin_mm for v in template.icv_box[1])
    sites = p.sites(seed)
    for site in sites:
        for i in range(n_subjects):
            job = Job(
                task="brain_age",
                split=f"travel_{site.name}",
                case=f"head_{i:03d}",
                site=site,
                key=(STREAM["brain_age"], TRAVEL_SPLIT_ID, i + 1),
            )
            render_job(job, seed, (lo, hi), p.template_spacing, out)  # type: ignore[arg-type]
    return [s.name for s in sites]
