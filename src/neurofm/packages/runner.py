"""Run a model package on a case, a split, a dataset of splits or a DICOM study.

The protocol between runner and package (also in docs/packages.md): the runner stages each case
as ``<input>/<case>/<sequence>.nii.gz`` holding only the sequences the manifest asks for (labels
never reach the package), then starts ``<entrypoint> --input <input> --output <output>`` in the
sandbox with ``NEUROFM_DEVICE``, ``NEUROFM_TASK`` and ``NEUROFM_PACKAGE_DIR`` set. The package
writes ``<output>/<case>.txt`` (one number) or ``<output>/<case>.nii.gz`` (mask on the input grid).

Nothing reaches the user's output folder until the package has exited cleanly and every case's
output has passed validation; then all outputs are moved in (temp file + link/rename, so an
existing file is replaced only with ``overwrite``), all or nothing. Earlier outputs survive any
failure. Each run appends a line to ``<out>/.neurofm/runs.jsonl`` (isolation used, time, memory,
error) and keeps the package's stdout/stderr under ``<out>/.neurofm/logs/``.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TypedDict, Unpack

import numpy as np

from neurofm.atomic import remove_on_failure
from neurofm.errors import NeuroFMError
from neurofm.io.dicom import DicomSeries, is_dicom_file, read_dicom_series
from neurofm.io.layouts import discover, read_sequence_folder
from neurofm.io.naming import is_nifti
from neurofm.io.nifti import save_nifti
from neurofm.io.splits import LABELS_CSV, list_splits, read_split
from neurofm.packages.archive import open_package
from neurofm.packages.hashing import check_integrity
from neurofm.packages.manifest import PYTHON_TOKENS, Manifest, load_manifest, resolve_inside
from neurofm.packages.outputs import read_mask, read_number, validate_output
from neurofm.packages.sandbox import SandboxResult, SandboxSpec, run_sandboxed
from neurofm.tasks import TaskSpec

log = logging.getLogger(__name__)

RUN_LOG_DIR = ".neurofm"
Source = Path | DicomSeries


@dataclass(frozen=True)
class CaseJob:
    """One case to predict: where its selected sequences are and where its output goes."""

    case_id: str
    sources: dict[str, Source]
    group: str = ""  # output sub-folder: the split's name when running on a dataset

    @property
    def is_dicom(self) -> bool:
        return any(isinstance(s, DicomSeries) for s in self.sources.values())


@dataclass
class RunReport:
    """What happened in one package run; ``error`` is None when every output was collected."""

    package: str
    version: str
    task: str
    n_cases: int
    isolation: str = ""
    wall_s: float = 0.0
    cpu_s: float = 0.0
    peak_rss_mb: float = 0.0
    outputs: list[Path] = field(default_factory=list)
    error: str | None = None
    log_dir: Path | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def select_sequences(manifest: Manifest, available: set[str], where: str) -> list[str]:
    """The sequences the package gets from a case: required ones plus one of each group."""
    spec = TaskSpec(
        manifest.task, "classification", manifest.inputs.required, manifest.inputs.one_of
    )
    return spec.select(available, where=where)


def _job(
    manifest: Manifest, case_id: str, found: dict[str, Source], where: str, group: str
) -> CaseJob:
    chosen = select_sequences(manifest, set(found), where)
    return CaseJob(case_id, {s: found[s] for s in chosen}, group)


def _has_sequence_files(folder: Path) -> bool:
    return any(p.is_file() and is_nifti(p) for p in folder.iterdir())


def _is_split(folder: Path) -> bool:
    if (folder / LABELS_CSV).is_file():
        return True
    return any(d.is_dir() and _has_sequence_files(d) for d in folder.iterdir())


def _split_jobs(manifest: Manifest, split_dir: Path, group: str) -> list[CaseJob]:
    cases = read_split(split_dir, manifest.task, require_targets=False)
    return [_job(manifest, c.case_id, dict(c.sequences), str(c.folder), group) for c in cases]


def find_cases(manifest: Manifest, input_path: Path) -> list[CaseJob]:
    """Cases under ``input_path``: a case folder, a split, a dataset of splits or a DICOM study."""
    path = Path(input_path)
    if not path.is_dir():
        raise NeuroFMError(path, "input must be a case, split or dataset folder, or a DICOM study")
    if _has_sequence_files(path):
        found, _ = read_sequence_folder(path, strict=True)
        return [_job(manifest, path.name, dict(found), str(path), "")]
    if _is_split(path):
        return _split_jobs(manifest, path, "")
    task_dir = path / manifest.task if (path / manifest.task).is_dir() else path
    try:
        splits = list_splits(task_dir)
    except NeuroFMError:
        splits = []
    if splits:
        return [j for s in splits for j in _split_jobs(manifest, task_dir / s, s)]
    if any(is_dicom_file(p) for p in path.rglob("*") if p.is_file()):
        return [
            _job(manifest, ses.uid, dict(ses.sequences), str(ses.folder or path), "")
            for ses in discover(path, layout="dicom")
        ]
    raise NeuroFMError(
        path,
        "no case here: expected <sequence>.nii.gz files, case folders, split folders "
        "(train, test, test_<site>) or DICOM series",
    )


def package_command(pkg_dir: Path, manifest: Manifest) -> list[str]:
    """The entrypoint as an absolute argv: 'python' is neurofm's interpreter, files are resolved."""
    argv: list[str] = []
    for i, tok in enumerate(manifest.runtime.entrypoint):
        if i == 0 and tok in PYTHON_TOKENS:
            argv.append(sys.executable)
        elif os.path.lexists(pkg_dir / tok):
            argv.append(str(resolve_inside(pkg_dir, tok, where=f"runtime.entrypoint[{i}]")))
        elif i == 0:
            raise NeuroFMError(
                pkg_dir / "manifest.yaml", f"runtime.entrypoint[0]: {tok!r} is not in the package"
            )
        else:
            argv.append(tok)
    return argv


def output_path(out_dir: Path, job: CaseJob, manifest: Manifest) -> Path:
    return out_dir / job.group / f"{job.case_id}{manifest.output_suffix}"


def _stage(jobs: list[CaseJob], input_dir: Path) -> tuple[dict[str, Path], list[Path]]:
    """Lay cases out as ``<input>/<case>/<seq>.nii.gz``: links to the user's files (read-only in
    the sandbox) or NIfTI converted from DICOM. Returns each case's first input (its grid) and
    the files the sandbox must see."""
    firsts: dict[str, Path] = {}
    visible: list[Path] = []
    for job in jobs:
        case_dir = input_dir / job.case_id
        case_dir.mkdir(parents=True)
        for seq, src in job.sources.items():
            dest = case_dir / f"{seq}.nii.gz"
            if isinstance(src, DicomSeries):
                array, affine = read_dicom_series(src.files)
                save_nifti(array, affine, dest)
            else:
                real = Path(os.path.realpath(src))
                if not real.name.endswith(".gz"):
                    dest = case_dir / f"{seq}.nii"
                dest.symlink_to(real)
                visible.append(real)
            firsts.setdefault(job.case_id, dest)
    return firsts, visible


def _commit(pending: list[tuple[Path, Path]], overwrite: bool) -> list[Path]:
    """Move validated outputs into place; without ``overwrite`` never replaces an existing file."""
    done: list[Path] = []
    with remove_on_failure(dest for _, dest in pending):  # all outputs or none (full disk, ^C)
        for src, dest in pending:
            dest.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(prefix=".tmp-", dir=dest.parent)
            os.close(fd)
            tmp = Path(tmp_name)
            try:
                shutil.copyfile(src, tmp)
                if overwrite:
                    os.replace(tmp, dest)
                else:
                    try:
                        os.link(tmp, dest)  # fails if dest appeared meanwhile: never clobber
                    except FileExistsError:
                        raise NeuroFMError(dest, "exists; pass --overwrite to replace it") from None
            finally:
                tmp.unlink(missing_ok=True)
            done.append(dest)
    return done


def _save_logs(result: SandboxResult, out_dir: Path, stamp: str, label: str) -> Path:
    logs = out_dir / RUN_LOG_DIR / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    for src, kind in ((result.stdout_path, "stdout"), (result.stderr_path, "stderr")):
        if src.is_file():
            shutil.copyfile(src, logs / f"{stamp}-{label}.{kind}.log")
    return logs


def _append_run_log(out_dir: Path, report: RunReport, extra: dict[str, object]) -> None:
    path = out_dir / RUN_LOG_DIR / "runs.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    row = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(report).items()}
    row["outputs"] = len(report.outputs)
    row.update(extra)
    with path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(row) + "\n")


def _may_use_gpu(device: str) -> bool:
    """Whether the package may touch a GPU (then no RLIMIT_AS: CUDA maps huge virtual ranges)."""
    return device != "cpu" and Path("/dev/nvidiactl").exists()


def _dicom_extras(
    manifest: Manifest, job: CaseJob, produced: Path, work: Path
) -> list[tuple[Path, str]]:
    """For a DICOM study: the SEG (masks) and the JSON summary, as (file, name) to collect."""
    from neurofm.packages.dicom_out import result_json, write_segmentation

    sources = {k: v for k, v in job.sources.items() if isinstance(v, DicomSeries)}
    extras: list[tuple[Path, str]] = []
    if manifest.outputs.kind == "mask":
        mask, affine = read_mask(produced, set(manifest.outputs.labels))
        seg_path = work / f"{job.case_id}.seg.dcm"
        problems = []
        for series in sources.values():  # reference the first series the mask's grid lies on
            try:
                write_segmentation(mask, affine, series, seg_path, manifest)
                break
            except NeuroFMError as exc:
                problems.append(exc.problem)
        else:
            raise NeuroFMError(produced, f"no source series shares the mask's grid: {problems}")
        extras.append((seg_path, f"{job.case_id}.seg.dcm"))
        voxel_ml = abs(float(np.linalg.det(affine[:3, :3]))) / 1000.0
        info = {
            "voxels": int((mask > 0).sum()),
            "volume_ml": round(float((mask > 0).sum()) * voxel_ml, 3),
            "segmentation_file": f"{job.case_id}.seg.dcm",
            "referenced_series_instance_uid": series.series_uid,
        }
        text = result_json(manifest, job.case_id, None, sources, info)
    else:
        text = result_json(manifest, job.case_id, read_number(produced, None), sources)
    js = work / f"{job.case_id}.json"
    js.write_text(text, encoding="utf-8")
    extras.append((js, f"{job.case_id}.json"))
    return extras


def execute(
    pkg_dir: Path,
    manifest: Manifest,
    jobs: list[CaseJob],
    out_dir: Path,
    *,
    overwrite: bool = False,
    device: str = "auto",
    isolation: str = "auto",
    threads: int = 1,
    on_group: Callable[[str, int], None] | None = None,
) -> RunReport:
    """Run the package on ``jobs`` in the sandbox (one process per output group), validate, collect.

    Bad input (an output that exists without ``overwrite``, unreadable inputs) raises
    NeuroFMError before anything runs; a failing package is reported in ``RunReport.error``.
    The integrity check is the caller's job (:func:`run_package` does it first).
    """
    out_dir = Path(out_dir)
    report = RunReport(manifest.id, manifest.version, manifest.task, len(jobs))
    if not jobs:
        raise NeuroFMError(out_dir, "no cases to run")
    dests = [output_path(out_dir, j, manifest) for j in jobs]
    if len(set(dests)) != len(dests):
        raise NeuroFMError(out_dir, "two cases would write the same output (duplicate case ids)")
    if not overwrite:
        clash = [d for d in dests if d.exists()]
        if clash:
            more = f" (and {len(clash) - 1} more)" if len(clash) > 1 else ""
            raise NeuroFMError(clash[0], f"exists; pass --overwrite to replace it{more}")
    gpu = _may_use_gpu(device)
    groups: dict[str, list[CaseJob]] = {}
    for j in jobs:
        groups.setdefault(j.group, []).append(j)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    root = Path(tempfile.mkdtemp(prefix="neurofm-run-"))
    pending: list[tuple[Path, Path]] = []
    try:
        for gi, (group, gjobs) in enumerate(groups.items()):
            if on_group is not None:
                on_group(group, len(gjobs))
            g_root = root / f"g{gi}"
            input_dir, work, logs = g_root / "input", g_root / "work", g_root / "logs"
            output = work / "output"
            output.mkdir(parents=True)
            firsts, visible = _stage(gjobs, input_dir)
            argv = [
                *package_command(pkg_dir, manifest),
                "--input",
                str(input_dir),
                "--output",
                str(output),
            ]
            spec = SandboxSpec(
                argv=argv,
                workdir=work,
                read_only=[pkg_dir, input_dir, *visible],
                timeout_s=manifest.runtime.timeout_s * len(gjobs),
                memory_mb=None if gpu else manifest.runtime.memory_mb,
                env={
                    "NEUROFM_DEVICE": device,
                    "NEUROFM_TASK": manifest.task,
                    "NEUROFM_PACKAGE_DIR": str(Path(os.path.realpath(pkg_dir))),
                },
                threads=threads,
                log_dir=logs,
            )
            result = run_sandboxed(spec, isolation)
            report.isolation = result.isolation
            report.wall_s += result.wall_s
            report.cpu_s += result.cpu_s
            report.peak_rss_mb = max(report.peak_rss_mb, result.peak_rss_mb)
            label = f"{manifest.id}" + (f"-{group}" if group else "")
            report.log_dir = _save_logs(result, out_dir, stamp, label)
            if result.isolation == "none":
                log.warning("package %s ran WITHOUT isolation (no bwrap/unshare)", manifest.id)
            failure = result.failure()
            if failure:
                report.error = f"package {manifest.id} {failure}"
                break
            bad: list[str] = []
            for job in gjobs:
                produced = output / f"{job.case_id}{manifest.output_suffix}"
                try:
                    validate_output(manifest, produced, firsts[job.case_id])
                    extras = _dicom_extras(manifest, job, produced, g_root) if job.is_dicom else []
                except NeuroFMError as exc:
                    bad.append(f"case {job.case_id}: {exc.problem}")
                    continue
                pending.append((produced, output_path(out_dir, job, manifest)))
                pending += [(extra, out_dir / job.group / name) for extra, name in extras]
            if bad:
                more = f" (and {len(bad) - 1} more case(s))" if len(bad) > 1 else ""
                report.error = f"package {manifest.id} output rejected: {bad[0]}{more}"
                break
        if report.error is None:
            report.outputs = _commit(pending, overwrite)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    _append_run_log(out_dir, report, {"device": device, "time": stamp})
    return report


class RunOptions(TypedDict, total=False):
    """:func:`execute`'s keyword options (defaults there), which :func:`run_package` passes on."""

    overwrite: bool
    device: str
    isolation: str
    threads: int
    on_group: Callable[[str, int], None] | None


def run_package(
    package: Path, input_path: Path, out_dir: Path, **options: Unpack[RunOptions]
) -> RunReport:
    """Open a package (folder or archive), check every sha256, then run it on ``input_path``."""
    with open_package(Path(package)) as pkg_dir:
        manifest = load_manifest(pkg_dir)
        check_integrity(pkg_dir, manifest)
        jobs = find_cases(manifest, Path(input_path))
        return execute(pkg_dir, manifest, jobs, Path(out_dir), **options)
