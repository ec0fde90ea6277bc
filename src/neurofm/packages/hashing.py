"""sha256 of every package file, and the integrity check that must pass before anything runs.

A package is trusted only as a whole: each file on disk (except ``manifest.yaml`` itself) must be
listed in ``artifacts`` with its digest, so a file added after the build (say a ``sitecustomize.py``
or a swapped entry script) is refused just like altered weights.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from neurofm.errors import NeuroFMError
from neurofm.packages.manifest import MANIFEST_NAME, Artifact, Manifest, check_paths_inside

_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def package_files(pkg_dir: Path) -> list[str]:
    """Sorted package-relative paths of every file but the manifest; links leaving it are errors.

    Symlinked directories are not descended into (what they point at is inside the package and
    listed under its real path).
    """
    root = Path(pkg_dir).resolve()
    out: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in [*dirnames, *filenames]:
            full = Path(dirpath) / name
            if full.is_symlink():
                target = full.resolve()
                if target != root and root not in target.parents:
                    rel = full.relative_to(root).as_posix()
                    raise NeuroFMError(Path(pkg_dir) / rel, "link pointing outside the package")
        for name in filenames:
            rel = (Path(dirpath) / name).relative_to(root).as_posix()
            if rel != MANIFEST_NAME:
                out.append(rel)
    return sorted(out)


def hash_artifacts(pkg_dir: Path) -> list[Artifact]:
    """An artifact entry (path + sha256) for every file in the package, for the build step."""
    return [
        Artifact(path=rel, sha256=sha256_file(Path(pkg_dir) / rel))
        for rel in package_files(pkg_dir)
    ]


def check_integrity(pkg_dir: Path, manifest: Manifest) -> int:
    """Refuse the package unless every file matches its listed sha256 and nothing is unlisted.

    Returns the number of files checked. All problems are collected into one message so a user
    sees the whole extent of a tampered package, not just the first file.
    """
    check_paths_inside(pkg_dir, manifest)
    listed = {a.path: a.sha256 for a in manifest.artifacts}
    problems: list[str] = []
    for rel in package_files(pkg_dir):
        if rel not in listed:
            problems.append(f"{rel}: not listed in artifacts (no sha256)")
    for rel, want in listed.items():
        path = Path(pkg_dir) / rel
        if not path.is_file():
            problems.append(f"{rel}: listed in artifacts but missing")
            continue
        got = sha256_file(path)
        if got != want:
            problems.append(f"{rel}: sha256 {got[:12]}… does not match the manifest's {want[:12]}…")
    if problems:
        shown = "; ".join(problems[:5]) + (
            f"; and {len(problems) - 5} more" if len(problems) > 5 else ""
        )
        raise NeuroFMError(Path(pkg_dir), f"integrity check failed, refusing to run: {shown}")
    return len(listed)
