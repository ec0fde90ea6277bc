"""`neurofm bench loader`: random-patch throughput of neurofm's loader against MONAI and TorchIO.

Three pipelines read the same cases at the same patch size, batch size and worker count:

- **neurofm**: ``neurofm prepare`` once (native spacing, so voxels match the raw files), then
  :class:`~neurofm.data.patches.PatchDataset` + :func:`~neurofm.data.patches.make_loader`; each
  patch reads only the blosc2 chunks it touches.
- **MONAI**: the typical dictionary pipeline on the raw NIfTI files: ``LoadImaged`` (all
  sequences stacked as channels, plus the mask when there is one) + ``EnsureChannelFirstd`` +
  ``SpatialPadd`` + ``RandSpatialCropSamplesd`` (``samples_per_volume`` patches per load),
  ``monai.data.DataLoader``.
- **TorchIO**: ``SubjectsDataset`` + ``UniformSampler`` + ``Queue`` (``samples_per_volume``
  patches per load, the queue's own workers) + ``SubjectsLoader``.

Without ``augment`` no pipeline augments or normalises (neurofm's normalisation happened in
``prepare``, outside the timing). With ``augment`` each uses its own library's flips, affine,
gamma, noise and bias field at similar probabilities. Throughput is patches per second over
``batches`` batches after ``warmup`` batches (worker start-up is reported separately). The
synthetic data default is the ``full`` preset's 1.5 mm grid (about 111 x 137 x 118, a clinical-sized
volume) restricted to a few meningioma cases, so that a 64^3 patch is a real sub-volume.
"""

from __future__ import annotations

import dataclasses
import gc
import json
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
from neurofm.data.augment import AugmentConfig
from neurofm.data.cache import PreparedDataset
from neurofm.data.patches import PatchDataset, make_loader
from neurofm.data.prepare import CaseJob, Subset, plan, prepare
from neurofm.data.preprocess import PreprocessParams
from neurofm.errors import NeuroFMError


@dataclass(frozen=True)
class LoaderBenchSettings:
    """What is measured; identical for the three pipelines."""

    patch: int = 64
    workers: int = 2
    batches: int = 20
    warmup: int = 3
    batch_size: int = 4
    samples_per_volume: int = 4  # MONAI num_samples and TorchIO samples_per_volume
    augment: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        """Refuse settings the three pipelines cannot measure alike, saying what to change."""
        spv, bs = self.samples_per_volume, self.batch_size
        if bs % spv:
            fits = sorted({d for d in range(1, spv + 1) if bs % d == 0})[-1]
            up = math.ceil(bs / spv) * spv
            raise NeuroFMError(
                "--batch-size",
                f"{bs} is not a multiple of --samples-per-volume {spv} (MONAI batches whole "
                f"volume loads of {spv} patches, so its batches would not hold {bs}); use "
                f"--batch-size {up} or --samples-per-volume {fits}",
            )

    @property
    def batches_drawn(self) -> int:
        """Batches each pipeline must deliver: warm-up, timed, and two spare."""
        return self.warmup + self.batches + 2

    @property
    def volume_loads(self) -> int:
        """Volume loads MONAI and TorchIO need for :attr:`batches_drawn` batches (cases are
        cycled to reach it, so any number of cases works)."""
        return self.batches_drawn * self.batch_size // self.samples_per_volume


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


def _neurofm(prepared: Path, channels: list[str], s: LoaderBenchSettings) -> Iterable[Any]:
    ds = PatchDataset(
        PreparedDataset(prepared),
        s.patch,
        channels=channels,
        samples_per_epoch=s.batches_drawn * s.batch_size,
        augment=AugmentConfig() if s.augment else None,
        seed=s.seed,
    )
    return make_loader(ds, s.batch_size, workers=s.workers, seed=s.seed)


def _monai(items: list[dict[str, Any]], s: LoaderBenchSettings) -> Iterable[Any]:
    keys = [k for k in ("image", "label") if k in items[0]]
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
    n = s.volume_loads
    return MonaiLoader(
        MonaiDataset((items * n)[:n], Compose(transforms)),
        batch_size=s.batch_size // s.samples_per_volume,
        shuffle=True,
        num_workers=s.workers,
    )


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
        src = (
            synth_data(work / f"synth-{preset}-{cases}", preset, cases, s.seed)
            if data is None
            else data
        )
        source, subset, channels = _pick_subset(src)
        reports = prepare(source, work / "prepared", params=PreprocessParams(spacing=None))
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

        pipelines: list[tuple[str, Callable[[], Iterable[Any]], Callable[[Any], int]]] = [
            ("neurofm", lambda: _neurofm(prepared, channels, s), dict_count),
            ("monai", lambda: _monai(items, s), dict_count),
            ("torchio", lambda: _torchio(items, s), torchio_count),
        ]
        results: dict[str, dict[str, float]] = {}
        with Progress() as progress:
            task = progress.add_task("bench loader", total=len(pipelines))
            for name, make, count in pipelines:
                progress.update(task, description=f"bench loader: {name}")
                results[name] = _throughput(make, count, s)
                progress.advance(task)
        ours = results["neurofm"]["patches_per_s"]
        others = {k: v["patches_per_s"] for k, v in results.items() if k != "neurofm"}
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
            "ratios": {
                "neurofm/monai": ours / others["monai"],
                "neurofm/torchio": ours / others["torchio"],
                "neurofm/max_others": ours / max(others.values()),
            },
            "machine": machine_info(),
        }
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(report, indent=2) + "\n")
        return report
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
