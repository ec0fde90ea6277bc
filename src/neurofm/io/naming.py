"""How file names and DICOM series descriptions map to neurofm's canonical sequence names.

File names in FOMO60K, plain folders and task folders are *meant* to name a sequence, so they go
through the strict alias table of :mod:`neurofm.sequences`. DICOM SeriesDescription/ProtocolName
are free text written by scanner vendors and technologists ("t2_tirm_tra_dark-fluid",
"Ax T2* GRE", "ep2d_diff_3scan_trace_p2_ADC"), so they get ordered keyword rules instead; no
library covers this (heudiconv/dcm2bids leave the rules to the user), hence the hand-written table.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from neurofm.sequences import try_normalise_sequence

NIFTI_SUFFIXES = (".nii.gz", ".nii")

# Files next to images that are not image sequences: segmentations, masks, labels.
_NON_IMAGE = re.compile(
    r"(^|[_-])(label|labels|mask|brainmask|seg|dseg|segmentation|lesion|roi)$", re.I
)
_REPEAT = re.compile(r"^(.+?)[_-](\d{1,2})$")  # FOMO60K repeats: t1_2.nii.gz is a second t1


def is_nifti(path: Path) -> bool:
    """True for ``.nii`` / ``.nii.gz`` files."""
    return path.name.lower().endswith(NIFTI_SUFFIXES)


def nifti_stem(path: Path) -> str:
    """File name without its NIfTI extension: ``FLAIR.nii.gz`` -> ``FLAIR``."""
    name = path.name
    for ext in NIFTI_SUFFIXES:
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return name


def is_non_image(path: Path) -> bool:
    """True for label/mask/segmentation NIfTI files, which are never input sequences."""
    return bool(_NON_IMAGE.search(nifti_stem(path)))


def sequence_from_filename(path: Path) -> tuple[str, int] | None:
    """Canonical sequence and repeat number (1 for the primary scan) named by a NIfTI file name.

    Tries the whole stem (``dwi_b1000``, ``T2star``), then a FOMO60K repeat suffix (``t1_2`` is
    repeat 2 of t1), then the last ``_``-separated token (``case01_flair``). None if unknown.
    """
    stem = nifti_stem(path)
    canonical = try_normalise_sequence(stem)
    if canonical is not None:
        return canonical, 1
    repeat = _REPEAT.match(stem)
    if repeat:
        canonical = try_normalise_sequence(repeat.group(1))
        if canonical is not None:
            return canonical, int(repeat.group(2))
    if "_" in stem:
        canonical = try_normalise_sequence(stem.rsplit("_", 1)[-1])
        if canonical is not None:
            return canonical, 1
    return None


# Ordered rules for free-text series descriptions: the first match decides. Order matters:
# "T2 FLAIR" is flair not t2, "T1 FLAIR" is t1, "DWI ADC" is adc not dwi, "T2* GRE" is t2s.
_EXCLUDE = re.compile(
    r"\b(loc|localizer|localiser|scout|survey|3 ?plane|aahead|pha|phase|mip|minip"
    r"|mpr ?(cor|sag|tra)|fa|colfa|tensor|eadc|exp|bold|fmri|rest|asl|perfusion|pwi|dsc"
    r"|cbf|cbv|tof|angio|mra|mrv"
    r"|dti|mddw|t1 ?map|t2 ?map|b0 ?map|field ?map(ping)?|calibration|mosaic|spine|spectro\w*)\b"
)
_CONTRAST = re.compile(r"(\+ ?c\b|\bc ?\+|\bgd\b|\bgad\w*|\bpost\b|\bcontrast\b|\bce\b|\bpostgd)")
_RULES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("adc", re.compile(r"\b(adc|dadc|apparent)\b")),
    ("swi", re.compile(r"\b(swi\w*|swan|venobold)\b")),
    (
        "t2s",
        re.compile(
            r"t2 ?\*|\b(t2star\w*|t2s|hemo\w*|medic|merge)\b"
            r"|\bt2\w*\b.*\b(gre|fl2d|ffe|fe)\b|\b(gre|fl2d|ffe)\b.*\bt2"
        ),
    ),
    ("t1", re.compile(r"(?<![a-z0-9])s?t1(?![0-9])|\b(mprage|mpr|spgr|fspgr|bravo|tfl|tfe)\b")),
    ("flair", re.compile(r"flair|dark ?fl|\b(tirm|fluid)\b")),
    ("dwi_b1000", re.compile(r"\b(dwi\w*|diff\w*|trace\w*|b1000|isodwi|dw|isotropic|resolve)\b")),
    ("t2", re.compile(r"(?<![a-z0-9])s?t2(?![0-9])")),
    ("t2s", re.compile(r"\b(gre|fl2d|ffe)\b")),
)


def sequence_from_series(
    description: str, image_type: Sequence[str] = ()
) -> tuple[str | None, str]:
    """Canonical sequence of a DICOM series from its description and ImageType, or None.

    Returns ``(name, "")`` or ``(None, reason)``; localizers, phase images, projections, maps
    and post-contrast series are refused on purpose because no FOMO25 input matches them.
    """
    kinds = {str(t).upper() for t in image_type}
    if kinds & {"P", "PHASE"}:
        return None, "phase image"
    text = " ".join(re.split(r"[^a-z0-9*+]+", description.lower())).strip()
    # Siemens marks derived diffusion maps in ImageType even when the description is vague.
    text = " ".join([text, *sorted(k.lower() for k in kinds & {"ADC", "TRACEW", "FA", "EADC"})])
    if not text:
        return None, "no SeriesDescription or ProtocolName"
    exact = try_normalise_sequence(description)
    if exact is not None:
        return exact, ""
    excluded = _EXCLUDE.search(text)
    if excluded:
        return None, f"not a FOMO25 input ({excluded.group(0)!r} series)"
    if _CONTRAST.search(text):
        return None, "post-contrast series"
    for canonical, pattern in _RULES:
        if pattern.search(text):
            return canonical, ""
    return None, "unknown sequence name"
