"""Run folders: refusing to clobber results, finding case folders, fingerprinting data."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterable
from pathlib import Path

from neurofm.errors import NeuroFMError
from neurofm.io.naming import is_nifti

RESULT_MARKERS = ("config.json", "checkpoints", "metrics.jsonl", "results.csv")


def prepare_run_dir(out: Path, *, overwrite: bool, resume: bool) -> Path:
    """Create ``out`` for a new run; refuse a folder holding a run unless overwrite/resume."""
    out = Path(out)
    if out.exists() and any((out / m).exists() for m in RESULT_MARKERS):
        if resume:
            return out
        if not overwrite:
            raise NeuroFMError(
                out, "run folder already holds results (use --overwrite or --resume)"
            )
        shutil.rmtree(out)
    elif resume and not out.exists():
        raise NeuroFMError(out, "nothing to resume: run folder does not exist")
    out.mkdir(parents=True, exist_ok=True)
    return out


def refuse_existing_outputs(paths: Iterable[Path], overwrite: bool) -> None:
    """Error before doing any work if an output would replace an existing file."""
    if overwrite:
        return
    existing = [p for p in paths if p.exists()]
    if existing:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise NeuroFMError(existing[0], f"output already exists{more}; use --overwrite")


def case_dirs(path: Path) -> list[Path]:
    """A case folder itself, or the case folders of a split (folders holding NIfTI files)."""
    path = Path(path)
    if not path.is_dir():
        raise NeuroFMError(path, "input folder does not exist")
    if any(is_nifti(p) for p in path.iterdir() if p.is_file()):
        return [path]
    cases = sorted(p for p in path.iterdir() if p.is_dir() and any(map(is_nifti, p.iterdir())))
    if not cases:
        raise NeuroFMError(path, "no case folders with NIfTI files found")
    return cases


def data_fingerprint(folders: Iterable[Path]) -> str:
    """sha256 over the prepared subsets' manifests: changes whenever the training data does."""
    h = hashlib.sha256()
    for folder in sorted(Path(f) for f in folders):
        manifest = folder / "manifest.json"
        h.update(str(folder.name).encode())
        if manifest.exists():
            h.update(manifest.read_bytes())
    return h.hexdigest()[:16]
