"""Shift detection and cross-scanner reliability of several encoders, written to a folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from neurofm.atomic import write_json_atomic, write_text_atomic
from neurofm.errors import NeuroFMError
from neurofm.monitor.cases import input_cases
from neurofm.monitor.corruptions import CORRUPTIONS
from neurofm.monitor.embed import Embedder, load_embedder
from neurofm.monitor.monitor import MonitorSettings
from neurofm.monitor.reliability import icc_2_1, render_travelling_heads
from neurofm.monitor.shift import CLEAN, embed_variants, shift_table

RANDOM_INIT = "random-init"


def load_encoders(models: list[Path], random_init: bool, device: str) -> dict[str, Embedder]:
    """Each run's encoder by folder name, plus a seeded random encoder of the first run's
    architecture when asked."""
    encoders = {Path(m).name: load_embedder(m, device) for m in models}
    if random_init:
        encoders[RANDOM_INIT] = load_embedder(models[0], device, random_init=0)
    return encoders


def run_shift_evaluation(
    encoders: dict[str, Embedder],
    reference: Path,
    clean: Path,
    sites: list[Path],
    out: Path,
    *,
    corruptions: list[str],
    max_cases: int,
    settings: MonitorSettings,
) -> pd.DataFrame:
    """Embed everything, write ``shift.csv`` (long) and ``shift_auroc.csv`` (wide), return long."""
    ref_cases = input_cases(reference)
    clean_cases = input_cases(clean)[:max_cases]
    ref = {e: emb.embed_cases(ref_cases, label=f"embed reference ({e})")
           for e, emb in encoders.items()}  # fmt: skip
    variants = embed_variants(encoders, clean_cases, corruptions, seed=settings.seed)
    kinds = {c: "corruption" for c in corruptions}
    shifted: dict[str, dict[str, np.ndarray]] = {
        e: {c: variants[e][c] for c in corruptions} for e in encoders
    }
    for site in sites:
        cases = input_cases(site)[:max_cases]
        kinds[site.name] = "site"
        for e, emb in encoders.items():
            shifted[e][site.name] = emb.embed_cases(cases, label=f"embed {site.name} ({e})")
    clean_emb = {e: variants[e][CLEAN] for e in encoders}
    table = shift_table(ref, clean_emb, shifted, kinds, settings)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "shift.csv", table.to_csv(index=False))
    wide = table.pivot_table(index=["kind", "shift"], columns=["method", "encoder"],
                             values="auroc")  # fmt: skip
    write_text_atomic(out / "shift_auroc.csv", wide.round(3).to_csv())
    arrays = {f"{e}__reference": r for e, r in ref.items()}
    arrays.update({f"{e}__{c}": v for e, d in variants.items() for c, v in d.items()})
    np.savez(out / "shift_embeddings.npz", **arrays)  # type: ignore[arg-type]
    return table


def run_icc(
    encoders: dict[str, Embedder], out: Path, *, subjects: int, preset: str, seed: int
) -> pd.DataFrame:
    """Render travelling heads into ``out/heads``, embed them, write ``icc.csv`` (per encoder:
    median ICC(2,1) over embedding dimensions, its quartiles, share of dimensions >= 0.75)."""
    heads = out / "heads"
    sites = render_travelling_heads(heads, subjects, preset, seed)
    rows = []
    per_dim: dict[str, np.ndarray] = {}
    for e, emb in encoders.items():
        stack = np.stack(
            [emb.embed_cases(input_cases(heads / "brain_age" / f"travel_{s}"),
                             label=f"embed heads at {s} ({e})") for s in sites],
            axis=1,
        )  # fmt: skip
        icc = icc_2_1(stack)
        per_dim[e] = icc
        ok = icc[np.isfinite(icc)]
        q1, med, q3 = np.quantile(ok, [0.25, 0.5, 0.75])
        rows.append({"encoder": e, "subjects": subjects, "sites": len(sites),
                     "dims": len(icc), "icc_median": med, "icc_q1": q1, "icc_q3": q3,
                     "share_ge_0.75": float(np.mean(ok >= 0.75))})  # fmt: skip
    table = pd.DataFrame(rows)
    write_text_atomic(out / "icc.csv", table.to_csv(index=False))
    write_json_atomic(out / "icc_per_dim.json", {"sites": sites,
                      **{e: [float(v) for v in icc] for e, icc in per_dim.items()}})  # fmt: skip
    return table


def corruption_names(text: str) -> list[str]:
    """Comma-separated corruption names (``all``: every one)."""
    names = list(CORRUPTIONS) if text == "all" else [t.strip() for t in text.split(",")]
    unknown = [n for n in names if n not in CORRUPTIONS]
    if unknown:
        raise NeuroFMError(
            None, f"unknown corruption {unknown[0]!r} (known: {', '.join(CORRUPTIONS)})"
        )
    return names
