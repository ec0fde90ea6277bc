"""`neurofm bench loader`: random-patch throughput of neurofm's loader against MONAI and TorchIO.

The pipelines read the same cases at the same patch size, batch size and worker count:

- **neurofm**: ``neurofm prepare --unpack`` once (native spacing, so voxels match the raw
  files), then :class:`~neurofm.data.patches.PatchDataset` +
  :func:`~neurofm.data.patches.make_loader` with ``backend="threads"`` (``--loader threads`` in
  training): ``workers`` threads copy patches out of the memory-mapped ``.npy`` copies.
- **neurofm_default**: the same cache read the default way (``--loader processes``):
  ``workers`` processes, each patch decompressed from only the blosc2 chunks it touches.
- **MONAI**: the typical dictionary pipeline on the raw NIfTI files: ``LoadImaged`` (all
  sequences stacked as channels, plus the mask when there is one) + ``EnsureChannelFirstd`` +
  ``SpatialPadd`` + ``RandSpatialCropSamplesd`` (``samples_per_volume`` patches per load),
  ``monai.data.DataLoader``; its batches (whole volume loads) are cut into ``batch_size``
  patches, as a training loop would, so any batch size works.
- **MONAI persistent**: the same transforms on ``monai.data.PersistentDataset``, MONAI's on-disk
  cache of everything before the first random transform (load, channel-first, pad); the cache is
  filled before the timing (reported as ``cache_build_s``), so what is timed is reading it back.
- **TorchIO**: ``SubjectsDataset`` + ``UniformSampler`` + ``Queue`` (``samples_per_volume``
  patches per load, the queue's own workers) + ``SubjectsLoader``.

The **copy limit** is measured in the same run: numpy's memory-copy bandwidth (best of a few
``np.copyto`` of a 256 MiB float32 array) divided by the bytes of one image patch (channels x
patch^3 x 4); no loader can deliver patches faster than it can copy them once.

Without ``augment`` no pipeline augments or normalises (neurofm's normalisation happened in
``prepare``, outside the timing). With ``augment`` each uses its own library's flips, affine,
gamma, noise and bias field at similar probabilities. Throughput is patches per second over
``batches`` batches after ``warmup`` batches (worker start-up is reported separately). The
synthetic data default is the ``full`` preset's 1.5 mm grid (about 111 x 137 x 118) restricted to
a few meningioma cases, so that a 64^3 patch is a real sub-volume; ``preset="clinical"`` writes
cases of a clinical brain's size instead (:func:`clinical_data`: 197 x 233 x 189 at 1 mm, four
sequences, int16 gzip NIfTI, the FOMO60K layout).
"""

from __future__ import annotations

import dataclasses
import gc
import math
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import blosc2
import monai
import nibabel as nib
import numpy as np
import torch
import torchio as tio
from monai.data import DataLoader as MonaiLoader
from monai.data import Dataset as MonaiDataset
from monai.data import MetaTensor, PersistentDataset
from monai.transforms import (
    Compose,
    EnsureChannelFirstd,
    LoadImaged,
    RandAdjustContrastd,
    RandAffined,
    RandBiasFieldd,
    RandFlipd,
    RandGaussianNoised,
    RandSpatialCropSamplesd,
    SpatialPadd,
)
from rich.progress import Progress

from neurofm import __version__
from neurofm.atomic import write_json_atomic
from neurofm.data.augment import AugmentConfig
from neurofm.data.cache import PreparedDataset
from neurofm.data.patches import LoaderBackend, PatchDataset, make_loader
from neurofm.data.prepare import CaseJob, Subset, plan, prepare
from neurofm.data.preprocess import PreprocessParams
from neurofm.errors import NeuroFMError


@dataclass(frozen=True)
class LoaderBenchSettings:
    """What is measured; identical for every pipeline."""

    patch: int = 64
    workers: int = 2
    batches: int = 20
    warmup: int = 3
    batch_size: int = 4
    samples_per_volume: int = 4  # MONAI num_samples and TorchIO samples_per_volume
    augment: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        """Refuse settings that time nothing or draw no patch, saying which."""
        for name, value in (
            ("--batch-size", self.batch_size),
            ("--samples-per-volume", self.samples_per_volume),
            ("--batches", self.batches),
            ("--patch", self.patch),
        ):
            if value < 1:
                raise NeuroFMError(name, f"must be at least 1 (got {value})")
        if self.warmup < 0 or self.workers < 0:
            raise NeuroFMError("--workers", "workers and warm-up batches cannot be negative")

    @property
    def batches_drawn(self) -> int:
        """Batches each pipeline must deliver: warm-up, timed, and two spare."""
        return self.warmup + self.batches + 2

    @property
    def volume_loads(self) -> int:
        """Volume loads MONAI and TorchIO need for :attr:`batches_drawn` batches, one spare
        (cases are cycled to reach it, so any number of cases works)."""
        return math.ceil(self.batches_drawn * self.batch_size / self.samples_per_volume) + 1


def synth_data(out: Path, preset: str = "full", cases: int = 4, seed: int = 0) -> Path:
    """A meningioma-train-only synthetic benchmark on ``preset``'s grid (reused if present)."""
    from neurofm.synth.benchmark import build_benchmark, get_preset

    if (out / "benchmark.json").is_file():
        return out
    p = dataclasses.replace(
        get_preset(preset),
        name=f"{preset}-loader-bench",
        train={"meningioma": cases},
        test_source={},
        test_target={},
        pretrain_sessions=0,
    )
    return build_benchmark(out, p, seed)


CLINICAL_SHAPE = (197, 233, 189)
CLINICAL_SEQUENCES = ("t1", "t2", "flair", "dwi_b1000")


def clinical_data(
    out: Path, cases: int = 2, seed: int = 0, shape: tuple[int, int, int] = CLINICAL_SHAPE
) -> Path:
    """``cases`` sessions of a clinical brain's size (reused if present): four sequences of
    ``shape`` (197 x 233 x 189) at 1 mm, int16 gzip NIfTI, in the FOMO60K layout.

    A noisy ellipsoidal head with a smooth bias, so the files compress about as real ones do
    (pure noise would not, a constant would too well).
    """
    rng = np.random.default_rng(seed)
    x, y, z = np.ogrid[tuple(slice(0, n) for n in shape)]
    cx, cy, cz = (n / 2 for n in shape)
    r2 = ((x - cx) / (0.4 * shape[0])) ** 2 + ((y - cy) / (0.43 * shape[1])) ** 2
    r2 = r2 + ((z - cz) / (0.4 * shape[2])) ** 2
    head = (r2 < 1.0).astype(np.float32)
    bias = 1 + 0.2 * np.sin(x / 40.0) * np.cos(y / 50.0) + 0.1 * np.cos(z / 30.0)
    for i in range(cases):
        folder = out / f"sub_{i:03d}" / "ses_1"
        folder.mkdir(parents=True, exist_ok=True)
        for j, seq in enumerate(CLINICAL_SEQUENCES):
            path = folder / f"{seq}.nii.gz"
            if path.is_file():
                continue
            noise = rng.normal(0.0, 30.0, shape).astype(np.float32)
            img = (head * (400.0 + 150.0 * j) * bias + noise * head).clip(0, 32767)
            tmp = path.with_name(f"tmp-{path.name}")
            nib.save(nib.Nifti1Image(img.astype(np.int16), np.eye(4)), str(tmp))
            os.replace(tmp, path)
    return out


def copy_limit(patch_bytes: int, size_mib: int = 256, repeats: int = 5) -> dict[str, float]:
    """numpy's memory-copy bandwidth (best of ``repeats`` ``np.copyto`` of ``size_mib``) and the
    patches per second it allows: the ceiling for any loader that hands out each patch once."""
    src = np.ones(size_mib * 2**20 // 4, dtype=np.float32)
    dst = np.empty_like(src)
    np.copyto(dst, src)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - t0)
    bandwidth = src.nbytes / best
    return {
        "bytes_per_s": bandwidth,
        "patch_bytes": patch_bytes,
        "patches_per_s": bandwidth / patch_bytes,
    }


def _pick_subset(data: Path) -> tuple[Path, Subset, list[str]]:
    """The first task split (else the first subset) of ``data``: its own source folder, its
    cases, and the channels all of them share."""
    subsets = plan(data)
    subset = next((s for s in subsets if s.task is not None), subsets[0])
    common = [c for c in subset.jobs[0].channels if all(c in j.channels for j in subset.jobs)]
    if not common:
        raise NeuroFMError(data, f"the cases of {subset.name or data} share no sequence")
    folder = subset.jobs[0].session.folder
    if subset.task is not None and folder is not None:
        source = folder.parent  # the split folder
    elif subset.name == "pretrain" and (data / "pretrain").is_dir():
        source = data / "pretrain"
    else:
        source = data
    return source, subset, common


def _check_shapes(items: list[dict[str, Any]], patch: int) -> tuple[int, ...]:
    """Every case must hold a whole patch (TorchIO's sampler cannot pad); returns the first
    case's shape. Checked up front from the headers, before any pipeline starts."""
    shapes = {}
    for item in items:
        img = nib.load(item["image"][0])
        assert isinstance(img, nib.Nifti1Image | nib.Nifti2Image)  # prepare read it as NIfTI
        shapes[item["image"][0]] = tuple(int(v) for v in img.shape)
    path, small = min(shapes.items(), key=lambda kv: min(kv[1]))
    if min(small) < patch:
        raise NeuroFMError(
            path,
            f"volume {small} is smaller than the {patch}^3 patch (TorchIO's sampler cannot "
            f"pad); use --patch {min(small)} or less",
        )
    return next(iter(shapes.values()))


def _files(job: CaseJob, channels: list[str]) -> list[str]:
    out = []
    for c in channels:
        src = job.session.sequences[c]
        if not isinstance(src, Path):
            raise NeuroFMError(job.session.folder, "bench loader needs NIfTI sources, not DICOM")
        out.append(str(src))
    return out


def _throughput(
    make: Callable[[], Iterable[Any]], count: Callable[[Any], int], s: LoaderBenchSettings
) -> dict[str, float]:
    """Patches/s over ``s.batches`` batches after ``s.warmup`` batches (start-up timed apart)."""
    t0 = time.perf_counter()
    loader = make()
    it: Iterator[Any] = iter(loader)
    for _ in range(s.warmup):
        next(it)
    t1 = time.perf_counter()
    n = 0
    for _ in range(s.batches):
        n += count(next(it))
    t2 = time.perf_counter()
    del it, loader
    gc.collect()  # shut the workers down before the next pipeline runs
    return {
        "patches_per_s": n / (t2 - t1),
        "patches": n,
        "seconds": t2 - t1,
        "startup_and_warmup_s": t1 - t0,
    }


def _neurofm(
    prepared: Path, channels: list[str], s: LoaderBenchSettings, backend: LoaderBackend
) -> Iterable[Any]:
    """neurofm's loader: threads on the unpacked copies, or processes on the blosc2 arrays."""
    ds = PatchDataset(
        PreparedDataset(prepared, unpacked=backend == "threads"),
        s.patch,
        channels=channels,
        samples_per_epoch=s.batches_drawn * s.batch_size,
        augment=AugmentConfig() if s.augment else None,
        seed=s.seed,
    )
    # no per-batch hang guard: on a loaded machine a slow batch is a result, not a fault
    return make_loader(
        ds, s.batch_size, workers=s.workers, seed=s.seed, timeout=3600.0, backend=backend
    )


def _plain(x: torch.Tensor) -> torch.Tensor:
    return x.as_tensor() if isinstance(x, MetaTensor) else x


def _rebatch(batches: Iterable[dict[str, Any]], size: int) -> Iterator[dict[str, Any]]:
    """Cut MONAI's batches of whole volume loads into batches of ``size`` patches (plain tensors:
    MONAI refuses to slice a MetaTensor batch whose loads' metadata differ)."""
    pending: dict[str, torch.Tensor] = {}
    for batch in batches:
        got: dict[str, torch.Tensor] = {
            k: _plain(batch[k]) for k in ("image", "label") if k in batch
        }
        pending = {k: torch.cat([pending[k], v]) for k, v in got.items()} if pending else got
        while len(pending["image"]) >= size:
            yield {k: v[:size] for k, v in pending.items()}
            pending = {k: v[size:] for k, v in pending.items()}


def _monai_transforms(keys: list[str], s: LoaderBenchSettings) -> Compose:
    roi = (s.patch,) * 3
    transforms: list[Any] = [
        LoadImaged(keys, image_only=True),
        EnsureChannelFirstd(keys),
        SpatialPadd(keys, roi),
        RandSpatialCropSamplesd(keys, roi, num_samples=s.samples_per_volume, random_size=False),
    ]
    if s.augment:
        modes = ("bilinear", "nearest")[: len(keys)]
        transforms += [RandFlipd(keys, prob=0.5, spatial_axis=a) for a in range(3)]
        transforms += [
            RandAffined(keys, prob=0.3, rotate_range=0.26, scale_range=0.15, mode=modes),
            RandAdjustContrastd("image", prob=0.3, gamma=(0.74, 1.35)),
            RandGaussianNoised("image", prob=0.15, std=0.1),
            RandBiasFieldd("image", prob=0.2, coeff_range=(0.0, 0.1)),
        ]
    return Compose(transforms)


def _monai_loader(dataset: MonaiDataset, s: LoaderBenchSettings) -> Iterable[Any]:
    loads = max(1, s.batch_size // s.samples_per_volume)
    loader = MonaiLoader(dataset, batch_size=loads, shuffle=True, num_workers=s.workers)
    return _rebatch(loader, s.batch_size)


def _keys(items: list[dict[str, Any]]) -> list[str]:
    return [k for k in ("image", "label") if k in items[0]]


def _monai(items: list[dict[str, Any]], s: LoaderBenchSettings) -> Iterable[Any]:
    n = s.volume_loads
    return _monai_loader(MonaiDataset((items * n)[:n], _monai_transforms(_keys(items), s)), s)


def _fill_cache(items: list[dict[str, Any]], cache: Path, s: LoaderBenchSettings) -> float:
    """Seconds to fill MONAI's on-disk cache with every case (once, before the timing)."""
    t0 = time.perf_counter()
    ds = PersistentDataset(items, _monai_transforms(_keys(items), s), cache_dir=cache)
    for i in range(len(items)):
        ds[i]
    return time.perf_counter() - t0


def _monai_persistent(
    items: list[dict[str, Any]], cache: Path, s: LoaderBenchSettings
) -> Iterable[Any]:
    n = s.volume_loads
    transforms = _monai_transforms(_keys(items), s)
    return _monai_loader(PersistentDataset((items * n)[:n], transforms, cache_dir=cache), s)


def _torchio(items: list[dict[str, Any]], s: LoaderBenchSettings) -> Iterable[Any]:
    subjects = []
    for item in items:
        images: dict[str, Any] = {"image": tio.ScalarImage(path=item["image"])}
        if "label" in item:
            images["label"] = tio.LabelMap(item["label"])
        subjects.append(tio.Subject(**images))
    transform = None
    if s.augment:
        transform = tio.Compose(
            [
                tio.RandomFlip(axes=(0, 1, 2)),
                tio.RandomAffine(p=0.3, degrees=15, scales=0.15),
                tio.RandomGamma(p=0.3, log_gamma=0.3),
                tio.RandomNoise(p=0.15, std=(0, 0.1)),
                tio.RandomBiasField(p=0.2, coefficients=0.1),
            ]
        )
    n = s.volume_loads
    queue = tio.Queue(
        tio.SubjectsDataset((subjects * n)[:n], transform=transform),
        max_length=max(2 * s.batch_size, 4 * s.samples_per_volume),
        samples_per_volume=s.samples_per_volume,
        sampler=tio.UniformSampler(s.patch),
        num_workers=s.workers,
        shuffle_subjects=True,
        shuffle_patches=True,
    )
    return tio.SubjectsLoader(queue, batch_size=s.batch_size, num_workers=0)


def machine_info() -> dict[str, Any]:
    """Where the numbers were taken (they depend on cores, disk and load)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "usable_cores": cores,
        "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "neurofm": __version__,
        "torch": torch.__version__,
        "monai": monai.__version__,
        "torchio": tio.__version__,
        "blosc2": blosc2.__version__,
        "numpy": np.__version__,
    }


def run_loader_bench(
    settings: LoaderBenchSettings | None = None,
    *,
    data: Path | None = None,
    work: Path | None = None,
    preset: str = "full",
    cases: int = 4,
    out: Path | None = None,
) -> dict[str, Any]:
    """Measure the three pipelines; write the result as JSON to ``out`` (if given) and return it.

    ``data`` is any source ``neurofm prepare`` reads (NIfTI); without it a synthetic set of
    ``cases`` meningioma cases on ``preset``'s grid is built. ``work`` keeps the synthetic data
    and the prepared cache between runs (default: a temporary folder, removed afterwards).
    """
    s = settings or LoaderBenchSettings()
    torch.set_num_threads(1)
    tmp = None
    if work is None:
        tmp = Path(tempfile.mkdtemp(prefix="neurofm-bench-loader-"))
        work = tmp
    try:
        synthetic = data is None
        if data is not None:
            src = data
        elif preset == "clinical":
            src = clinical_data(work / f"clinical-{cases}", cases, s.seed)
        else:
            src = synth_data(work / f"synth-{preset}-{cases}", preset, cases, s.seed)
        source, subset, channels = _pick_subset(src)
        reports = prepare(
            source, work / "prepared", params=PreprocessParams(spacing=None), unpack=True
        )
        prepared = work / "prepared" / reports[0].name
        items = []
        for job in subset.jobs:
            item: dict[str, Any] = {"image": _files(job, channels)}
            if job.mask is not None:
                item["label"] = str(job.mask)
            items.append(item)
        if any("label" in i for i in items) and not all("label" in i for i in items):
            items = [{"image": i["image"]} for i in items]
        raw_shape = _check_shapes(items, s.patch)

        def torchio_count(b: Any) -> int:
            return int(b["image"][tio.DATA].shape[0])

        def dict_count(b: Any) -> int:
            return int(b["image"].shape[0])

        cache = work / f"monai-cache-{os.getpid()}"
        pipelines: list[tuple[str, Callable[[], Iterable[Any]], Callable[[Any], int]]] = [
            ("neurofm", lambda: _neurofm(prepared, channels, s, "threads"), dict_count),
            (
                "neurofm_default",
                lambda: _neurofm(prepared, channels, s, "processes"),
                dict_count,
            ),
            ("monai", lambda: _monai(items, s), dict_count),
            ("monai_persistent", lambda: _monai_persistent(items, cache, s), dict_count),
            ("torchio", lambda: _torchio(items, s), torchio_count),
        ]
        results: dict[str, dict[str, float]] = {}
        try:
            with Progress() as progress:
                task = progress.add_task("bench loader", total=len(pipelines))
                for name, make, count in pipelines:
                    progress.update(task, description=f"bench loader: {name}")
                    built = _fill_cache(items, cache, s) if name == "monai_persistent" else None
                    results[name] = _throughput(make, count, s)
                    if built is not None:
                        results[name]["cache_build_s"] = built
                    progress.advance(task)
        finally:
            shutil.rmtree(cache, ignore_errors=True)
        limit = copy_limit(len(channels) * s.patch**3 * 4)
        ours = results["neurofm"]["patches_per_s"]
        default = results["neurofm_default"]["patches_per_s"]
        others = {k: v["patches_per_s"] for k, v in results.items() if not k.startswith("neurofm")}
        fastest = max(others.values())
        report: dict[str, Any] = {
            "benchmark": "loader",
            "settings": asdict(s),
            "data": {
                "source": "synthetic" if synthetic else str(src),
                "preset": preset if synthetic else None,
                "subset": subset.name,
                "cases": len(subset.jobs),
                "channels": channels,
                "with_mask": "label" in items[0],
                "raw_shape": list(raw_shape),
            },
            "results": results,
            "copy_limit": limit,
            "ratios": {
                "neurofm/monai": ours / others["monai"],
                "neurofm/monai_persistent": ours / others["monai_persistent"],
                "neurofm/torchio": ours / others["torchio"],
                "neurofm/max_others": ours / fastest,
                "neurofm/copy_limit": ours / limit["patches_per_s"],
                "neurofm_default/max_others": default / fastest,
                "neurofm_default/copy_limit": default / limit["patches_per_s"],
                "neurofm/neurofm_default": ours / default,
            },
            "targets": {
                "neurofm/max_others_at_least": 10.0,
                "neurofm/copy_limit_at_least": 0.25,
                "met": {
                    "peers": ours / fastest >= 10.0,
                    "copy_limit": ours / limit["patches_per_s"] >= 0.25,
                },
            },
            "machine": machine_info(),
        }
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            write_json_atomic(out, report)
        return report
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
