"""Where does the infarct rule's signal get lost on the way to the model? (no training)

The hand rule (99.9th percentile of z(DWI) - z(ADC) inside the head) reads the raw files. The
model reads them resampled to the recipe's spacing, cropped, clipped per channel to the 0.5 /
99.5 percentiles of the head and z-scored, and its stride-2 stem then works on a grid twice as
coarse. This computes the rule's AUROC at each of those steps, on the same cases the study
scores (development seeds of a study folder; pooled target sites = out of domain, and the
source test split = in domain):

- raw: the rule on the input files (what the hand baseline reports);
- 4 mm: on the resampled, cropped grid, no clipping;
- 4 mm clipped: the same after the model's per-channel clipping (the model's actual input);
- 8 mm / 8 mm clipped: both averaged over 2x2x2 blocks (the grid after a stride-2 stem).

Usage: python where_the_rule_is_lost.py STUDY_FOLDER SPACING_MM [SEEDS...] (default seeds 0 1 2)
(the grids are then SPACING_MM and twice it; the recipe's 4 mm gives 4 and 8 mm)
"""

import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from neurofm.baselines.features import infarct_score
from neurofm.data.preprocess import PreprocessParams, head_mask, head_thresholds, preprocess
from neurofm.io.nifti import load_volume
from neurofm.io.splits import read_split

CLIP = (0.5, 99.5)
SPLITS = {"in domain": ("test",), "out of domain": ("test_sitea", "test_siteb")}


def rule(dwi: np.ndarray, adc: np.ndarray, head: np.ndarray, clip: bool) -> float:
    """The hand rule on one grid, optionally after the model's per-channel clipping."""
    if clip:
        dwi = np.clip(dwi, *np.percentile(dwi[head], CLIP))
        adc = np.clip(adc, *np.percentile(adc[head], CLIP))
    d = (dwi - dwi[head].mean()) / dwi[head].std() - (adc - adc[head].mean()) / adc[head].std()
    return float(np.percentile(d[head], 99.9))


def pool2(x: np.ndarray) -> np.ndarray:
    """Mean over 2x2x2 blocks (a trailing odd slice is dropped)."""
    s = [n // 2 * 2 for n in x.shape]
    x = x[: s[0], : s[1], : s[2]]
    return x.reshape(s[0] // 2, 2, s[1] // 2, 2, s[2] // 2, 2).mean(axis=(1, 3, 5))


def scores(case_seqs: dict[str, Path], spacing: float) -> dict[str, float]:
    vol = load_volume({k: case_seqs[k] for k in ("dwi_b1000", "adc")})
    out = {"raw": infarct_score(vol.data[0], vol.data[1])}
    params = PreprocessParams(spacing=(spacing,) * 3, clip_percentiles=(0.0, 100.0))
    prep = preprocess(vol, params)
    # undo the z-score (no clipping was applied): the resampled, cropped intensities
    grid = np.stack([prep.image[c] * n.std + n.mean for c, n in enumerate(prep.norms)])
    head = head_mask(grid, head_thresholds(vol.data, params.head_fraction))
    head &= (grid[0] > 0) & (grid[1] > 0)
    for clip in (False, True):
        tag = " clipped" if clip else ""
        out[f"{spacing:g} mm{tag}"] = rule(grid[0], grid[1], head, clip)
        coarse = [pool2(g) for g in grid]
        out[f"{2 * spacing:g} mm{tag}"] = rule(coarse[0], coarse[1], pool2(head) == 1.0, clip)
    return out


def main() -> None:
    folder, spacing = Path(sys.argv[1]), float(sys.argv[2])
    seeds = [int(s) for s in sys.argv[3:]] or [0, 1, 2]
    table: dict[tuple[str, str], list[float]] = {}
    for seed in seeds:
        data = folder / "seeds" / str(seed) / "data" / "infarct"
        for where, splits in SPLITS.items():
            labels, rows = [], []
            for split in splits:
                for case in read_split(data / split, "infarct"):
                    labels.append(case.label)
                    rows.append(scores(case.sequences, spacing))
            for key in rows[0]:
                auc = roc_auc_score(labels, [r[key] for r in rows])
                table.setdefault((where, key), []).append(auc)
                print(f"seed {seed} {where:13s} {key:14s} AUROC {auc:.3f}", flush=True)
    print("\nmean ± sd over seeds", seeds)
    for (where, key), values in table.items():
        v = np.asarray(values)
        print(f"{where:13s} {key:14s} {v.mean():.3f} ± {v.std(ddof=1) if len(v) > 1 else 0:.3f}")


if __name__ == "__main__":
    main()
