"""Sequence-name normalisation: map the many names scanners and layouts use to neurofm's seven.

Canonical names are those of the FOMO25 contract: t1, t2, flair, dwi_b1000, adc, swi, t2s.
"""

from __future__ import annotations

import re

from neurofm.errors import NeuroFMError

CANONICAL: tuple[str, ...] = ("t1", "t2", "flair", "dwi_b1000", "adc", "swi", "t2s")

_ALIASES: dict[str, str] = {
    "t1": "t1",
    "t1w": "t1",
    "t1weighted": "t1",
    "mprage": "t1",
    "t1mprage": "t1",
    "spgr": "t1",
    "bravo": "t1",
    "t2": "t2",
    "t2w": "t2",
    "t2weighted": "t2",
    "t2tse": "t2",
    "flair": "flair",
    "t2flair": "flair",
    "t2wflair": "flair",
    "flairw": "flair",
    "dwi": "dwi_b1000",
    "dwib1000": "dwi_b1000",
    "b1000": "dwi_b1000",
    "trace": "dwi_b1000",
    "dwitrace": "dwi_b1000",
    "diffusion": "dwi_b1000",
    "adc": "adc",
    "adcmap": "adc",
    "dwiadc": "adc",
    "apparentdiffusioncoefficient": "adc",
    "swi": "swi",
    "swan": "swi",
    "t2s": "t2s",
    "t2star": "t2s",
    "t2starw": "t2s",
    "t2sw": "t2s",
    "gre": "t2s",
    "t2gre": "t2s",
    "hemo": "t2s",
}


def _key(name: str) -> str:
    stem = name.split("/")[-1]
    for ext in (".nii.gz", ".nii", ".dcm", ".zarr", ".b2nd"):
        if stem.lower().endswith(ext):
            stem = stem[: -len(ext)]
            break
    if "_" in stem and stem.lower().startswith("sub-"):
        stem = stem.rsplit("_", 1)[-1]  # BIDS: sub-01_ses-1_T1w -> T1w
    return re.sub(r"[^a-z0-9*]", "", stem.lower()).replace("*", "s")


def normalise_sequence(name: str) -> str:
    """Return the canonical sequence name for ``name`` or raise NeuroFMError if unknown."""
    canonical = _ALIASES.get(_key(name))
    if canonical is None:
        raise NeuroFMError(name, f"unknown sequence name (known: {', '.join(CANONICAL)})")
    return canonical


def try_normalise_sequence(name: str) -> str | None:
    """Like :func:`normalise_sequence` but returns None for names that are not sequences."""
    return _ALIASES.get(_key(name))
