"""`neurofm prepare`: turn a source tree into the chunked cache, once, safely.

Sources:

- a benchmark / task-data root (``pretrain/`` and/or ``<task>/<split>/`` with ``labels.csv``;
  see docs/architecture.md), a single ``<task>`` folder or a single ``<task>/<split>`` folder:
  the destination mirrors it (``DST/pretrain``, ``DST/<task>/<split>``), carrying sites,
  labels, ages and masks;
- any layout :func:`neurofm.io.layouts.discover` reads (FOMO60K, BIDS, plain NIfTI, DICOM):
  all sessions go to ``DST/<subset>`` (default ``pretrain``).

Guarantees:

- **Atomic per case**: a case is written into ``<case>.tmp-<pid>`` and moved into place with
  ``os.replace``; a killed run leaves no half case, and leftovers are removed by the next run.
- **Idempotent and resumable**: every case records a fingerprint (sha256 of its source files,
  its site/label/age, the preprocessing parameters, the cache format and the neurofm version);
  a case whose fingerprint is unchanged is not redone, so a re-run after ``kill -9`` continues
  where it stopped.
  File hashes are reused while a file's size and mtime are unchanged, so a no-op run only stats.
- **Faults end in one line** (docs/reliability.md): a full disk stops the run with
  ``DST: disk full``, Ctrl-C/SIGTERM let running cases finish and drop queued ones; finished
  cases stay, so the same command continues after space is freed or the run is restarted.
- **Scales out on Dask** (docs/performance.md): ``workers`` > 1 or a ``scheduler`` address run
  each case as a ``dask.distributed`` task (:mod:`neurofm.data.dask_runner`); a bad case is named
  and the others finish (``fail_fast`` stops at the first), a worker that dies has its case re-run
  by Dask, and the temporary folders of killed workers are removed when the run ends. Without
  Dask (``workers`` 0/1) the first bad case stops the run, as below.
- **Bad input never costs prepared data**: the first bad file stops the run with a one-line
  :class:`~neurofm.errors.NeuroFMError`; finished cases stay, and ``manifest.json`` (written
  atomically) is only replaced after a subset finished without error, so it always describes a
  complete, consistent set.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nibabel as nib
import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from neurofm import __version__
from neurofm.atomic import disk_full_guard
from neurofm.data.cache import (
    FORMAT,
    PreparedCase,
    clean_stale,
    commit_case_dir,
    read_meta,
    unpack_case,
    write_case,
    write_manifest,
    write_meta,
)
from neurofm.data.preprocess import PreprocessParams, preprocess
from neurofm.errors import NeuroFMError
from neurofm.io.dicom import DicomSeries
from neurofm.io.layouts import Session, discover, load_session
from neurofm.io.nifti import load_nifti
from neurofm.io.splits import list_splits, read_split
from neurofm.sequences import CANONICAL
from neurofm.tasks import get_task, known_tasks

if TYPE_CHECKING:  # distributed is imported only when a run uses it
    from neurofm.data.dask_runner import CaseFailure


@dataclass
class CaseJob:
    """One case to prepare: where its sequences are, and what is known about it."""

    case_id: str
    session: Session
    mask: Path | None = None
    site: str | None = None
    label: float | None = None
    age: float | None = None
    task: str | None = None

    @property
    def channels(self) -> list[str]:
        """Stored channel order: a task's inputs in its order first, then canonical order."""
        first = get_task(self.task).select(self.session.sequences) if self.task else []
        rest = sorted(set(self.session.sequences) - set(first), key=CANONICAL.index)
        return first + rest

    def files(self) -> list[Path]:
        """Every source file, in a fixed order (sequences in channel order, then the mask)."""
        out: list[Path] = []
        for name in self.channels:
            src = self.session.sequences[name]
            out.extend(sorted(src.files) if isinstance(src, DicomSeries) else [src])
        return out + ([self.mask] if self.mask is not None else [])


@dataclass
class Subset:
    """Cases that go to one destination folder (``DST/<name>``)."""

    name: str
    task: str | None
    jobs: list[CaseJob]


@dataclass
class SubsetReport:
    name: str
    cases: int = 0
    prepared: int = 0
    reused: int = 0
    orphans: list[str] = field(default_factory=list)


def _is_split_dir(path: Path) -> bool:
    return (path / "labels.csv").is_file() and path.parent.name in known_tasks()


def _task_subsets(task_dir: Path, prefix: str) -> Iterator[Subset]:
    task = task_dir.name
    for split in list_splits(task_dir):
        yield _split_subset(task_dir / split, task, f"{prefix}{split}")


def _split_subset(split_dir: Path, task: str, name: str) -> Subset:
    # training splits must be complete; test splits may lack targets (prediction input)
    require = split_dir.name.split("_", 1)[0] in ("train", "val")
    jobs = [
        CaseJob(
            case_id=c.case_id,
            session=Session(c.case_id, "", dict(c.sequences), "task", c.folder),
            mask=c.mask,
            site=c.site or None,
            label=c.label,
            age=c.age,
            task=task,
        )
        for c in read_split(split_dir, task, require_targets=require)
    ]
    return Subset(name, task, jobs)


def _session_subset(root: Path, name: str, layout: str | None = None) -> Subset:
    jobs = [CaseJob(s.uid, s) for s in discover(root, layout)]
    return Subset(name, None, jobs)


def plan(src: str | Path, subset: str = "pretrain") -> list[Subset]:
    """Find what to prepare under ``src``; bad layouts, names and CSVs fail here, before any work.

    ``subset`` names the destination folder for layouts without task structure.
    """
    src = Path(src)
    if not src.is_dir():
        raise NeuroFMError(src, "source folder does not exist")
    if _is_split_dir(src):
        return [_split_subset(src, src.parent.name, "")]
    if src.name in known_tasks():
        return list(_task_subsets(src, ""))
    task_dirs = sorted(d for d in src.iterdir() if d.is_dir() and d.name in known_tasks())
    if (src / "pretrain").is_dir() or task_dirs:
        subsets = []
        if (src / "pretrain").is_dir():
            subsets.append(_session_subset(src / "pretrain", "pretrain", "fomo60k"))
        for d in task_dirs:
            subsets.extend(_task_subsets(d, f"{d.name}/"))
        return subsets
    return [_session_subset(src, subset)]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_hashes(files: list[Path], known: dict[str, str] | None = None) -> dict[str, str]:
    """``{path: "size:mtime_ns:sha256"}``; a hash in ``known`` is reused if size and mtime match."""
    known = known or {}
    out = {}
    for f in files:
        try:
            st = f.stat()
        except OSError as exc:
            raise NeuroFMError(f, f"cannot read source file ({exc.strerror})") from exc
        stamp = f"{st.st_size}:{st.st_mtime_ns}"
        old = known.get(str(f), "")
        out[str(f)] = old if old.rsplit(":", 1)[0] == stamp else f"{stamp}:{_sha256(f)}"
    return out


def fingerprint(job: CaseJob, hashes: dict[str, str], params: PreprocessParams) -> str:
    """Content fingerprint of a prepared case: sources, targets, parameters, neurofm version."""
    doc = {
        "format": FORMAT,
        "neurofm": __version__,
        "params": params.to_dict(),
        "files": [hashes[str(f)].rsplit(":", 1)[1] for f in job.files()],
        "channels": job.channels,
        "has_mask": job.mask is not None,
        "site": job.site,
        "label": job.label,
        "age": job.age,
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def _describe(source: Path | DicomSeries) -> str:
    return (
        f"{source.files[0].parent} ({source.label})"
        if isinstance(source, DicomSeries)
        else str(source)
    )


def _file_affine(job: CaseJob) -> np.ndarray | None:
    """Affine of the first source file as stored on disk (None for DICOM: RAS is its grid)."""
    first = job.session.sequences[job.channels[0]]
    if isinstance(first, DicomSeries):
        return None
    img = nib.load(str(first))
    assert isinstance(img, nib.Nifti1Image | nib.Nifti2Image)  # load_session read it as NIfTI
    return np.asarray(img.affine, dtype=np.float64)


def prepare_case(
    job: CaseJob, subset_dir: Path, params: PreprocessParams, hashes: dict[str, str]
) -> PreparedCase:
    """Load, validate, preprocess and atomically write one case; returns its metadata."""
    fp = fingerprint(job, hashes, params)
    volume = load_session(job.session, job.channels)
    mask = None
    if job.mask is not None:
        mask, mask_affine = load_nifti(job.mask)
        if mask.shape != volume.spatial_shape:
            raise NeuroFMError(
                job.mask, f"mask shape {mask.shape} differs from image {volume.spatial_shape}"
            )
        if not np.allclose(mask_affine, volume.affine, atol=1e-3):
            raise NeuroFMError(job.mask, "mask affine differs from the image's")
    pre = preprocess(volume, params, mask=mask, file_affine=_file_affine(job))
    final = subset_dir / job.case_id
    tmp = subset_dir / f"{job.case_id}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with disk_full_guard(subset_dir):  # inside: the partial case still fills the disk
            case = write_case(
                tmp,
                pre,
                case_id=job.case_id,
                fingerprint=fp,
                site=job.site,
                label=job.label,
                age=job.age,
                sources={name: _describe(job.session.sequences[name]) for name in job.channels},
                source_hashes=hashes,
            )
            commit_case_dir(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return case


def _prepare_one(job: CaseJob, subset_dir: Path, params: PreprocessParams) -> PreparedCase:
    """Dask task for one case (module level, so workers import it instead of unpickling code)."""
    return prepare_case(job, subset_dir, params, file_hashes(job.files()))


def _up_to_date(job: CaseJob, subset_dir: Path, params: PreprocessParams) -> PreparedCase | None:
    """The existing prepared case if its fingerprint matches the current source, else None."""
    old = read_meta(subset_dir / job.case_id)
    if old is None:
        return None
    hashes = file_hashes(job.files(), old.source_hashes)
    if fingerprint(job, hashes, params) != old.fingerprint:
        return None
    if hashes != old.source_hashes:  # touched but identical: remember the new stamps
        old = replace(old, source_hashes=hashes)
        write_meta(subset_dir / job.case_id, old)
    return old


@dataclass
class PlanRow:
    """What a run would do to one subset: cases new, unchanged, or to re-check (sources touched)."""

    name: str
    cases: int
    new: int
    unchanged: int
    recheck: int


def _stamps_unchanged(job: CaseJob, subset_dir: Path, params: PreprocessParams) -> bool | None:
    """None: not prepared yet; True/False: fingerprint still matches, from stats alone."""
    old = read_meta(subset_dir / job.case_id)
    if old is None:
        return None
    for f in job.files():
        known = old.source_hashes.get(str(f), "")
        st = f.stat() if f.exists() else None
        if st is None or known.rsplit(":", 1)[0] != f"{st.st_size}:{st.st_mtime_ns}":
            return False
    return fingerprint(job, old.source_hashes, params) == old.fingerprint


def plan_run(
    src: str | Path, dst: str | Path, params: PreprocessParams, subset: str = "pretrain"
) -> list[PlanRow]:
    """A dry run: list and stat only (no image is opened, no source is hashed, nothing written)."""
    src, dst = Path(src).resolve(), Path(dst).resolve()
    rows = []
    for sub in plan(src, subset):
        subset_dir = dst / sub.name if sub.name else dst
        # one listing instead of a meta.json lookup per case: most cases of a first run are new
        present = set(os.listdir(subset_dir)) if subset_dir.is_dir() else set()
        states = [
            _stamps_unchanged(job, subset_dir, params) if job.case_id in present else None
            for job in sub.jobs
        ]
        rows.append(
            PlanRow(
                sub.name,
                len(states),
                sum(s is None for s in states),
                sum(s is True for s in states),
                sum(s is False for s in states),
            )
        )
    return rows


def _run_serial(
    todo: list[CaseJob],
    subset_dir: Path,
    params: PreprocessParams,
    progress: Progress,
    task_id: Any,
) -> list[PreparedCase]:
    """Today's in-process path (``workers`` 0 or 1): the first bad case stops the run."""
    done: list[PreparedCase] = []
    for job in todo:
        done.append(_prepare_one(job, subset_dir, params))
        progress.advance(task_id)
    return done


def _run_dask(
    client: Any,
    todo: list[CaseJob],
    subset_dir: Path,
    params: PreprocessParams,
    fail_fast: bool,
    progress: Progress,
    task_id: Any,
) -> tuple[list[PreparedCase], list[CaseFailure]]:
    """Every case as one Dask task; failures are collected (or stop the run with fail_fast)."""
    from neurofm.data.dask_runner import run_cases

    results, failures = run_cases(
        client,
        _prepare_one,
        [(job.case_id, (job, subset_dir, params)) for job in todo],
        fail_fast=fail_fast,
        on_done=lambda _case, _out: progress.advance(task_id),
        label="prepare",
    )
    return [results[j.case_id] for j in todo if j.case_id in results], failures


def prepare(
    src: str | Path,
    dst: str | Path,
    *,
    params: PreprocessParams | None = None,
    workers: int = 1,
    scheduler: str | None = None,
    fail_fast: bool = False,
    overwrite: bool = False,
    subset: str = "pretrain",
    show_progress: bool = True,
    unpack: bool = False,
) -> list[SubsetReport]:
    """Prepare every case under ``src`` into ``dst``; see the module docstring for guarantees.

    ``workers`` 0 or 1 prepares in this process and stops at the first bad case; more workers (a
    private local Dask cluster) or a ``scheduler`` address run every case as a Dask task: a bad
    case is named and the others still finish (``fail_fast`` stops at the first instead), and the
    failures end the run in one NeuroFMError after the rest is done; a subset with a failed case
    keeps its previous manifest. ``overwrite`` redoes every case even if its fingerprint is
    unchanged. Returns one report per destination subset (cases, newly prepared, reused,
    orphans: prepared folders whose source is gone, left in place but not in the manifest).
    ``unpack`` also stores every case of a finished subset as memory-mappable ``.npy``
    (:func:`~neurofm.data.cache.unpack_case`; cases that have one are left as they are).
    """
    src, dst = Path(src).resolve(), Path(dst).resolve()
    if src == dst:
        raise NeuroFMError(dst, "destination must differ from the source")
    params = params or PreprocessParams()
    subsets = plan(src, subset)
    use_dask = scheduler is not None or workers > 1
    reports = []
    failures: list[CaseFailure] = []
    total = 0
    with ExitStack() as stack:
        touched: list[Path] = []
        # runs after the cluster is closed: a worker killed mid-case leaves its temp folder
        stack.callback(lambda: [clean_stale(d) for d in touched])
        client: Any = None
        if scheduler is not None:  # an address that does not answer fails before any writing
            from neurofm.data.dask_runner import dask_client

            client = stack.enter_context(dask_client(workers, scheduler))
        stack.enter_context(disk_full_guard(dst))
        progress = stack.enter_context(
            Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                disable=not show_progress,
            )
        )
        for sub in subsets:
            subset_dir = dst / sub.name if sub.name else dst
            subset_dir.mkdir(parents=True, exist_ok=True)
            clean_stale(subset_dir)
            task_id = progress.add_task(f"prepare {sub.name or dst.name}", total=len(sub.jobs))
            cases: dict[str, PreparedCase] = {}
            todo = []
            for job in sub.jobs:
                current = None if overwrite else _up_to_date(job, subset_dir, params)
                if current is None:
                    todo.append(job)
                else:
                    cases[job.case_id] = current
                    progress.advance(task_id)
            total += len(todo)
            if use_dask and todo:
                if client is None:
                    from neurofm.data.dask_runner import dask_client

                    client = stack.enter_context(dask_client(workers, scheduler))
                touched.append(subset_dir)
                done, failed = _run_dask(
                    client, todo, subset_dir, params, fail_fast, progress, task_id
                )
                failures.extend(failed)
            else:
                done = _run_serial(todo, subset_dir, params, progress, task_id)
            for case in done:
                cases[case.case_id] = case
            if any(j.case_id not in cases for j in sub.jobs):  # a case failed: old manifest
                if fail_fast or any(f.fatal for f in failures):
                    break
                continue
            ordered = [cases[j.case_id] for j in sub.jobs]
            write_manifest(subset_dir, ordered, params.to_dict(), sub.task)
            if unpack:
                unpacking = progress.add_task(f"unpack {sub.name or dst.name}", total=len(ordered))
                for case in ordered:
                    unpack_case(subset_dir / case.case_id)
                    progress.advance(unpacking)
            listed = set(cases)
            orphans = sorted(
                p.name
                for p in subset_dir.iterdir()
                if p.is_dir() and p.name not in listed and (p / "meta.json").is_file()
            )
            reports.append(
                SubsetReport(sub.name, len(ordered), len(todo), len(ordered) - len(todo), orphans)
            )
    fatal = [f for f in failures if f.fatal]
    if fatal:
        raise NeuroFMError(fatal[0].where or dst, fatal[0].problem)
    if failures:
        from neurofm.data.dask_runner import failures_error

        raise failures_error(dst, failures, total)
    return reports
