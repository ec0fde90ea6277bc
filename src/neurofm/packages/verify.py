"""Verify a package: every sha256 first (nothing runs before), then the self-test in the sandbox.

The self-test re-runs the package on its shipped sample exactly as ``neurofm package run`` would
and compares the result with the shipped reference within the manifest's tolerances (Dice per
label for masks, absolute difference for numbers). This is what a reviewer runs on someone
else's package before trusting its numbers.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from neurofm.errors import NeuroFMError
from neurofm.packages.archive import open_package
from neurofm.packages.hashing import check_integrity
from neurofm.packages.manifest import Manifest, load_manifest
from neurofm.packages.outputs import compare_outputs
from neurofm.packages.runner import execute, find_cases


@dataclass
class VerifyReport:
    """Outcome of ``verify``: integrity, the self-test comparison and the lines to print."""

    manifest: Manifest
    files_checked: int
    ok: bool
    lines: list[str] = field(default_factory=list)
    isolation: str = ""
    wall_s: float = 0.0
    peak_rss_mb: float = 0.0


def verify_package(package: Path, *, device: str = "cpu", isolation: str = "auto") -> VerifyReport:
    """Check sha256 of every file (raises NeuroFMError if any differs), then run the self-test.

    A self-test that fails to run or differs from the reference gives ``ok=False`` with the
    reason in ``lines``; it does not raise, so callers can print the whole diff.
    """
    with open_package(Path(package)) as pkg_dir:
        manifest = load_manifest(pkg_dir)
        n = check_integrity(pkg_dir, manifest)
        lines = [f"ok: {n} file(s) match their sha256"]
        jobs = find_cases(manifest, pkg_dir / manifest.selftest.sample)
        if len(jobs) != 1:
            raise NeuroFMError(
                pkg_dir / manifest.selftest.sample, "self-test sample must be one case"
            )
        with tempfile.TemporaryDirectory(prefix="neurofm-verify-") as tmp:
            report = execute(pkg_dir, manifest, jobs, Path(tmp), device=device, isolation=isolation)
            result = VerifyReport(
                manifest,
                n,
                ok=False,
                lines=lines,
                isolation=report.isolation,
                wall_s=report.wall_s,
                peak_rss_mb=report.peak_rss_mb,
            )
            if report.error:
                lines.append(f"FAILED: self-test did not produce a valid output: {report.error}")
                return result
            cmp = compare_outputs(
                manifest, report.outputs[0], pkg_dir / manifest.selftest.reference
            )
        lines += cmp.lines
        result.ok = cmp.ok
        return result
