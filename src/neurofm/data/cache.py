"""The prepared-data cache: chunked blosc2 arrays on disk, one folder per case.

Layout of one subset (``DST/pretrain``, ``DST/<task>/<split>``, ...)::

    <subset>/manifest.json          # every case's metadata + fingerprint, written atomically
    <subset>/<case>/image.b2nd      # (C, X, Y, Z) float32, normalised intensities
    <subset>/<case>/mask.b2nd       # (X, Y, Z) uint8, segmentation tasks only
    <subset>/<case>/meta.json       # the case's manifest entry (the folder is self-describing)

Case ids are folder names: the case folder of a task split, ``<subject>_<session>`` otherwise.

Why blosc2 NDArray: with chunks ``(1, 32, 32, 32)`` per channel and blocks ``(1, 16, 16, 16)``
blosc2 decompresses only the 16^3 blocks a patch touches, so a random 64^3 patch of one channel
costs about 1.3 ms whatever the volume size, and a head volume takes about a third of the disk
of a float32 ``.npy`` (background compresses to nothing; LZ4 at level 1 with byte shuffle keeps
decompression cheap). A warm-page-cache ``.npy`` memmap reads a patch several times faster but
needs 3x the disk and page cache, which at FOMO60K scale means reading from disk, not memory; so
it is an opt-in second copy, as nnU-Net unpacks its compressed cases before training:
:func:`unpack_case` (``neurofm prepare --unpack``) writes ``image.npy``/``mask.npy`` beside the
blosc2 files, and :class:`PreparedDataset` memory-maps them where present. They hold the same
float32 values, so which copy a patch came from never changes a result. A re-prepared case
replaces its whole folder, so a stale ``.npy`` cannot outlive the arrays it was made from.
Images stay float32: float16 would halve the files, but converting a 64^3 patch back to float32
costs about 1.4 ms per channel in numpy, more than the decompression it saves. A truncated
``.npy`` fails to open (named, like a damaged blosc2 file); garbled bytes inside one are not
detected, as in any uncompressed format; the blosc2 files stay the checked original. Both
kinds are memory-mapped: a file truncated in place while a process reads it ends that process
with SIGBUS, as for any memory-mapped reader (``prepare`` never does that: it replaces whole
case folders, and a mapping keeps the old file alive).
(Measured on this project's 2-core CI box; ``neurofm bench loader`` gives the end-to-end effect.)

A damaged file raises :class:`~neurofm.errors.NeuroFMError` naming it; blosc2 detects truncated
and garbled chunks when it decompresses them.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import blosc2
import numpy as np

from neurofm import __version__
from neurofm.atomic import publish_dir, write_text_atomic
from neurofm.data.preprocess import ChannelNorm, Geometry, Preprocessed
from neurofm.errors import NeuroFMError

FORMAT = "neurofm-prepared/1"
CHUNK = 32
BLOCK = 16
_CPARAMS = {
    "codec": blosc2.Codec.LZ4,
    "clevel": 1,
    "filters": [blosc2.Filter.SHUFFLE],
    "nthreads": 1,  # blosc2's compressed bytes depend on its thread count: one cache, one answer
}
_MAX_OPEN = 64
_FG_POINTS = 512


@dataclass(frozen=True)
class PreparedCase:
    """Metadata of one prepared case, as listed in the manifest."""

    case_id: str
    channels: tuple[str, ...]
    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    geometry: Geometry
    norms: tuple[ChannelNorm, ...]
    fingerprint: str
    site: str | None = None
    label: float | None = None
    age: float | None = None
    has_mask: bool = False
    fg_points: tuple[tuple[int, int, int], ...] = ()  # sample of mask voxels, for oversampling
    sources: dict[str, str] = field(default_factory=dict)  # sequence -> source path
    source_hashes: dict[str, str] = field(default_factory=dict)  # path -> "size:mtime_ns:sha256"

    @property
    def pad_values(self) -> tuple[float, ...]:
        return tuple(n.pad_value for n in self.norms)

    def to_dict(self) -> dict[str, Any]:
        return {
            "case": self.case_id,
            "channels": list(self.channels),
            "shape": list(self.shape),
            "spacing": list(self.spacing),
            "site": self.site,
            "label": self.label,
            "age": self.age,
            "has_mask": self.has_mask,
            "fingerprint": self.fingerprint,
            "norms": [vars(n) for n in self.norms],
            "fg_points": [list(p) for p in self.fg_points],
            "sources": dict(self.sources),
            "source_hashes": dict(self.source_hashes),
            "geometry": self.geometry.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PreparedCase:
        return cls(
            case_id=str(d["case"]),
            channels=tuple(d["channels"]),
            shape=(int(d["shape"][0]), int(d["shape"][1]), int(d["shape"][2])),
            spacing=(float(d["spacing"][0]), float(d["spacing"][1]), float(d["spacing"][2])),
            geometry=Geometry.from_dict(d["geometry"]),
            norms=tuple(ChannelNorm(**n) for n in d["norms"]),
            fingerprint=str(d["fingerprint"]),
            site=d.get("site"),
            label=d.get("label"),
            age=d.get("age"),
            has_mask=bool(d.get("has_mask", False)),
            fg_points=tuple((int(p[0]), int(p[1]), int(p[2])) for p in d.get("fg_points", [])),
            sources=dict(d.get("sources", {})),
            source_hashes=dict(d.get("source_hashes", {})),
        )


def _chunking(shape: Sequence[int], lead: int | None) -> tuple[tuple[int, ...], tuple[int, ...]]:
    spatial = tuple(int(s) for s in shape[-3:])
    chunks = tuple(min(CHUNK, s) for s in spatial)
    blocks = tuple(min(BLOCK, c) for c in chunks)
    if lead is None:
        return chunks, blocks
    return (1, *chunks), (1, *blocks)


def write_array(path: Path, array: np.ndarray) -> None:
    """Write a 3D or channel-first 4D array with the cache's chunking."""
    chunks, blocks = _chunking(array.shape, array.shape[0] if array.ndim == 4 else None)
    blosc2.asarray(
        np.ascontiguousarray(array),
        chunks=chunks,
        blocks=blocks,
        urlpath=str(path),
        mode="w",
        cparams=_CPARAMS,
    )


def unpack_case(case_dir: Path) -> bool:
    """Write the case's arrays again as plain ``.npy`` (for memory-mapped reads) unless present.

    Each file is written under a temporary name and renamed, so a killed run leaves either no
    ``.npy`` or a whole one. Returns True if anything was written.
    """
    wrote = False
    for name in ("image", "mask"):
        packed, plain = case_dir / f"{name}.b2nd", case_dir / f"{name}.npy"
        if not packed.is_file() or plain.is_file():
            continue
        for stale in case_dir.glob(f"{name}.npy.tmp-*"):
            stale.unlink(missing_ok=True)
        try:
            array = blosc2.open(str(packed), mode="r")[:]
        except Exception as exc:
            raise _corrupt(packed, exc) from exc
        tmp = case_dir / f"{name}.npy.tmp-{os.getpid()}"
        with open(tmp, "wb") as f:
            np.save(f, np.ascontiguousarray(array))
        os.replace(tmp, plain)
        wrote = True
    return wrote


def foreground_points(mask: np.ndarray, seed: int = 0) -> tuple[tuple[int, int, int], ...]:
    """A deterministic random sample of at most 512 mask voxels (for foreground oversampling)."""
    idx = np.argwhere(mask > 0)
    if len(idx) > _FG_POINTS:
        idx = idx[np.random.default_rng(seed).choice(len(idx), _FG_POINTS, replace=False)]
    return tuple((int(a), int(b), int(c)) for a, b, c in idx)


def write_case(
    case_dir: Path,
    pre: Preprocessed,
    *,
    case_id: str,
    fingerprint: str,
    site: str | None = None,
    label: float | None = None,
    age: float | None = None,
    sources: dict[str, str] | None = None,
    source_hashes: dict[str, str] | None = None,
) -> PreparedCase:
    """Write one case's arrays and ``meta.json`` into ``case_dir`` (normally a temp folder)."""
    case_dir.mkdir(parents=True, exist_ok=True)
    write_array(case_dir / "image.b2nd", pre.image.astype(np.float32))
    if pre.mask is not None:
        write_array(case_dir / "mask.b2nd", pre.mask.astype(np.uint8))
    case = PreparedCase(
        case_id=case_id,
        channels=tuple(pre.channels),
        shape=pre.geometry.shape,
        spacing=pre.geometry.target_spacing,
        geometry=pre.geometry,
        norms=tuple(pre.norms),
        fingerprint=fingerprint,
        site=site,
        label=label,
        age=age,
        has_mask=pre.mask is not None,
        fg_points=foreground_points(pre.mask) if pre.mask is not None else (),
        sources=dict(sources or {}),
        source_hashes=dict(source_hashes or {}),
    )
    write_meta(case_dir, case)
    return case


def write_meta(case_dir: Path, case: PreparedCase) -> None:
    """(Re)write a case's ``meta.json`` atomically."""
    write_text_atomic(case_dir / "meta.json", json.dumps(case.to_dict(), indent=1))


def read_meta(case_dir: Path) -> PreparedCase | None:
    """The case stored in ``case_dir``, or None if the folder is missing or incomplete."""
    meta = case_dir / "meta.json"
    if not meta.is_file() or not (case_dir / "image.b2nd").is_file():
        return None
    try:
        case = PreparedCase.from_dict(json.loads(meta.read_text()))
    except (ValueError, KeyError, TypeError):
        return None
    if case.has_mask and not (case_dir / "mask.b2nd").is_file():
        return None
    return case


def commit_case_dir(tmp_dir: Path, final_dir: Path) -> None:
    """Move a fully written case folder into place; an old version is replaced, never mixed."""
    publish_dir(tmp_dir, final_dir)


def clean_stale(subset_dir: Path) -> list[Path]:
    """Remove leftovers of killed runs (``*.tmp-<pid>``/``*.old-<pid>`` folders, temp files)."""
    removed: list[Path] = []
    if not subset_dir.is_dir():
        return removed
    for p in sorted(subset_dir.iterdir()):
        name = p.name
        if (".tmp-" in name or ".old-" in name) and p.exists():
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def write_manifest(
    subset_dir: Path, cases: Sequence[PreparedCase], params: dict[str, Any], task: str | None
) -> bool:
    """Write ``manifest.json`` atomically; returns False (and leaves the file) if unchanged."""
    doc = {
        "format": FORMAT,
        "neurofm_version": __version__,
        "subset": subset_dir.name,
        "task": task,
        "params": params,
        "cases": [c.to_dict() for c in sorted(cases, key=lambda c: c.case_id)],
    }
    text = json.dumps(doc, indent=1)
    path = subset_dir / "manifest.json"
    if path.is_file() and path.read_text() == text:
        return False
    subset_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, text)
    return True


def find_subsets(root: Path) -> list[Path]:
    """Every prepared subset (folder with a manifest.json) at or below ``root``."""
    return sorted(p.parent for p in Path(root).rglob("manifest.json"))


class PreparedDataset:
    """Read access to one prepared subset; patches read only the chunks they touch.

    File handles are opened lazily and per process (safe in DataLoader workers), at most 64 kept.
    ``unpacked``: memory-map a case's ``.npy`` copy where :func:`unpack_case` wrote one (same
    values, faster patches); False reads the blosc2 arrays only.
    """

    def __init__(self, root: str | Path, *, unpacked: bool = True) -> None:
        self.root = Path(root)
        self.unpacked = unpacked
        path = self.root / "manifest.json"
        if not path.is_file():
            found = [str(p.relative_to(self.root)) for p in find_subsets(self.root)]
            hint = f"; prepared subsets below it: {', '.join(found)}" if found else ""
            raise NeuroFMError(self.root, f"not a prepared dataset (no manifest.json){hint}")
        try:
            doc = json.loads(path.read_text())
            if doc.get("format") != FORMAT:
                raise ValueError(f"format {doc.get('format')!r}, expected {FORMAT!r}")
            self.cases = [PreparedCase.from_dict(c) for c in doc["cases"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise NeuroFMError(path, f"unreadable manifest ({exc})") from exc
        self.task: str | None = doc.get("task")
        self.params: dict[str, Any] = doc.get("params", {})
        self._by_id = {c.case_id: c for c in self.cases}
        self._open: OrderedDict[Path, Any] = OrderedDict()
        self._lock = threading.Lock()  # loader threads share the open handles
        self._pid = os.getpid()

    def __len__(self) -> int:
        return len(self.cases)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_open"] = OrderedDict()
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def case(self, case_id: str) -> PreparedCase:
        if case_id not in self._by_id:
            raise NeuroFMError(self.root, f"no prepared case {case_id!r}")
        return self._by_id[case_id]

    def _array(self, path: Path) -> Any:
        with self._lock:
            return self._array_locked(path)

    def _array_locked(self, path: Path) -> Any:
        if self._pid != os.getpid():  # forked: handles belong to the parent
            self._open.clear()
            self._pid = os.getpid()
        arr = self._open.get(path)
        if arr is None:
            if not path.is_file():
                raise NeuroFMError(path, "prepared file is missing; re-run neurofm prepare")
            try:
                if path.suffix == ".npy":
                    arr = np.load(path, mmap_mode="r", allow_pickle=False)
                else:
                    arr = blosc2.open(str(path), mode="r", mmap_mode="r", dparams={"nthreads": 1})
            except Exception as exc:
                raise _corrupt(path, exc) from exc
            self._open[path] = arr
            if len(self._open) > _MAX_OPEN:
                self._open.popitem(last=False)
        else:
            self._open.move_to_end(path)
        return arr

    def _file(self, case: PreparedCase, name: str) -> Path:
        """``<name>.npy`` when unpacked reads are on and the case has one, else ``<name>.b2nd``."""
        if self.unpacked:
            plain = self.root / case.case_id / f"{name}.npy"
            if plain.is_file():
                return plain
        return self.root / case.case_id / f"{name}.b2nd"

    def _channel_index(self, case: PreparedCase, channels: Sequence[str] | None) -> list[int]:
        if channels is None:
            return list(range(len(case.channels)))
        missing = [c for c in channels if c not in case.channels]
        if missing:
            raise NeuroFMError(
                self.root / case.case_id,
                f"prepared case lacks sequence(s) {missing} (has {list(case.channels)})",
            )
        return [case.channels.index(c) for c in channels]

    def read(self, case_id: str, channels: Sequence[str] | None = None) -> np.ndarray:
        """The whole preprocessed image ``(C, X, Y, Z)`` float32."""
        case = self.case(case_id)
        return self.read_patch(case_id, (0, 0, 0), case.shape, channels)

    def read_patch(
        self,
        case_id: str,
        start: Sequence[int],
        size: Sequence[int],
        channels: Sequence[str] | None = None,
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        """Image patch ``(C, *size)`` at ``start``; outside the volume: the background value.

        ``out``: a float32 array of that shape to write into (a slot of a batch) and return.
        """
        case = self.case(case_id)
        idx = self._channel_index(case, channels)
        shape = (len(idx), *(int(k) for k in size))
        if out is None:
            out = np.empty(shape, dtype=np.float32)
        elif out.shape != shape or out.dtype != np.float32:
            raise ValueError(f"out must be float32 {shape}, got {out.dtype} {out.shape}")
        src, dst = _overlap(case.shape, start, size)
        if src is None or dst is None or _partial(dst, size):
            for i, c in enumerate(idx):
                out[i] = case.pad_values[c]
        if src is not None and dst is not None:
            path = self._file(case, "image")
            arr = self._array(path)
            for i, c in enumerate(idx):  # per channel: blosc2 slices a channel run slower
                out[i][dst] = _read(arr, (c, *src), path)
        return out

    def read_mask(self, case_id: str) -> np.ndarray:
        """The whole preprocessed mask ``(X, Y, Z)`` uint8."""
        return self.read_mask_patch(case_id, (0, 0, 0), self.case(case_id).shape)

    def read_mask_patch(
        self, case_id: str, start: Sequence[int], size: Sequence[int]
    ) -> np.ndarray:
        """Mask patch ``size`` (uint8) at ``start``; zero outside the volume."""
        case = self.case(case_id)
        if not case.has_mask:
            raise NeuroFMError(self.root / case.case_id, "prepared case has no mask")
        out = np.zeros(tuple(size), dtype=np.uint8)
        path = self._file(case, "mask")
        src, dst = _overlap(case.shape, start, size)
        if src is not None and dst is not None:
            out[dst] = _read(self._array(path), src, path)
        return out


def _overlap(
    shape: Sequence[int], start: Sequence[int], size: Sequence[int]
) -> tuple[tuple[slice, ...] | None, tuple[slice, ...] | None]:
    """Slices of the volume and of the patch where a patch at ``start`` overlaps the volume."""
    src, dst = [], []
    for n, s, k in zip(shape, start, size, strict=True):
        a, b = max(0, int(s)), min(int(n), int(s) + int(k))
        if b <= a:
            return None, None
        src.append(slice(a, b))
        dst.append(slice(a - int(s), b - int(s)))
    return tuple(src), tuple(dst)


def _partial(dst: tuple[slice, ...], size: Sequence[int]) -> bool:
    """True if the volume does not cover the whole patch (the rest must be padded)."""
    return any(d.start != 0 or d.stop != int(k) for d, k in zip(dst, size, strict=True))


def _read(arr: Any, key: tuple[Any, ...], path: Path) -> np.ndarray:
    try:
        return np.asarray(arr[key])
    except Exception as exc:
        raise _corrupt(path, exc) from exc


def _corrupt(path: Path, exc: BaseException) -> NeuroFMError:
    return NeuroFMError(
        path,
        f"corrupt or unreadable cache file ({exc.__class__.__name__}: {exc}); "
        "re-run neurofm prepare with --overwrite",
    )
