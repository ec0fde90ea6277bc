"""Presets and the on-disk benchmark: plan the cases, render them (in parallel), write the layout.

Layout (the task-folder layout every neurofm reader accepts)::

    OUT/pretrain/<subject>/<session>/<sequence>.nii.gz        unlabeled, FOMO60K-style
    OUT/<task>/<split>/<case>/<sequence>.nii.gz               split: train | test | test_<site>
    OUT/meningioma/<split>/<case>/label.nii.gz                binary tumour mask
    OUT/<task>/<split>/labels.csv                             case,site[,label | ,age]
    OUT/ground_truth/...                                      infarct masks, per-case details
    OUT/benchmark.json, OUT/README.txt

``train`` and ``test`` come from the source site, ``test_<site>`` from each target site.

Sites: the source is a clean 3D protocol at the preset's voxel size (shape below). The target
sites (``sitea``, ``siteb``, ``sitec``) are drawn per seed by ``sites.target_site`` in the
benchmark's shift mode (``matched``: inside the pretraining sites' ranges; ``novel``: outside
them in two to four named properties); ``sitea`` always has thick slices. Their voxel sizes,
shapes and every other parameter are in ``benchmark.json``.

======  =============================  =================  ==================  ======  ======
preset  source voxel mm -> shape       train inf/men/age  test per target     targets pretr.
======  =============================  =================  ==================  ======  ======
tiny    8 iso -> 21x26x23              4 / 4 / 4          4 / 4 / 4           2       6
demo    3.5 iso -> 48x59x51            20 / 22 / 90       36 / 32 / 50        2       200
full    1.5 iso -> 111x135x117         21 / 23 / 200      320/107/800 over 3  3        3000
======  =============================  =================  ==================  ======  ======

The source site also has a small ``test`` split (tiny 4/4/4, demo 16/12/30, full 40/16/100).

Why these voxel sizes: *tiny* exists for tests and must build in seconds, 8 mm still shows
ventricles, lesions and a brain outline. *demo* must let synth, pretraining, six few-shot
finetunes and evaluation run in 15 minutes on two CPU cores: 3.5 mm puts about 41 x 52 x 44
voxels across the brain while a 1 cm meningioma is still three voxels across. *full* keeps the
FOMO25 case counts at 1.5 mm: the template is an average of 152 brains, blurrier than one scan,
so 1 mm would cost 3.4x the time and disk for little anatomical detail. Counts keep FOMO25's
few-shot ratios (21/23/200 train vs 320/107/800 test); infarct splits are 45 % positive.

Every case has its own random stream, ``SeedSequence(seed, spawn_key=(stream, split, i))``, so
a case is byte-identical whatever the other counts are and whatever process rendered it.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import multiprocessing
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from neurofm import __version__
from neurofm.atomic import publish_dir
from neurofm.errors import NeuroFMError
from neurofm.io.nifti import save_nifti
from neurofm.synth.anatomy import sample_anatomy
from neurofm.synth.lesions import sample_infarct, sample_meningioma
from neurofm.synth.session import SessionSpec, session_contrast, site_grid, synthesize_session
from neurofm.synth.sites import (
    PRETRAIN_RANGES,
    SHIFTS,
    Box,
    Shift,
    SiteParams,
    outside_ranges,
    random_site,
    source_site,
    target_site,
)
from neurofm.synth.templates import TEMPLATE_FILES, Template, load_template
from neurofm.tasks import TASKS

TASK_NAMES = tuple(TASKS)
STREAM = {
    "infarct": 1,
    "meningioma": 2,
    "brain_age": 3,
    "pretrain": 4,
    "pretrain_site": 5,
    "source_site": 6,
    "target_site": 7,
}
PLAN = 0  # spawn-key slot for split-level draws (which infarct cases are positive)
LABEL_COLUMNS = {
    name: ["case", "site", *([spec.target_column] if spec.target_column else [])]
    for name, spec in TASKS.items()
}
PRETRAIN_SEQUENCES = {"t1": 0.7, "t2": 0.6, "flair": 0.6, "dwi_b1000": 0.4, "swi|t2s": 0.3}
TARGET_NAMES = ("sitea", "siteb", "sitec")
MAX_LESION_VOXEL_MM = 12.5


@dataclass(frozen=True)
class SynthPreset:
    """Sizes of one benchmark. ``test_target`` counts are totals, split evenly over targets."""

    name: str
    spacing: float
    template_spacing: float
    n_targets: int  # target sites, drawn per seed (at most len(TARGET_NAMES))
    train: dict[str, int]
    test_source: dict[str, int]
    test_target: dict[str, int]
    pretrain_sessions: int
    pretrain_sites: int
    infarct_positive: float = 0.45
    margin_mm: float = 8.0
    rationale: str = ""

    def sites(self, seed: int, shift: str = "matched") -> tuple[SiteParams, ...]:
        """Source site first, then the target sites, all drawn from ``seed``'s own streams.

        The first target always has thick slices, so every benchmark has the clinically
        commonest shift; the others draw their slice factor like a pretraining site.
        """
        mode = check_shift(shift)
        if not 1 <= self.n_targets <= len(TARGET_NAMES):
            raise NeuroFMError(
                None,
                f"preset {self.name}: 1 to {len(TARGET_NAMES)} target sites, not {self.n_targets}",
            )
        source = source_site(_rng(seed, (STREAM["source_site"],)), self.spacing)
        targets = (
            target_site(
                _rng(seed, (STREAM["target_site"], i)),
                name,
                self.spacing,
                source,
                shift=mode,
                thick=i == 0,
            )
            for i, name in enumerate(TARGET_NAMES[: self.n_targets])
        )
        return (source, *targets)

    def n_cases(self) -> int:
        return (
            sum(self.train.values())
            + sum(self.test_source.values())
            + sum(self.test_target.values())
            + self.pretrain_sessions
        )


PRESETS: dict[str, SynthPreset] = {
    "tiny": SynthPreset(
        name="tiny",
        spacing=8.0,
        template_spacing=4.0,
        n_targets=2,
        train={"infarct": 4, "meningioma": 4, "brain_age": 4},
        test_source={"infarct": 4, "meningioma": 4, "brain_age": 4},
        test_target={"infarct": 8, "meningioma": 8, "brain_age": 8},
        pretrain_sessions=6,
        pretrain_sites=3,
        rationale="8 mm: builds in seconds for tests; ventricles and lesions still visible",
    ),
    "demo": SynthPreset(
        name="demo",
        spacing=3.5,
        template_spacing=1.75,
        n_targets=2,
        train={"infarct": 20, "meningioma": 22, "brain_age": 90},
        test_source={"infarct": 16, "meningioma": 12, "brain_age": 30},
        test_target={"infarct": 72, "meningioma": 64, "brain_age": 100},
        pretrain_sessions=200,
        pretrain_sites=40,
        rationale=(
            "3.5 mm: ~41 x 52 x 44 voxels across the brain, so the 15-minute two-core demo "
            "can pretrain and finetune six times; a 1 cm meningioma is still 3 voxels across"
        ),
    ),
    "full": SynthPreset(
        name="full",
        spacing=1.5,
        template_spacing=1.0,
        n_targets=3,
        train={"infarct": 21, "meningioma": 23, "brain_age": 200},
        test_source={"infarct": 40, "meningioma": 16, "brain_age": 100},
        test_target={"infarct": 320, "meningioma": 107, "brain_age": 800},
        pretrain_sessions=3000,
        pretrain_sites=200,
        rationale=(
            "1.5 mm with FOMO25 case counts: the template averages 152 brains and is blurrier "
            "than one scan, so 1 mm would cost 3.4x time and disk for little extra anatomy"
        ),
    ),
}


def check_shift(shift: str) -> Shift:
    """``shift`` as a shift mode (a one-line error for unknown modes)."""
    if shift not in SHIFTS:
        raise NeuroFMError(None, f"unknown shift mode {shift!r} (known: {', '.join(SHIFTS)})")
    return shift


def get_preset(name: str) -> SynthPreset:
    """Look up a preset by name (a one-line error for unknown names)."""
    if name not in PRESETS:
        raise NeuroFMError(None, f"unknown synth preset {name!r} (known: {', '.join(PRESETS)})")
    return PRESETS[name]


@dataclass(frozen=True)
class Job:
    """One session to render and where it goes; everything random comes from ``key``."""

    task: str  # a task name or "pretrain"
    split: str
    case: str
    site: SiteParams
    key: tuple[int, ...]
    positive: bool = False
    subject_key: tuple[int, ...] = ()
    session: int = 0


def _rng(seed: int, key: tuple[int, ...]) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def _split_sizes(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def plan_jobs(
    preset: SynthPreset, seed: int, sites: tuple[SiteParams, ...]
) -> tuple[list[Job], list[SiteParams]]:
    """All sessions of the benchmark, and the random pretraining sites."""
    jobs: list[Job] = []
    source, targets = sites[0], sites[1:]
    for task in TASK_NAMES:
        splits: list[tuple[str, SiteParams, int]] = [
            ("train", source, preset.train.get(task, 0)),
            ("test", source, preset.test_source.get(task, 0)),
        ]
        sizes = _split_sizes(preset.test_target.get(task, 0), max(len(targets), 1))
        splits += [(f"test_{s.name}", s, n) for s, n in zip(targets, sizes, strict=False)]
        for split_id, (split, site, n) in enumerate(splits):
            positives: set[int] = set()
            if task == "infarct":
                order = _rng(seed, (STREAM[task], split_id, PLAN)).permutation(n)
                positives = {int(i) for i in order[: round(preset.infarct_positive * n)]}
            for i in range(n):
                jobs.append(
                    Job(
                        task=task,
                        split=split,
                        case=f"{task}_{split}_{i:04d}",
                        site=site,
                        key=(STREAM[task], split_id, i + 1),
                        positive=i in positives,
                    )
                )
    pre_sites = [
        random_site(_rng(seed, (STREAM["pretrain_site"], j)), f"pre{j:03d}", preset.spacing)
        for j in range(preset.pretrain_sites)
    ]
    plan = _rng(seed, (STREAM["pretrain"], PLAN))
    subject = n_pre = 0
    while n_pre < preset.pretrain_sessions:
        subject += 1
        n_sessions = int(plan.choice([1, 2, 3], p=[0.7, 0.25, 0.05]))
        site = pre_sites[int(plan.integers(len(pre_sites)))] if pre_sites else source
        for s in range(min(n_sessions, preset.pretrain_sessions - n_pre)):
            n_pre += 1
            jobs.append(
                Job(
                    task="pretrain",
                    split="pretrain",
                    case=f"sub_{subject:05d}/ses_{s + 1}",
                    site=site,
                    key=(STREAM["pretrain"], subject, s + 1),
                    subject_key=(STREAM["pretrain"], subject),
                    session=s,
                )
            )
    return jobs, pre_sites


def _pick_t2s(rng: np.random.Generator, site: SiteParams) -> str:
    return "swi" if rng.random() < site.p_swi else "t2s"


def _pretrain_sequences(rng: np.random.Generator, site: SiteParams) -> tuple[str, ...]:
    """A random non-empty subset, ADC mostly alongside DWI (it is computed from it)."""
    chosen = [s for s, p in PRETRAIN_SEQUENCES.items() if rng.random() < p]
    if not chosen:
        chosen = [str(rng.choice(list(PRETRAIN_SEQUENCES)))]
    out = [_pick_t2s(rng, site) if s == "swi|t2s" else s for s in chosen]
    if "dwi_b1000" in out and rng.random() < 0.85:
        out.insert(out.index("dwi_b1000") + 1, "adc")
    return tuple(out)


def make_spec(
    job: Job, seed: int, box: Box, template: Template
) -> tuple[SessionSpec, np.random.Generator]:
    """Draw a job's session (deterministic in ``seed`` and the job's keys).

    Returns the spec and the generator, whose remaining stream drives the acquisition noise.
    """
    # lesions stay visible at this size; a meningioma is at most 5 cm, so at least 4 voxels
    # of it can be asked for only up to 12.5 mm (the tiny preset's thick-slice sites exceed it)
    voxel = min(float(np.prod(job.site.voxel_size) ** (1 / 3)), MAX_LESION_VOXEL_MM)
    sequences: tuple[str, ...]
    if job.task == "pretrain":
        subj = _rng(seed, job.subject_key)
        base_age = float(subj.uniform(18.0, 85.0))
        anatomy = sample_anatomy(subj, base_age, box)
        u = subj.random()
        infarct = sample_infarct(subj, template, voxel) if u < 0.15 else None
        meningioma = sample_meningioma(subj, template, voxel) if 0.15 <= u < 0.2 else None
        rng = _rng(seed, job.key)
        age = base_age + job.session + float(rng.uniform(0.0, 1.0))  # one visit a year
        anatomy = dataclasses.replace(anatomy, age=float(min(age, 90.0)))
        sequences = _pretrain_sequences(rng, job.site)
    else:
        rng = _rng(seed, job.key)
        infarct = meningioma = None
        if job.task == "brain_age":
            age = float(rng.uniform(18.0, 90.0))
            sequences = ("t1", "t2")
        else:
            age = float(np.clip(rng.normal(65.0 if job.task == "infarct" else 58.0, 13.0), 18, 90))
            if job.task == "infarct":
                sequences = ("dwi_b1000", "flair", "adc", _pick_t2s(rng, job.site))
            else:
                sequences = ("dwi_b1000", "flair", _pick_t2s(rng, job.site))
        anatomy = sample_anatomy(rng, age, box)
        if job.task == "infarct" and job.positive:
            infarct = sample_infarct(rng, template, voxel)
        if job.task == "meningioma":
            meningioma = sample_meningioma(rng, template, voxel)
    contrast, gains = session_contrast(rng, job.site, sequences)
    spec = SessionSpec(anatomy, job.site, sequences, contrast, gains, infarct, meningioma)
    return spec, rng


def render_job(
    job: Job, seed: int, box: Box, template_spacing: float, root: Path
) -> dict[str, Any]:
    """Render one session, write its files under ``root``, return its metadata row."""
    template = load_template(template_spacing)
    spec, rng = make_spec(job, seed, box, template)
    session = synthesize_session(spec, template, box, rng)
    folder = root / ("pretrain" if job.task == "pretrain" else f"{job.task}/{job.split}") / job.case
    for seq, img in session.images.items():
        save_nifti(img, session.affine, folder / f"{seq}.nii.gz", dtype=np.int16)
    row: dict[str, Any] = {
        "task": job.task,
        "split": job.split,
        "case": job.case,
        "site": job.site.name,
        "age": round(spec.anatomy.age, 2),
        "sequences": " ".join(spec.sequences),
        "shape": "x".join(str(v) for v in session.brain_mask.shape),
    }
    if job.task == "infarct":
        row["label"] = int(job.positive)
    if session.tumour_mask is not None:
        if job.task == "meningioma":
            save_nifti(session.tumour_mask, session.affine, folder / "label.nii.gz", np.uint8)
        row["lesion_voxels"] = int(session.tumour_mask.sum())
    if session.infarct_mask is not None:
        if job.task == "infarct":
            gt = root / "ground_truth" / "infarct" / job.split / f"{job.case}.nii.gz"
            save_nifti(session.infarct_mask, session.affine, gt, np.uint8)
        row["lesion_voxels"] = int(session.infarct_mask.sum())
    if spec.infarct is not None:
        i = spec.infarct
        row["lesion"] = f"infarct:{i.territory}:{'left' if i.side < 0 else 'right'}"
        row["lesion_size_mm"] = round(2 * i.radius, 1)
    if spec.meningioma is not None:
        m = spec.meningioma
        row["lesion"] = f"meningioma:{m.location}"
        row["lesion_size_mm"] = round(m.diameter_mm, 1)
        row["oedema_mm"] = round(m.oedema_mm, 1)
        row["calcifications"] = len(m.calcs)
    return row


def _run(args: tuple[Job, int, Box, float, Path]) -> dict[str, Any]:
    return render_job(*args)


def _map(
    jobs: list[Job], seed: int, box: Box, spacing: float, root: Path, workers: int
) -> Iterator[dict[str, Any]]:
    args = [(j, seed, box, spacing, root) for j in jobs]
    if workers <= 1:
        yield from map(_run, args)
        return
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    with multiprocessing.get_context(method).Pool(workers) as pool:
        yield from pool.imap_unordered(_run, args, chunksize=2)


def _write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)


def _site_json(site: SiteParams, box: Box, role: str, spacing: float) -> dict[str, Any]:
    """A site's parameters, written image geometry and which pretraining ranges it leaves."""
    shape = list(site_grid(box, site).shape)
    shape[site.slice_axis] //= site.slice_factor
    out = dataclasses.asdict(site)
    out.update(
        role=role,
        voxel_size=list(site.voxel_size),
        shape=shape,
        outside_pretraining_ranges=list(outside_ranges(site, PRETRAIN_RANGES, spacing)),
    )
    return out


def _write_tables(root: Path, rows: list[dict[str, Any]]) -> None:
    by_split: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        if row["task"] != "pretrain":
            by_split.setdefault((row["task"], row["split"]), []).append(row)
    for (task, split), items in sorted(by_split.items()):
        items.sort(key=lambda r: r["case"])
        cols = LABEL_COLUMNS[task]
        _write_csv(root / task / split / "labels.csv", cols, [[r[c] for c in cols] for r in items])
    details = [
        "task",
        "split",
        "case",
        "site",
        "age",
        "label",
        "sequences",
        "shape",
        "lesion",
        "lesion_size_mm",
        "lesion_voxels",
        "oedema_mm",
        "calcifications",
    ]
    ordered = sorted(rows, key=lambda r: (r["task"], r["split"], r["case"]))
    _write_csv(
        root / "ground_truth" / "cases.csv",
        details,
        [[r.get(c, "") for c in details] for r in ordered if r["task"] != "pretrain"],
    )
    _write_csv(
        root / "ground_truth" / "pretrain.csv",
        ["subject", "session", "site", "age", "sequences", "lesion"],
        [
            [*r["case"].split("/"), r["site"], r["age"], r["sequences"], r.get("lesion", "")]
            for r in ordered
            if r["task"] == "pretrain"
        ],
    )


README = """\
neurofm synthetic benchmark ({preset} preset, seed {seed}, {shift} shift)
===========================================================================

THIS IS SYNTHETIC DATA: a stand-in for real clinical MRI, built by `neurofm synth` from the
MNI152 ICBM 2009a symmetric templates shipped with nilearn. No patient data is included and
no result on it says anything about performance on real scans.

What it imitates (the FOMO25 challenge tasks):
- infarct (classification): dwi_b1000, flair, adc, swi|t2s; labels.csv case,site,label
- meningioma (segmentation): dwi_b1000, flair, swi|t2s, label.nii.gz; labels.csv case,site
- brain_age (regression): t1, t2; labels.csv case,site,age
- pretrain/<subject>/<session>/: unlabeled sessions from many random sites, random sequence
  subsets (FOMO60K layout)

Splits: train and test come from the source site; test_<site> from target sites that differ
in voxel size / slice thickness, bias field, noise, grey-white contrast, intensity scale,
inter-sequence misregistration and skull-strip residue, drawn anew for every seed (see
benchmark.json). Shift mode "matched": the target sites are drawn from the same ranges as the
pretraining sites; "novel": each target lies outside those ranges in the properties listed as
"novel" in benchmark.json (e.g. thick slices along another axis, thicker slices, lower SNR).

Subjects are random smooth deformations of the template with age-dependent atrophy; lesions
are analytic shapes (infarcts in arterial territories, dural-based meningiomas). Images are
skull-stripped int16 in arbitrary site-specific units; ADC is in 1e-6 mm^2/s.
ground_truth/ holds infarct masks and per-case lesion details (not model inputs).

The MNI152 2009a template is Copyright (C) 1993-2009 Louis Collins, McConnell Brain Imaging
Centre, Montreal Neurological Institute, McGill University; used under its permissive license.
"""


def _default_workers(n_jobs: int) -> int:
    if n_jobs < 100:
        return 1
    return max(1, min(os.cpu_count() or 1, 8))


def _prepare_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not overwrite and (not out.is_dir() or any(out.iterdir())):
        raise NeuroFMError(out, "exists and is not empty (pass --overwrite to replace it)")


def build_benchmark(
    out: Path,
    preset: str | SynthPreset,
    seed: int,
    overwrite: bool = False,
    *,
    workers: int | None = None,
    progress: bool = True,
    shift: str = "matched",
) -> Path:
    """Write the synthetic benchmark to ``out`` atomically and return ``out``.

    ``shift`` chooses how the target sites relate to the pretraining sites: ``matched`` draws
    them from the same ranges, ``novel`` outside them (see ``sites.target_site``).

    The benchmark is written into a hidden temporary sibling folder and renamed at the end, so an
    interrupted run never leaves a half-written benchmark at ``out``. Refuses a non-empty ``out``
    unless ``overwrite``. ``workers`` processes render sessions (default: all cores for large
    presets); the output is byte-identical whatever the number.
    """
    out = Path(out)
    p = get_preset(preset) if isinstance(preset, str) else preset
    if seed < 0:
        raise NeuroFMError(None, f"seed must be a non-negative integer, got {seed}")
    mode = check_shift(shift)
    _prepare_out(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    template = load_template(p.template_spacing)
    lo = tuple(float(v) - p.margin_mm for v in template.icv_box[0])
    hi = tuple(float(v) + p.margin_mm for v in template.icv_box[1])
    box: Box = (lo, hi)  # type: ignore[assignment]
    sites = p.sites(seed, mode)
    jobs, pre_sites = plan_jobs(p, seed, sites)
    n_workers = _default_workers(len(jobs)) if workers is None else max(1, workers)

    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        rows: list[dict[str, Any]] = []
        with Progress(
            TextColumn("[bold]synth {task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            disable=not progress,
        ) as bar:
            task_id = bar.add_task(f"{p.name} → {out}", total=len(jobs))
            for row in _map(jobs, seed, box, p.template_spacing, tmp, n_workers):
                rows.append(row)
                bar.advance(task_id)
        _write_tables(tmp, rows)
        meta = _benchmark_json(p, seed, mode, sites, pre_sites, box, rows, template.spacing)
        (tmp / "benchmark.json").write_text(json.dumps(meta, indent=2) + "\n")
        (tmp / "README.txt").write_text(README.format(preset=p.name, seed=seed, shift=mode))
        publish_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _benchmark_json(
    preset: SynthPreset,
    seed: int,
    shift: Shift,
    sites: tuple[SiteParams, ...],
    pre_sites: list[SiteParams],
    box: Box,
    rows: list[dict[str, Any]],
    template_spacing: float,
) -> dict[str, Any]:
    counts: dict[str, dict[str, dict[str, int]]] = {}
    seq_counts: dict[str, int] = {}
    for r in rows:
        if r["task"] == "pretrain":
            for s in r["sequences"].split():
                seq_counts[s] = seq_counts.get(s, 0) + 1
            continue
        c = counts.setdefault(r["task"], {}).setdefault(r["split"], {"cases": 0})
        c["cases"] += 1
        if r["task"] == "infarct":
            c["positives"] = c.get("positives", 0) + int(r["label"])
    pre_rows = [r for r in rows if r["task"] == "pretrain"]
    preset_json = {k: v for k, v in dataclasses.asdict(preset).items() if k not in {"rationale"}}
    return {
        "synthetic": True,
        "description": "neurofm synthetic stand-in for real brain MRI (FOMO25-style tasks)",
        "neurofm_version": __version__,
        "preset": preset.name,
        "preset_parameters": preset_json,
        "voxel_size_rationale": preset.rationale,
        "seed": seed,
        "shift": shift,
        "pretraining_ranges": dataclasses.asdict(PRETRAIN_RANGES),
        "template": {
            "name": "MNI152 ICBM 2009a symmetric (nilearn wheel)",
            "files": list(TEMPLATE_FILES.values()),
            "working_spacing_mm": template_spacing,
        },
        "field_of_view_mm": {"lo": list(box[0]), "hi": list(box[1])},
        "sites": {
            s.name: _site_json(s, box, "source" if i == 0 else "target", preset.spacing)
            for i, s in enumerate(sites)
        },
        "pretrain_sites": {
            s.name: _site_json(s, box, "pretrain", preset.spacing) for s in pre_sites
        },
        "counts": counts,
        "pretrain": {
            "subjects": len({r["case"].split("/")[0] for r in pre_rows}),
            "sessions": len(pre_rows),
            "sequence_counts": dict(sorted(seq_counts.items())),
        },
        "units": {"adc": "1e-6 mm^2/s", "other": "arbitrary, site-specific scale"},
    }
