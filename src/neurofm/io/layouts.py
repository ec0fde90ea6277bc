"""Find the imaging sessions in a folder, whatever real layout it uses, and load them.

Four layouts (see docs/architecture.md): FOMO60K
``[<dataset>/]<subject>/<session>/<sequence>.nii.gz``, BIDS
``sub-*/[ses-*/]anat|dwi/*.nii[.gz]``, a plain folder of NIfTI named by sequence (one session, or
one folder per case) and DICOM trees (grouped by study and series). Every session maps canonical
sequence names to a NIfTI path or a :class:`~neurofm.io.dicom.DicomSeries`. Whatever is left out
(unknown names, repeats, localizers, phase images ...) is listed in ``Session.skipped`` and logged
as one warning per :func:`discover` call, never dropped silently. pybids is not used: it indexes
every BIDS entity into a database, which is slow and far more than the two datatypes read here.
"""

from __future__ import annotations

import logging
import os
import re
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from neurofm.errors import NeuroFMError
from neurofm.io.dicom import DicomSeries, is_dicom_file, read_dicom_series, scan_dicom_files
from neurofm.io.naming import (
    NIFTI_SUFFIXES,
    is_nifti,
    is_non_image,
    nifti_stem,
    sequence_from_filename,
    sequence_from_series,
)
from neurofm.io.nifti import Volume, load_nifti, load_volume
from neurofm.sequences import CANONICAL, normalise_sequence, try_normalise_sequence

log = logging.getLogger(__name__)

SequenceSource = Path | DicomSeries
LAYOUTS: tuple[str, ...] = ("fomo60k", "bids", "plain", "dicom")


@dataclass
class Session:
    """One imaging session: canonical sequence name -> where its image is.

    ``folder`` is the session's folder (for messages); ``skipped`` says what was found there but
    left out, one line each.
    """

    subject: str
    session: str
    sequences: dict[str, SequenceSource]
    layout: str
    folder: Path | None = None
    skipped: list[str] = field(default_factory=list)

    @property
    def uid(self) -> str:
        """Unique, file-name-safe id: ``<subject>_<session>``, or the subject alone."""
        return f"{self.subject}_{self.session}" if self.session else self.subject


@dataclass
class _Folder:
    """One folder of a tree scan: its depth below the root and its files (sorted, not hidden).

    ``regular`` holds the names that are files (symlinks followed), as ``Path.is_file`` says;
    ``names`` also holds broken links and other non-folders, as ``os.walk`` lists them.
    """

    path: Path
    parts: tuple[str, ...]  # relative to the root
    names: list[str]
    regular: set[str]

    @cached_property
    def image_niftis(self) -> list[Path]:
        """The folder's image NIfTI entries (broken links included, as the layout sees them)."""
        return _image_niftis(
            [self.path / n for n in self.names if n.lower().endswith(NIFTI_SUFFIXES)]
        )


def _scan(root: Path) -> list[_Folder]:
    """Every folder under root (root first, then sorted subfolders, depth first), one listing each.

    The order and the skipped entries are those of ``os.walk(root)`` with sorted, non-hidden
    names; scandir's cached file types replace the second listing and per-file ``stat`` that a
    walk followed by ``Path.iterdir`` and ``Path.is_file`` per folder needed (FOMO60K's 60,000
    files made those the dry run's main cost).
    """
    out: list[_Folder] = []

    def visit(folder: Path, parts: tuple[str, ...]) -> None:
        try:
            with os.scandir(folder) as it:
                entries = sorted(
                    (e for e in it if not e.name.startswith(".")), key=lambda e: e.name
                )
        except OSError:
            return  # os.walk skips folders it cannot list
        subdirs, names, regular = [], [], set()
        for e in entries:
            try:
                is_dir = e.is_dir()
            except OSError:
                is_dir = False
            if is_dir:
                if not e.is_symlink():  # os.walk does not follow folder links
                    subdirs.append(e.name)
                continue
            names.append(e.name)
            try:
                if e.is_file():
                    regular.add(e.name)
            except OSError:
                pass
        out.append(_Folder(folder, parts, names, regular))
        for name in subdirs:
            visit(folder / name, (*parts, name))

    visit(root, ())
    return out


def _walk(folders: list[_Folder]) -> Iterator[Path]:
    """All files of a scan in sorted order (hidden files and folders were skipped)."""
    for folder in folders:
        for name in folder.names:
            yield folder.path / name


def _image_niftis(paths: list[Path]) -> list[Path]:
    return [p for p in paths if is_nifti(p) and not is_non_image(p)]


def _folder(root: str | Path) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise NeuroFMError(root, "not a folder")
    return root


def _is_bids(root: Path) -> bool:
    return any(c.is_dir() and c.name.startswith("sub-") for c in root.iterdir())


def _detect(root: Path, folders: list[_Folder]) -> str:
    if _is_bids(root):
        return "bids"
    depths = sorted({len(f.parts) for f in folders if f.image_niftis})
    if depths:
        if len(depths) > 1:
            raise NeuroFMError(
                root, f"NIfTI files at mixed folder depths {depths}; pass an explicit layout"
            )
        if depths[0] > 3:
            raise NeuroFMError(root, f"NIfTI files {depths[0]} folders deep: unknown layout")
        return "plain" if depths[0] <= 1 else "fomo60k"
    if any(is_dicom_file(f.path / n) for f in folders for n in f.names):
        return "dicom"
    raise NeuroFMError(root, "no NIfTI or DICOM images found")


def detect_layout(root: str | Path) -> str:
    """Name the layout of ``root`` (one of :data:`LAYOUTS`) or raise NeuroFMError saying why not.

    BIDS if there are ``sub-*`` folders; else NIfTI files 0-1 folders deep are ``plain`` and 2-3
    deep (``[<dataset>/]<subject>/<session>/``) ``fomo60k``; else any DICOM file means ``dicom``.
    """
    root = _folder(root)
    return _detect(root, _scan(root))


def read_sequence_folder(folder: Path, *, strict: bool = True) -> tuple[dict[str, Path], list[str]]:
    """Map the NIfTI files directly in ``folder`` (named by sequence) to canonical names.

    Label/mask files and non-NIfTI files are ignored. Unknown names raise NeuroFMError naming the
    file, or with ``strict=False`` are skipped with a note; FOMO60K repeats (``t1_2``) are noted and
    the lowest repeat is used. Two files naming the same sequence are an error (ambiguous).
    """
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    return _read_sequences(_image_niftis(files), strict)


def _read_sequences(niftis: list[Path], strict: bool) -> tuple[dict[str, Path], list[str]]:
    """:func:`read_sequence_folder` on one folder's sorted image NIfTI files."""
    found: dict[str, tuple[int, Path]] = {}
    skipped: list[str] = []
    for path in niftis:
        named = sequence_from_filename(path)
        if named is None:
            if strict:
                raise NeuroFMError(
                    path,
                    f"unknown sequence name {nifti_stem(path)!r} "
                    f"(known: {', '.join(CANONICAL)}; use strict=False to skip such files)",
                )
            skipped.append(f"{path}: unknown sequence name")
            continue
        name, repeat = named
        if name in found:
            other_repeat, other = found[name]
            if other_repeat == repeat:
                raise NeuroFMError(path, f"{other.name} is also sequence {name}; keep only one")
            if repeat > other_repeat:
                skipped.append(f"{path}: repeat {repeat} of {name} (using {other.name})")
                continue
            skipped.append(f"{other}: repeat {other_repeat} of {name} (using {path.name})")
        found[name] = (repeat, path)
    return {name: path for name, (_, path) in sorted(found.items())}, skipped


def _discover_folders(
    root: Path, folders: list[_Folder], layout: str, strict: bool
) -> tuple[list[Session], list[str]]:
    """FOMO60K and plain layouts: session folders at one fixed depth below root."""
    found = [(f, niftis) for f in folders if (niftis := f.image_niftis)]
    depths = {len(f.parts) for f, _ in found}
    allowed = {"plain": {0, 1}, "fomo60k": {2, 3}}[layout]
    if not found or len(depths) != 1 or not depths <= allowed:
        raise NeuroFMError(
            root,
            f"not a {layout} layout: NIfTI files {sorted(depths)} folders deep, "
            f"expected one of {sorted(allowed)}",
        )
    sessions: list[Session] = []
    for f, niftis in sorted(found, key=lambda item: item[0].path):
        parts, folder = f.parts, f.path
        sequences, skipped = _read_sequences([p for p in niftis if p.name in f.regular], strict)
        if layout == "fomo60k":  # a dataset level above subjects becomes part of the subject id
            subject, session = "_".join(parts[:-1]), parts[-1]
        else:
            subject, session = (parts[0] if parts else root.name), ""
        sessions.append(Session(subject, session, dict(sequences), layout, folder, skipped))
    return sessions, []


_BIDS_DWI_ENTITIES = ("acq", "desc", "rec")


def _bids_sequence(path: Path, datatype: str) -> tuple[str | None, str]:
    """Canonical name of a BIDS file from its suffix (and, under dwi/, acq/desc/rec entities)."""
    parts = nifti_stem(path).split("_")
    entities = dict(p.split("-", 1) for p in parts[:-1] if "-" in p)
    suffix = parts[-1]
    if "ce" in entities:
        return None, f"contrast-enhanced (ce-{entities['ce']})"
    if entities.get("part", "mag").lower() not in ("mag", "magnitude"):
        return None, f"part-{entities['part']} image"
    if datatype == "dwi":
        if suffix.lower() == "sbref":
            return None, "single-band reference"
        for key in _BIDS_DWI_ENTITIES:
            named = try_normalise_sequence(entities.get(key, ""))
            if named in ("dwi_b1000", "adc"):
                return named, ""
    named = try_normalise_sequence(suffix)
    if named is None:
        return None, f"BIDS suffix {suffix!r} is not a neurofm sequence"
    return named, ""


def _discover_bids(root: Path) -> tuple[list[Session], list[str]]:
    sessions: list[Session] = []
    for subject_dir in sorted(
        d for d in root.iterdir() if d.is_dir() and d.name.startswith("sub-")
    ):
        session_dirs = sorted(d for d in subject_dir.iterdir() if d.name.startswith("ses-"))
        if any((subject_dir / dt).is_dir() for dt in ("anat", "dwi")):
            session_dirs.insert(0, subject_dir)
        for ses_dir in session_dirs:
            found: dict[str, list[Path]] = defaultdict(list)
            skipped: list[str] = []
            for datatype in ("anat", "dwi"):
                folder = ses_dir / datatype
                if not folder.is_dir():
                    continue
                for path in _image_niftis(sorted(folder.iterdir())):
                    name, why = _bids_sequence(path, datatype)
                    if name is None:
                        skipped.append(f"{path}: {why}")
                    else:
                        found[name].append(path)
            sequences: dict[str, SequenceSource] = {}
            for name, paths in sorted(found.items()):
                sequences[name] = paths[0]  # sorted: run-1 before run-2, no acq before acq-*
                skipped += [f"{p}: another {name} (using {paths[0].name})" for p in paths[1:]]
            session = ses_dir.name if ses_dir != subject_dir else ""
            sessions.append(Session(subject_dir.name, session, sequences, "bids", ses_dir, skipped))
    return sessions, []


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]+", "-", text).strip("-.")


def _pick(name: str, candidates: list[DicomSeries]) -> DicomSeries:
    """Several series of one sequence in a study: take b closest to 1000 for DWI, else the last."""
    if name == "dwi_b1000":
        return min(
            candidates, key=lambda s: (abs((s.b_value or 1000.0) - 1000.0), -s.series_number)
        )
    return max(candidates, key=lambda s: (s.series_number, s.series_uid))


def _discover_dicom(root: Path, files: list[Path]) -> tuple[list[Session], list[str]]:
    series, notes = scan_dicom_files(p for p in files if is_dicom_file(p))
    if not series:
        raise NeuroFMError(root, "no DICOM image series found")
    studies: dict[str, list[DicomSeries]] = defaultdict(list)
    for s in series:
        studies[s.study_uid].append(s)
    sessions: list[Session] = []
    for study in studies.values():
        files = [f for s in study for f in s.files]
        folder = Path(os.path.commonpath(files))
        folder = folder if folder.is_dir() else folder.parent
        first_level = files[0].relative_to(root).parts
        subject = _safe(study[0].patient_id) or (
            first_level[0] if len(first_level) > 1 else root.name
        )
        skipped: list[str] = []
        found: dict[str, list[DicomSeries]] = defaultdict(list)
        for s in study:
            name, why = sequence_from_series(s.description, s.image_type)
            if name == "dwi_b1000" and s.b_value is not None and s.b_value < 50:
                name, why = None, "b=0 images of a diffusion series"
            if name is None:
                skipped.append(f"{s.files[0].parent}: {s.label}: {why}")
            else:
                found[name].append(s)
        sequences: dict[str, SequenceSource] = {}
        for name, candidates in sorted(found.items()):
            chosen = _pick(name, candidates)
            sequences[name] = chosen
            skipped += [
                f"{c.label}: another {name} (using {chosen.label})"
                for c in candidates
                if c is not chosen
            ]
        sessions.append(
            Session(
                subject, _safe(study[0].study_date) or "study", sequences, "dicom", folder, skipped
            )
        )
    # Two studies of one patient on one day: number them in (date, UID) order.
    seen: dict[str, int] = defaultdict(int)
    for ses in sorted(sessions, key=lambda x: (x.subject, x.session, str(x.folder))):
        seen[ses.uid] += 1
        if seen[ses.uid] > 1:
            ses.session = f"{ses.session}-{seen[ses.uid]}"
    return sessions, notes


def discover(root: str | Path, layout: str | None = None, *, strict: bool = True) -> list[Session]:
    """Find every session under ``root``, sorted by (subject, session).

    ``layout`` forces one of :data:`LAYOUTS` instead of auto-detection. ``strict`` (FOMO60K and
    plain layouts) makes an unknown sequence file name an error; ``strict=False`` skips it with a
    note. Sessions in which no usable sequence is left are dropped, and that is noted too. All
    skips are logged as one warning and kept in each ``Session.skipped``.
    """
    root = _folder(root)
    bids = layout == "bids" or (layout is None and _is_bids(root))
    folders = [] if bids else _scan(root)
    if layout is None:
        layout = _detect(root, folders)
    elif layout not in LAYOUTS:
        raise NeuroFMError(root, f"unknown layout {layout!r} (known: {', '.join(LAYOUTS)})")
    if layout == "bids":
        sessions, notes = _discover_bids(root)
    elif layout == "dicom":
        sessions, notes = _discover_dicom(root, list(_walk(folders)))
    else:
        sessions, notes = _discover_folders(root, folders, layout, strict)
    sessions.sort(key=lambda s: (s.subject, s.session))
    empty = [s for s in sessions if not s.sequences]
    notes = [line for s in sessions for line in s.skipped] + notes
    notes += [f"{s.folder}: session {s.uid} has no usable sequence, left out" for s in empty]
    if notes:
        shown = "\n  ".join(notes[:10])
        more = f"\n  ... and {len(notes) - 10} more" if len(notes) > 10 else ""
        log.warning("%s: %d item(s) skipped:\n  %s%s", root, len(notes), shown, more)
    kept = [s for s in sessions if s.sequences]
    if not kept:
        raise NeuroFMError(
            root, f"no session with a usable sequence ({len(notes)} item(s) skipped)"
        )
    return kept


def load_source(source: SequenceSource) -> tuple[np.ndarray, np.ndarray]:
    """One sequence as float32 ``(X, Y, Z)`` RAS+ plus affine, from NIfTI or a DICOM series."""
    if isinstance(source, DicomSeries):
        return read_dicom_series(source.files)
    return load_nifti(source)


def load_session(session: Session, sequences: list[str] | None = None) -> Volume:
    """Load some (default: all) sequences of a session as one channel-first Volume.

    Names are normalised (``"T1w"`` works). All sequences must share shape and affine, as in
    :func:`neurofm.io.nifti.load_volume`; raw clinical series usually do not, so load them one at a
    time (``sequences=[name]``) and resample before stacking.
    """
    where = session.folder or session.uid
    names = (
        list(session.sequences) if sequences is None else [normalise_sequence(s) for s in sequences]
    )
    missing = [n for n in names if n not in session.sequences]
    if missing:
        raise NeuroFMError(
            where,
            f"session {session.uid} has no {', '.join(missing)} "
            f"(has: {', '.join(session.sequences) or 'nothing'})",
        )
    sources = {n: session.sequences[n] for n in names}
    if not any(isinstance(s, DicomSeries) for s in sources.values()):
        return load_volume({n: s for n, s in sources.items() if isinstance(s, Path)})
    arrays: list[np.ndarray] = []
    ref_affine, ref = np.eye(4), ""
    for i, (name, source) in enumerate(sources.items()):
        data, affine = load_source(source)
        label = source.label if isinstance(source, DicomSeries) else source.name
        if i == 0:
            ref_affine, ref = affine, label
        elif data.shape != arrays[0].shape:
            raise NeuroFMError(
                where, f"{name} {label}: shape {data.shape} differs from {ref} {arrays[0].shape}"
            )
        elif not np.allclose(affine, ref_affine, atol=1e-3):
            raise NeuroFMError(where, f"{name} {label}: affine differs from {ref}")
        arrays.append(data)
    return Volume(np.stack(arrays), ref_affine, names)
