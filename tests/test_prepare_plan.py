"""The faster dry-run planning (one scandir pass, one DST listing) plans exactly what it did.

The expected sessions below were produced by the previous implementation (``os.walk`` followed by
``Path.iterdir`` + ``Path.is_file`` per folder, and a ``meta.json`` lookup per case) on the same
listing, and checked by hand.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from neurofm.data.prepare import plan_run, prepare
from neurofm.data.preprocess import PreprocessParams
from neurofm.errors import NeuroFMError
from neurofm.io.layouts import _scan, _walk, detect_layout, discover

FILES = [
    "DS_A/sub_2/ses_1/t1.nii.gz",
    "DS_A/sub_2/ses_1/t1_2.nii.gz",  # a repeat
    "DS_A/sub_2/ses_1/T2.nii",
    "DS_A/sub_1/ses_2/flair.nii.gz",
    "DS_A/sub_1/ses_2/mask.nii.gz",  # not an image
    "DS_A/sub_1/ses_2/notes.txt",
    "DS_A/sub_1/ses_1/dwi_b1000.nii.gz",
    "DS_A/sub_1/ses_1/adc.nii.gz",
    "DS_A/sub_1/ses_1/.hidden.nii.gz",
    "DS_A/.cache/sub_9/t1.nii.gz",  # hidden folder
    "DS_B/sub_1/ses_1/swi.nii.gz",
    "DS_B/sub_1/ses_1/foo.nii.gz",  # unknown name
    "DS_B/sub_1/ses_3/t2s_3.nii.gz",
    "DS_B/sub_1/ses_3/t2s_10.nii.gz",
    "DS_B/sub_3/ses_1/seg.nii.gz",
    "DS_B/sub_3/ses_1/weird.nii.gz",  # a session with nothing usable
    "DS_A/sub_1/ses_1/t1.json",
]

EXPECTED = [
    ("DS_A_sub_1", "ses_1", {"adc": "DS_A/sub_1/ses_1/adc.nii.gz",
                             "dwi_b1000": "DS_A/sub_1/ses_1/dwi_b1000.nii.gz"}, []),
    ("DS_A_sub_1", "ses_2", {"flair": "DS_A/sub_1/ses_2/flair.nii.gz"}, []),
    ("DS_A_sub_2", "ses_1", {"t1": "DS_A/sub_2/ses_1/t1.nii.gz", "t2": "DS_A/sub_2/ses_1/T2.nii"},
     ["ROOT/DS_A/sub_2/ses_1/t1_2.nii.gz: repeat 2 of t1 (using t1.nii.gz)"]),
    ("DS_B_sub_1", "ses_1", {"swi": "DS_B/sub_1/ses_1/swi.nii.gz",
                             "t2": "DS_B/sub_1/ses_1/t2.nii.gz"},
     ["ROOT/DS_B/sub_1/ses_1/foo.nii.gz: unknown sequence name"]),
    ("DS_B_sub_1", "ses_3", {"t2s": "DS_B/sub_1/ses_3/t2s_3.nii.gz"},
     ["ROOT/DS_B/sub_1/ses_3/t2s_10.nii.gz: repeat 10 of t2s (using t2s_3.nii.gz)"]),
]  # fmt: skip


@pytest.fixture
def listing(tmp_path: Path) -> Path:
    """Empty files plus the awkward entries: file and folder links, a broken link, a folder
    named like an image."""
    root = tmp_path / "tree"
    for rel in FILES:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).touch()
    os.symlink(root / "DS_A/sub_1/ses_1/adc.nii.gz", root / "DS_B/sub_1/ses_1/t2.nii.gz")
    os.symlink(root / "missing.nii.gz", root / "DS_B/sub_1/ses_1/flair.nii.gz")  # broken
    os.symlink(root / "DS_A/sub_2", root / "DS_B/sub_link")  # a folder link is not followed
    (root / "DS_B/sub_1/ses_1/pd.nii.gz").mkdir()
    return root


def test_scan_lists_what_os_walk_lists(listing: Path) -> None:
    reference = []
    for dirpath, dirnames, filenames in os.walk(listing):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        reference += [Path(dirpath) / f for f in sorted(filenames) if not f.startswith(".")]
    assert list(_walk(_scan(listing))) == reference
    assert listing / "DS_B/sub_1/ses_1/flair.nii.gz" in reference  # the broken link is listed


def test_discover_plans_what_it_planned_before(listing: Path) -> None:
    assert detect_layout(listing) == "fomo60k"
    sessions = discover(listing, strict=False)
    got = [
        (
            s.subject,
            s.session,
            {k: str(Path(str(v)).relative_to(listing)) for k, v in s.sequences.items()},
            [line.replace(str(listing), "ROOT") for line in s.skipped],
        )
        for s in sessions
    ]
    assert got == EXPECTED
    assert [s.folder for s in sessions] == [
        (listing / next(iter(e[2].values()))).parent for e in EXPECTED
    ]
    with pytest.raises(NeuroFMError, match=r"foo\.nii\.gz: unknown sequence name 'foo'"):
        discover(listing)


def test_dry_run_counts_new_unchanged_and_touched(
    write_nifti: Callable[..., Path], rng: np.random.Generator, tmp_path: Path
) -> None:
    for i in range(3):
        write_nifti(f"src/DS/sub_{i}/ses_1/t1.nii.gz", rng.random((8, 8, 8), dtype=np.float32))
    src, dst = tmp_path / "src", tmp_path / "dst"
    params = PreprocessParams(spacing=None)
    [row] = plan_run(src, dst, params)
    assert (row.name, row.cases, row.new, row.unchanged, row.recheck) == ("pretrain", 3, 3, 0, 0)
    prepare(src, dst, params=params)
    [row] = plan_run(src, dst, params)
    assert (row.new, row.unchanged, row.recheck) == (0, 3, 0)
    touched = src / "DS/sub_1/ses_1/t1.nii.gz"
    later = time.time_ns() + 10**9
    os.utime(touched, ns=(later, later))
    for f in (dst / "pretrain/DS_sub_2_ses_1").iterdir():
        f.unlink()
    (dst / "pretrain/DS_sub_2_ses_1").rmdir()
    [row] = plan_run(src, dst, params)
    assert (row.cases, row.new, row.unchanged, row.recheck) == (3, 1, 1, 1)
