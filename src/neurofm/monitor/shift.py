"""How well a monitor separates shifted cases from clean in-domain ones.

For each encoder a monitor is fitted on reference cases; the clean in-domain test cases are
the negatives, and each shift in turn the positives: the same test cases under a corruption
(:mod:`neurofm.monitor.corruptions`), or another site's test cases. Reported per encoder, shift
and density method: AUROC (``sklearn.metrics.roc_auc_score``) and the fraction flagged at the
monitor's calibrated threshold. Every case is loaded and corrupted once and then embedded by
every encoder, so encoders are compared on identical inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from rich.progress import Progress
from sklearn.metrics import roc_auc_score

from neurofm.monitor.corruptions import CORRUPTIONS
from neurofm.monitor.density import METHODS
from neurofm.monitor.embed import Embedder
from neurofm.monitor.monitor import MonitorSettings, fit_monitor
from neurofm.predict import case_inputs

CLEAN = "clean"


def embed_variants(
    embedders: dict[str, Embedder],
    cases: Sequence[Path],
    corruptions: Sequence[str],
    seed: int = 0,
    progress: bool = True,
) -> dict[str, dict[str, np.ndarray]]:
    """``{encoder: {variant: (N, D)}}`` for the clean cases and each corruption of them."""
    variants = [CLEAN, *corruptions]
    rows: dict[str, dict[str, list[np.ndarray]]] = {e: {v: [] for v in variants} for e in embedders}
    first = next(iter(embedders.values())).predictor
    with Progress(disable=not progress, transient=True) as bar:
        job = bar.add_task("embed cases x corruptions", total=len(cases) * len(variants))
        for i, case in enumerate(cases):
            volume, affine = case_inputs(Path(case), first)
            for v in variants:
                shown = volume if v == CLEAN else CORRUPTIONS[v](volume, seed + i)
                for name, emb in embedders.items():
                    rows[name][v].append(emb.embed_volume(shown, affine))
                bar.advance(job)
    return {e: {v: np.stack(r) for v, r in d.items()} for e, d in rows.items()}


def shift_table(
    reference: dict[str, np.ndarray],
    clean: dict[str, np.ndarray],
    shifted: dict[str, dict[str, np.ndarray]],
    kinds: dict[str, str],
    settings: MonitorSettings,
) -> pd.DataFrame:
    """Rows ``encoder, shift, kind, method, auroc, flagged, clean_flagged, n_clean, n_shift``.

    ``reference`` / ``clean``: encoder -> embeddings; ``shifted``: encoder -> shift -> embeddings;
    ``kinds``: shift -> ``corruption`` or ``site``.
    """
    out = []
    for enc, ref in reference.items():
        ids = [f"r{i}" for i in range(len(ref))]
        mon = fit_monitor(ids, ref, enc, enc, settings)
        clean_scores = {m: mon.density.score(clean[enc], m) for m in METHODS}
        for shift, emb in shifted[enc].items():
            for m in METHODS:
                s = mon.density.score(emb, m)
                y = np.r_[np.zeros(len(clean_scores[m])), np.ones(len(s))]
                out.append(
                    {
                        "encoder": enc,
                        "shift": shift,
                        "kind": kinds[shift],
                        "method": m,
                        "auroc": float(roc_auc_score(y, np.r_[clean_scores[m], s])),
                        "flagged": float(np.mean(s > mon.thresholds[m])),
                        "clean_flagged": float(np.mean(clean_scores[m] > mon.thresholds[m])),
                        "n_clean": len(clean_scores[m]),
                        "n_shift": len(s),
                    }
                )
    return pd.DataFrame(out)
