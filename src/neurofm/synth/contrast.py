"""Per-sequence contrast tables: image intensity as a mix of tissue partial volumes.

A voxel's signal is sum_k pv_k * mu_k over GM, WM, CSF, skull, scalp, tumour and calcification.
Infarct and oedema are fractions of the tissue, so they scale the GM/WM terms by a factor.
Diffusion is mixed per compartment: DWI b1000 = sum_k pv_k S0_k exp(-b ADC_k) with b = 1000
s/mm² and ADC in 10⁻³ mm²/s, which makes an infarct (ADC ×0.4–0.6, S0 up by T2 shine-through)
bright on DWI and dark on ADC with no separate rule. ADC maps are written in 10⁻⁶ mm²/s like
scanners do (GM ≈ 800, WM ≈ 700, CSF ≈ 3000).

Values are relative signal levels from typical clinical 1.5/3 T appearances (WM brighter than GM
on T1, CSF bright on T2 and T2*, nulled on FLAIR, meningioma near GM on T1/T2/FLAIR and mildly
bright on DWI, calcium dark on SWI/T2*). ``sample_contrast`` perturbs them per site/session: a
grey/white contrast factor and log-normal jitter per entry (SynthSeg-style when the jitter is
large, for pretraining).
"""

from __future__ import annotations

import numpy as np

from neurofm.synth.anatomy import TissueMaps
from neurofm.synth.lesions import Infarct

TISSUES = ("gm", "wm", "csf", "skull", "scalp", "tumour", "calc")
MAGNITUDE = ("t1", "t2", "flair", "swi", "t2s")
SEQUENCES = ("t1", "t2", "flair", "dwi_b1000", "adc", "swi", "t2s")

# tissue order as TISSUES; "s0" is the b=0 signal of the DWI acquisition, "adc" in 1e-3 mm²/s
BASE: dict[str, tuple[float, ...]] = {
    "t1": (0.62, 1.00, 0.18, 0.08, 1.10, 0.58, 0.35),
    "t2": (0.55, 0.40, 1.00, 0.05, 0.55, 0.58, 0.15),
    "flair": (0.80, 0.62, 0.10, 0.05, 0.75, 0.90, 0.30),
    "swi": (0.60, 0.72, 0.85, 0.05, 0.50, 0.60, 0.05),
    "t2s": (0.68, 0.55, 1.00, 0.05, 0.45, 0.62, 0.08),
    "s0": (0.85, 0.70, 1.00, 0.05, 0.20, 1.00, 0.20),
    "adc": (0.80, 0.70, 3.00, 0.30, 0.30, 0.80, 0.50),
}
# healthy -> oedematous white matter (vasogenic: long T2, high ADC)
OEDEMA = {"t1": 0.8, "t2": 1.6, "flair": 1.6, "swi": 1.05, "t2s": 1.3, "s0": 1.4, "adc": 1.6}

ContrastTable = dict[str, dict[str, float]]


def sample_contrast(rng: np.random.Generator, gw_contrast: float, jitter: float) -> ContrastTable:
    """Perturbed tables: entries ×exp(N(0, j)), then GM set from WM by the grey/white ratio.

    The GM/WM signal ratio is the base table's with its distance from 1 scaled by
    ``gw_contrast`` (0.85–1.15 moves it by at most ±9 % for T1, less for the others), so a
    vendor's grey/white contrast stays within the ±15 % of real scanners whatever the jitter.
    Jittering GM and WM independently instead moved the ratio by up to +37 % at target sites,
    and that alone biased brain age at a thick-slice site by 11 years. ADC is quantitative, so
    it gets a third of the jitter and keeps its jittered grey/white values.
    """
    table: ContrastTable = {}
    for name, values in BASE.items():
        j = jitter / 3 if name == "adc" else jitter
        v = dict(
            zip(TISSUES, np.asarray(values) * np.exp(rng.normal(0.0, j, len(values))), strict=True)
        )
        if name != "adc":
            base = dict(zip(TISSUES, values, strict=True))
            v["gm"] = v["wm"] * (1.0 + (base["gm"] / base["wm"] - 1.0) * gw_contrast)
        table[name] = {k: float(max(x, 0.01)) for k, x in v.items()}
    return table


def jitter_table(table: ContrastTable, rng: np.random.Generator, jitter: float) -> ContrastTable:
    """Every entry ×exp(N(0, jitter)) (a third of it for the quantitative ADC)."""
    out: ContrastTable = {}
    for name, values in table.items():
        j = jitter / 3 if name == "adc" else jitter
        noise = np.exp(rng.normal(0.0, j, len(values)))
        out[name] = {k: float(v * n) for (k, v), n in zip(values.items(), noise, strict=True)}
    return out


def infarct_factors(infarct: Infarct | None) -> dict[str, float]:
    """Healthy -> infarcted tissue signal factors per table (1 where there is no infarct)."""
    if infarct is None:
        return dict.fromkeys(BASE, 1.0)
    t2 = infarct.t2_factor
    return {
        "t1": 0.85,
        "t2": t2,
        "flair": infarct.flair_factor,
        "swi": 0.95,
        "t2s": 1.0 + 0.6 * (t2 - 1.0),
        "s0": 0.95 * t2,
        "adc": infarct.adc_factor,
    }


def _mix(
    maps: TissueMaps,
    values: dict[str, float],
    inf: tuple[float, float],
    oed: tuple[float, float],
) -> np.ndarray:
    """sum_k pv_k * value_k with GM/WM scaled by (infarct, oedema) factors (per tissue)."""
    gm = (
        maps.gm
        * values["gm"]
        * (1 + maps.infarct * (inf[0] - 1))
        * (1 + 0.5 * maps.oedema * (oed[0] - 1))
    )
    wm = (
        maps.wm
        * values["wm"]
        * (1 + maps.infarct * (inf[1] - 1))
        * (1 + maps.oedema * (oed[1] - 1))
    )
    rest = (
        maps.csf * values["csf"]
        + maps.skull * values["skull"]
        + maps.scalp * values["scalp"]
        + (maps.tumour - maps.calc) * values["tumour"]
        + maps.calc * values["calc"]
    )
    return np.asarray(gm + wm + rest, dtype=np.float32)


def render(
    maps: TissueMaps, table: ContrastTable, sequence: str, infarct: Infarct | None
) -> np.ndarray:
    """Noise-free image of one sequence (relative units; ADC in 1e-3 mm²/s)."""
    f = infarct_factors(infarct)
    if sequence == "dwi_b1000":
        s0, adc = table["s0"], table["adc"]
        values = {k: s0[k] * np.exp(-adc[k]) for k in TISSUES}

        def dwi_factor(factors: dict[str, float], k: str) -> float:
            return float(factors["s0"] * np.exp(-adc[k] * (factors["adc"] - 1.0)))

        inf = (dwi_factor(f, "gm"), dwi_factor(f, "wm"))
        oed = (dwi_factor(OEDEMA, "gm"), dwi_factor(OEDEMA, "wm"))
        return _mix(maps, values, inf, oed)
    key = sequence
    return _mix(maps, table[key], (f[key], f[key]), (OEDEMA[key], OEDEMA[key]))


def reference_level(table: ContrastTable, sequence: str) -> float:
    """Mean GM/WM signal of a sequence, the reference for its SNR."""
    if sequence == "dwi_b1000":
        s0, adc = table["s0"], table["adc"]
        return float((s0["gm"] * np.exp(-adc["gm"]) + s0["wm"] * np.exp(-adc["wm"])) / 2)
    return float((table[sequence]["gm"] + table[sequence]["wm"]) / 2)
