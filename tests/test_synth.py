"""The synthetic benchmark on disk: layout, labels, loading, lesions, sites, determinism, CLI.

The tiny preset is built once per session (a few seconds); determinism and overwrite use an
even smaller preset built from ``SynthPreset`` with ``dataclasses.replace``.
"""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from neurofm.cli import main
from neurofm.errors import NeuroFMError
from neurofm.io.nifti import load_nifti, load_volume, voxel_spacing
from neurofm.sequences import CANONICAL
from neurofm.synth import PRESETS, SynthPreset, build_benchmark
from neurofm.synth import benchmark as bench_mod
from neurofm.tasks import get_task

TASKS = ("infarct", "meningioma", "brain_age")
SPLITS = {"train", "test", "test_sitea", "test_siteb"}
HEADERS = {
    "infarct": ["case", "site", "label"],
    "meningioma": ["case", "site"],
    "brain_age": ["case", "site", "age"],
}


def micro(**counts: int) -> SynthPreset:
    """A preset of one or two cases per split, for builds repeated inside one test."""
    base = PRESETS["tiny"]
    n = {"train": 2, "test_source": 1, "test_target": 2} | counts
    return dataclasses.replace(
        base,
        name="micro",
        train=dict.fromkeys(TASKS, n["train"]),
        test_source=dict.fromkeys(TASKS, n["test_source"]),
        test_target=dict.fromkeys(TASKS, n["test_target"]),
        pretrain_sessions=counts.get("pretrain", 2),
    )


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "bench"
    return build_benchmark(out, "tiny", seed=3, progress=False, workers=1)


def read_labels(split_dir: Path) -> tuple[list[str], list[dict[str, str]]]:
    with (split_dir / "labels.csv").open() as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), list(reader)


def case_files(case: Path) -> dict[str, Path]:
    return {
        p.name[: -len(".nii.gz")]: p
        for p in sorted(case.glob("*.nii.gz"))
        if p.name != "label.nii.gz"
    }


def all_arrays(root: Path) -> dict[str, np.ndarray]:
    return {str(p.relative_to(root)): load_nifti(p)[0] for p in sorted(root.rglob("*.nii.gz"))}


def test_layout_labels_and_metadata(tiny: Path) -> None:
    meta = json.loads((tiny / "benchmark.json").read_text())
    assert meta["synthetic"] is True and meta["preset"] == "tiny" and meta["seed"] == 3
    assert "neurofm_version" in meta and set(meta["sites"]) == {"source", "sitea", "siteb"}
    assert "stand-in" in (tiny / "README.txt").read_text()
    for task in TASKS:
        spec = get_task(task)
        assert {p.name for p in (tiny / task).iterdir()} == SPLITS
        for split in SPLITS:
            header, rows = read_labels(tiny / task / split)
            assert header == HEADERS[task]
            cases = sorted(p.name for p in (tiny / task / split).iterdir() if p.is_dir())
            assert cases == sorted(r["case"] for r in rows) and len(cases) == 4
            assert meta["counts"][task][split]["cases"] == 4
            site = "source" if split in {"train", "test"} else split.removeprefix("test_")
            assert {r["site"] for r in rows} == {site}
            for r in rows:
                files = case_files(tiny / task / split / r["case"])
                spec.select(set(files), r["case"])  # raises if a required input is missing
                assert not {"swi", "t2s"} <= set(files)
                assert (tiny / task / split / r["case"] / "label.nii.gz").exists() == (
                    task == "meningioma"
                )
            if task == "infarct":
                labels = [int(r["label"]) for r in rows]
                assert set(labels) <= {0, 1} and sum(labels) == 2  # 45 % of 4, rounded
            if task == "brain_age":
                ages = [float(r["age"]) for r in rows]
                assert all(18 <= a <= 90 for a in ages) and len(set(ages)) == 4


def test_every_session_loads_on_one_grid(tiny: Path) -> None:
    meta = json.loads((tiny / "benchmark.json").read_text())
    sessions = [p for p in (tiny / "pretrain").glob("*/*") if p.is_dir()]
    cases = [p for t in TASKS for p in (tiny / t).glob("*/*") if p.is_dir()]
    assert len(sessions) == 6 and len(cases) == 48
    for case in cases + sessions:
        vol = load_volume(case_files(case))  # checks shape and affine agree
        assert vol.data.shape[0] >= 1 and np.isfinite(vol.data).all()
        assert (vol.data >= 0).all() and vol.data.max() > 0
        if case.parent.parent.name in TASKS:
            site = "source" if case.parent.name in {"train", "test"} else case.parent.name[5:]
            assert np.allclose(vol.spacing, meta["sites"][site]["voxel_size"])
            assert list(vol.spatial_shape) == meta["sites"][site]["shape"]
        label = case / "label.nii.gz"
        if label.exists():
            mask, affine = load_nifti(label)
            assert mask.shape == vol.spatial_shape and np.allclose(affine, vol.affine)
            assert set(np.unique(mask)) <= {0.0, 1.0}


def test_lesions_lie_inside_the_head_and_brain(tiny: Path) -> None:
    n_tumour = n_infarct = 0
    for case in sorted((tiny / "meningioma").glob("*/*/label.nii.gz")):
        label = load_nifti(case)[0] > 0
        flair = load_nifti(case.parent / "flair.nii.gz")[0]
        assert label.sum() >= 1, f"{case}: meningioma not visible"
        assert (flair[label] > 0).all(), f"{case}: tumour outside the skull-stripped head"
        n_tumour += 1
    for mask_path in sorted((tiny / "ground_truth" / "infarct").glob("*/*.nii.gz")):
        case = tiny / "infarct" / mask_path.parent.name / mask_path.name[: -len(".nii.gz")]
        mask = load_nifti(mask_path)[0] > 0
        adc = load_nifti(case / "adc.nii.gz")[0]
        assert (adc[mask] > 0).all(), f"{case}: infarct outside the brain"
        n_infarct += int(mask.any())
    assert n_tumour == 16 and n_infarct >= 4


def test_infarcts_bright_on_dwi_flair_dark_on_adc(tiny: Path) -> None:
    checked = 0
    for mask_path in sorted((tiny / "ground_truth" / "infarct").glob("*/*.nii.gz")):
        case = tiny / "infarct" / mask_path.parent.name / mask_path.name[: -len(".nii.gz")]
        lesion = load_nifti(mask_path)[0] > 0
        if lesion.sum() < 2:
            continue
        img = {s: load_nifti(p)[0] for s, p in case_files(case).items()}
        tissue = (img["adc"] > 0) & (img["adc"] < 1500) & ~lesion  # brain, not CSF
        ratio = {s: img[s][lesion].mean() / img[s][tissue].mean() for s in ("dwi_b1000", "flair")}
        adc_ratio = img["adc"][lesion].mean() / img["adc"][tissue].mean()
        # coarse voxels mix CSF into lesion and tissue alike: test_synth_models has the strict test
        assert ratio["dwi_b1000"] > 1.3 and ratio["flair"] > 1.1 and adc_ratio < 0.85, case
        checked += 1
    assert checked >= 3


def test_target_sites_differ_from_source(tiny: Path) -> None:
    sites = json.loads((tiny / "benchmark.json").read_text())["sites"]

    def measured(split: str) -> tuple[tuple[float, ...], float]:
        """Voxel size from the headers and median brain intensity of the T1s of a split."""
        images = [load_nifti(p) for p in sorted((tiny / "brain_age" / split).glob("*/t1.nii.gz"))]
        spacing = {tuple(np.round(voxel_spacing(aff), 3)) for _, aff in images}
        assert len(spacing) == 1
        return spacing.pop(), float(np.median([np.median(a[a > 0]) for a, _ in images]))

    src_voxel, src_median = measured("train")
    for site in ("sitea", "siteb"):
        voxel, median = measured(f"test_{site}")
        differences = [
            voxel != src_voxel,
            not 0.67 < median / src_median < 1.5,  # intensity scale
            sites[site]["bias"] >= 2 * sites["source"]["bias"],
            sites[site]["snr"] <= 0.75 * sites["source"]["snr"],
            abs(sites[site]["gw_contrast"] - 1.0) >= 0.1,
        ]
        assert all(differences), (site, differences)
    voxel = sites["sitea"]["voxel_size"]
    assert max(voxel) >= 2 * min(voxel) * (1 - 1e-9)  # thick slices
    assert meta_shift(tiny) == "matched"


def meta_shift(root: Path) -> str:
    return str(json.loads((root / "benchmark.json").read_text())["shift"])


def test_pretrain_sessions_have_varied_sequence_subsets(tiny: Path) -> None:
    subsets = [frozenset(case_files(p)) for p in (tiny / "pretrain").glob("*/*") if p.is_dir()]
    assert all(s and s <= set(CANONICAL) and not {"swi", "t2s"} <= s for s in subsets)
    assert len(set(subsets)) >= 2
    meta = json.loads((tiny / "benchmark.json").read_text())
    assert meta["pretrain"]["sessions"] == 6 and len(meta["pretrain_sites"]) == 3


def test_same_seed_same_arrays_and_cases_are_independent(tmp_path: Path) -> None:
    a = all_arrays(build_benchmark(tmp_path / "a", micro(), seed=5, progress=False, workers=1))
    b = all_arrays(build_benchmark(tmp_path / "b", micro(), seed=5, progress=False, workers=2))
    c = all_arrays(build_benchmark(tmp_path / "c", micro(), seed=6, progress=False, workers=1))
    more = micro(train=3, pretrain=3)
    d = all_arrays(build_benchmark(tmp_path / "d", more, seed=5, progress=False, workers=1))
    assert a.keys() == b.keys() and len(a) > 20
    assert all(np.array_equal(a[k], b[k]) for k in a)
    images = [k for k in a.keys() & c.keys() if "ground_truth" not in k and "label" not in k]
    assert images and not any(np.array_equal(a[k], c[k]) for k in images)
    shared = [k for k in a if "/train/" not in k]  # more train cases leave the others alone
    assert shared and all(np.array_equal(a[k], d[k]) for k in shared)
    assert len(d) > len(a)


def test_overwrite_replaces_and_failure_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "bench"
    out.mkdir()
    (out / "old.txt").write_text("x")
    with pytest.raises(NeuroFMError, match="not empty"):
        build_benchmark(out, micro(), seed=1, progress=False)
    build_benchmark(out, micro(), seed=1, overwrite=True, progress=False)
    assert not (out / "old.txt").exists() and (out / "benchmark.json").exists()

    calls = {"n": 0}
    real = bench_mod.render_job

    def dying(*args: object) -> dict[str, object]:
        calls["n"] += 1
        if calls["n"] > 3:
            raise KeyboardInterrupt
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(bench_mod, "render_job", dying)
    with pytest.raises(KeyboardInterrupt):
        build_benchmark(tmp_path / "killed", micro(), seed=1, progress=False, workers=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bench"]


def test_cli_refuses_non_empty_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "x"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(SystemExit) as exc:
        main(["synth", str(out), "--preset", "tiny", "--seed", "1"])
    assert exc.value.code == 2
    assert "not empty" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    with pytest.raises(SystemExit) as exc:
        main(["synth", str(tmp_path / "y"), "--preset", "huge"])
    assert exc.value.code == 2 and not (tmp_path / "y").exists()


def test_demo_plan_keeps_few_shot_sizes_and_balanced_infarct_splits() -> None:
    preset = PRESETS["demo"]
    jobs, pre_sites = bench_mod.plan_jobs(preset, 0, preset.sites(0))
    counts: dict[tuple[str, str], list[bool]] = {}
    for j in jobs:
        counts.setdefault((j.task, j.split), []).append(j.positive)
    assert len(counts["infarct", "train"]) == 20 and len(counts["meningioma", "train"]) == 22
    assert 80 <= len(counts["brain_age", "train"]) <= 100
    for site in ("sitea", "siteb"):
        assert 30 <= len(counts["infarct", f"test_{site}"]) <= 40
        assert 30 <= len(counts["meningioma", f"test_{site}"]) <= 40
        assert 40 <= len(counts["brain_age", f"test_{site}"]) <= 60
    for (task, _), pos in counts.items():
        if task == "infarct":
            assert 0.4 <= np.mean(pos) <= 0.5
    assert 150 <= len(counts["pretrain", "pretrain"]) <= 250 and len(pre_sites) >= 20
    assert len({j.key for j in jobs}) == len(jobs)
    sitea = preset.sites(0)[1]
    assert sitea.name == "sitea" and sitea.slice_factor >= 2
    assert voxel_spacing(np.diag([*sitea.voxel_size, 1.0]))[sitea.slice_axis] > preset.spacing
