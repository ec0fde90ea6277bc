"""The chunked on-disk cache: exact reads, padded patches, atomic folders, corrupt files."""

from __future__ import annotations

import json
from pathlib import Path

import blosc2
import numpy as np
import pytest

from neurofm.data.cache import (
    PreparedDataset,
    clean_stale,
    commit_case_dir,
    read_meta,
    write_case,
    write_manifest,
)
from neurofm.data.preprocess import PreprocessParams, preprocess
from neurofm.errors import NeuroFMError
from neurofm.io.nifti import Volume


def _case(rng: np.random.Generator, shape=(40, 44, 36), with_mask=True):
    data = np.zeros((3, *shape), np.float32)
    data[:, 4:-4, 4:-4, 4:-4] = rng.gamma(5.0, 20.0, (3, shape[0] - 8, shape[1] - 8, shape[2] - 8))
    mask = np.zeros(shape, np.uint8)
    mask[10:18, 12:20, 9:15] = 1
    vol = Volume(data, np.diag([2.0, 2.0, 2.0, 1.0]), ["t1", "t2", "flair"])
    return preprocess(
        vol, PreprocessParams(spacing=None, margin_mm=2), mask=mask if with_mask else None
    )


@pytest.fixture
def subset(tmp_path: Path, rng) -> tuple[Path, dict]:
    root = tmp_path / "prepared" / "train"
    pres = {}
    cases = []
    for i, cid in enumerate(["a", "b"]):
        pre = _case(rng, with_mask=(i == 0))
        pres[cid] = pre
        cases.append(
            write_case(root / cid, pre, case_id=cid, fingerprint=f"fp{i}", site="s1", age=40.0 + i)
        )
    write_manifest(root, cases, PreprocessParams().to_dict(), "brain_age")
    return root, pres


def test_read_whole_and_patches_match_independent_padding(subset) -> None:
    root, pres = subset
    ds = PreparedDataset(root)
    assert [c.case_id for c in ds.cases] == ["a", "b"] and ds.task == "brain_age"
    case = ds.case("a")
    assert case.age == 40.0 and case.site == "s1" and case.has_mask and not ds.case("b").has_mask
    ref = pres["a"].image
    full = ds.read("a")
    assert full.dtype == np.float32 and full.shape == ref.shape
    np.testing.assert_array_equal(full, ref)  # lossless
    pads = np.asarray(case.pad_values, np.float32)
    size = (24, 24, 24)
    for start in [(0, 0, 0), (-7, 3, 20), (30, -20, -3), (100, 0, 0)]:
        patch = ds.read_patch("a", start, size, channels=["flair", "t1"])
        padded = np.stack([np.pad(full[c], 30, constant_values=pads[c]) for c in (2, 0)])
        sl = tuple(slice(s + 30, s + 30 + k) for s, k in zip(start, size, strict=True))
        expect = (
            padded[(slice(None), *sl)]
            if max(start) < 60
            else np.broadcast_to(pads[[2, 0], None, None, None], (2, *size))
        )
        np.testing.assert_array_equal(patch, expect)
    mask = ds.read_mask("a")
    np.testing.assert_array_equal(mask, pres["a"].mask)
    mp = ds.read_mask_patch("a", (-5, -5, -5), (20, 20, 20))
    np.testing.assert_array_equal(mp, np.pad(mask, 5)[:20, :20, :20])
    with pytest.raises(NeuroFMError, match="no mask"):
        ds.read_mask("b")
    with pytest.raises(NeuroFMError, match=r"lacks sequence\(s\) \['adc'\]"):
        ds.read("a", ["adc"])


def test_chunking_is_per_channel_blocks(subset) -> None:
    root, _ = subset
    arr = blosc2.open(str(root / "a" / "image.b2nd"))
    assert arr.shape[1:] == (34, 38, 30)  # cropped to the head plus one 2 mm voxel
    assert arr.chunks == (1, 32, 32, 30) and arr.blocks == (1, 16, 16, 16)
    assert arr.dtype == np.float32


def test_corrupt_chunk_names_the_file(subset) -> None:
    root, _ = subset
    path = root / "a" / "image.b2nd"
    raw = bytearray(path.read_bytes())
    mid = len(raw) // 2
    raw[mid : mid + 2048] = b"\x13" * 2048
    path.write_bytes(bytes(raw))
    ds = PreparedDataset(root)
    with pytest.raises(NeuroFMError, match=r"image\.b2nd: corrupt or unreadable cache file"):
        ds.read("a")
    path.write_bytes(bytes(raw[: len(raw) // 3]))
    with pytest.raises(NeuroFMError, match=r"a/image\.b2nd: corrupt"):
        PreparedDataset(root).read_patch("a", (0, 0, 0), (8, 8, 8))
    path.unlink()
    with pytest.raises(NeuroFMError, match="missing"):
        PreparedDataset(root).read("a")


def test_manifest_errors_and_rewrites(subset, tmp_path: Path) -> None:
    root, _ = subset
    with pytest.raises(NeuroFMError, match=r"no manifest.json\); prepared subsets below it: train"):
        PreparedDataset(root.parent)
    text = (root / "manifest.json").read_text()
    cases = PreparedDataset(root).cases
    assert write_manifest(root, cases, PreprocessParams().to_dict(), "brain_age") is False
    assert (root / "manifest.json").read_text() == text
    assert json.loads(text)["cases"][0]["fingerprint"] == "fp0"
    (root / "manifest.json").write_text("{broken")
    with pytest.raises(NeuroFMError, match="unreadable manifest"):
        PreparedDataset(root)


def test_commit_replaces_whole_folder_and_stale_cleanup(tmp_path: Path, rng) -> None:
    root = tmp_path / "sub"
    write_case(root / "c.tmp-1", _case(rng), case_id="c", fingerprint="one")
    commit_case_dir(root / "c.tmp-1", root / "c")
    write_case(root / "c.tmp-2", _case(rng, with_mask=False), case_id="c", fingerprint="two")
    commit_case_dir(root / "c.tmp-2", root / "c")
    meta = read_meta(root / "c")
    assert meta is not None and meta.fingerprint == "two"
    assert not (root / "c" / "mask.b2nd").exists()  # nothing of the old version is mixed in
    (root / "d.tmp-99").mkdir()
    (root / "e.old-98").mkdir()
    (root / ".tmp-abc.json").write_text("x")
    removed = clean_stale(root)
    assert sorted(p.name for p in removed) == [".tmp-abc.json", "d.tmp-99", "e.old-98"]
    assert sorted(p.name for p in root.iterdir()) == ["c"]
    (root / "c" / "meta.json").unlink()
    assert read_meta(root / "c") is None
