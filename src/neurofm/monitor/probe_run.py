"""The probe on a labelled split: embed with a run's frozen encoder, nested CV, write."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from neurofm.atomic import publish_dir, sibling_tmp_dir, write_json_atomic, write_text_atomic
from neurofm.errors import NeuroFMError
from neurofm.io.splits import read_split
from neurofm.monitor.embed import load_embedder
from neurofm.monitor.probe import ProbeResult, nested_cv
from neurofm.tasks import get_task


def run_probe(
    model: Path,
    split: Path,
    task: str,
    out: Path,
    *,
    outer: int,
    inner: int,
    forest: bool,
    seed: int,
    device: str,
) -> ProbeResult:
    """Writes ``probe.json`` (fold scores, choices) and ``oof.csv`` (out-of-fold predictions)."""
    kind = get_task(task).kind
    if kind == "segmentation":
        raise NeuroFMError(split, "a probe needs a case-level target (infarct or brain_age)")
    cases = read_split(split, task)
    y = np.array([c.label if kind == "classification" else c.age for c in cases], dtype=float)
    emb = load_embedder(model, device).embed_cases([c.folder for c in cases], label="embed")
    res = nested_cv(emb, y, kind, outer=outer, inner=inner, seed=seed, forest=forest)
    tmp = sibling_tmp_dir(out)
    write_json_atomic(tmp / "probe.json", {
        "model": str(model), "split": str(split), "task": task, "metric": res.metric,
        "mean": res.mean, "sd": float(np.std(res.fold_scores, ddof=1)),
        "fold_scores": res.fold_scores, "choices": res.choices,
        "outer": outer, "inner": inner, "seed": seed, "n_cases": len(cases),
    })  # fmt: skip
    oof = pd.DataFrame({"case": [c.case_id for c in cases], "target": y, "oof": res.oof})
    write_text_atomic(tmp / "oof.csv", oof.to_csv(index=False))
    publish_dir(tmp, out)
    return res
