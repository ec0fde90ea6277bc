"""Make packages: seal any folder with a manifest, or build one from a finetuned run.

Sealing is the last step of every build: run the package once in the sandbox on its self-test
sample to produce the reference output (so the reference is what the packaged code really computes
under the runner, not what training happened to log), then hash every file into ``artifacts``.
A package made by hand (any model, any code) is sealed the same way (``neurofm package seal``).

A build from a run happens in a temporary folder next to ``--out`` and is renamed into place only
when sealed, so a failed build leaves nothing that looks like a package.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from neurofm.atomic import publish_dir
from neurofm.errors import NeuroFMError
from neurofm.packages.hashing import hash_artifacts, sha256_file
from neurofm.packages.manifest import (
    Manifest,
    check_paths_inside,
    dump_manifest,
    load_manifest,
    parse_manifest,
)
from neurofm.packages.runner import execute, find_cases
from neurofm.task_text import TASK_FILE_NAME, check_task, task_record
from neurofm.tasks import TaskLike, TaskSpec, get_task

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
MODEL_DIR = "model"
SELFTEST_DIR = "selftest"
INFER_ENTRYPOINT = ["python", "-m", "neurofm.packages.infer", "--model", MODEL_DIR]


def produce_reference(
    pkg_dir: Path, manifest: Manifest, *, isolation: str = "auto", device: str = "cpu"
) -> Path:
    """Run the package on its self-test sample in the sandbox and store the output as reference."""
    jobs = find_cases(manifest, pkg_dir / manifest.selftest.sample)
    if len(jobs) != 1:
        raise NeuroFMError(pkg_dir / manifest.selftest.sample, "self-test sample must be one case")
    with tempfile.TemporaryDirectory(prefix="neurofm-ref-") as tmp:
        report = execute(pkg_dir, manifest, jobs, Path(tmp), isolation=isolation, device=device)
        if report.error:
            raise NeuroFMError(pkg_dir, f"self-test run failed, no reference made: {report.error}")
        ref = pkg_dir / manifest.selftest.reference
        ref.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(report.outputs[0], ref)
    return ref


def seal_package(
    pkg_dir: Path, *, make_reference: bool = True, isolation: str = "auto", device: str = "cpu"
) -> Manifest:
    """(Re)make the self-test reference if asked, hash every file, rewrite manifest.yaml."""
    pkg_dir = Path(pkg_dir)
    manifest = load_manifest(pkg_dir)
    if make_reference:
        produce_reference(pkg_dir, manifest, isolation=isolation, device=device)
    sealed = manifest.model_copy(update={"artifacts": hash_artifacts(pkg_dir)})
    sealed = parse_manifest(sealed.model_dump(mode="json"), pkg_dir / "manifest.yaml")
    check_paths_inside(pkg_dir, sealed)
    dump_manifest(sealed, pkg_dir)
    return sealed


def _base_model(config: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """Provenance of the pretrained weights the run started from (name + sha256 if on disk).

    ``init`` is the pretraining run's folder as given to ``neurofm finetune`` (relative to where
    it ran, or to the run folder); ``scratch`` means no base model.
    """
    init = config.get("init")
    if not init or str(init) == "scratch":
        return {"name": "scratch", "sha256": None}
    for folder in (Path(str(init)), run_dir / str(init)):
        if (folder / WEIGHTS).is_file():
            return {"name": folder.resolve().name, "sha256": sha256_file(folder / WEIGHTS)}
    return {"name": Path(str(init)).name or str(init), "sha256": None}


def build_package(
    run_dir: Path,
    out: Path,
    *,
    sample: Path,
    task: TaskLike | None = None,
    pkg_id: str | None = None,
    name: str | None = None,
    version: str = "1.0.0",
    license: str = "Apache-2.0",
    authors: list[str] | None = None,
    description: str = "",
    track: str = "open",
    timeout_s: float = 600.0,
    memory_mb: int = 8192,
    isolation: str = "auto",
    overwrite: bool = False,
) -> Manifest:
    """Package a finetuned run (``model.safetensors`` + ``config.json``) as a sealed package."""
    from neurofm.predict import load_predictor

    run_dir, out, sample = Path(run_dir), Path(out), Path(sample)
    for f in (WEIGHTS, CONFIG):
        if not (run_dir / f).is_file():
            raise NeuroFMError(run_dir / f, "file does not exist (not a finetuned run folder)")
    if out.exists() and not overwrite:
        raise NeuroFMError(out, "exists; pass --overwrite to replace it")
    try:
        config = json.loads((run_dir / CONFIG).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise NeuroFMError(run_dir / CONFIG, f"unreadable run config ({exc})") from exc
    predictor = load_predictor(run_dir, device="cpu")
    run_task = predictor.task.name
    check_task(task, predictor.task, run_dir)
    sequences = _input_groups(run_task, list(predictor.input_sequences))
    kind = get_task(run_task).output_kind
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{out.name}-", dir=out.parent))
    try:
        (tmp / MODEL_DIR).mkdir()
        for f in (WEIGHTS, CONFIG):
            shutil.copyfile(run_dir / f, tmp / MODEL_DIR / f)
        # a user's task file travels with the package, so it runs where the file does not exist
        if (task_text := task_record(predictor.task)) is not None:
            (tmp / TASK_FILE_NAME).write_text(task_text, encoding="utf-8")
        manifest_data: dict[str, Any] = {
            "id": pkg_id or _slug(run_dir.name, run_task),
            "name": name or f"{run_dir.name} ({run_task})",
            "version": version,
            "license": license,
            "task": run_task,
            "track": track,
            "authors": authors or [os.environ.get("USER") or "unknown"],
            "description": description or f"neurofm model finetuned for {run_task}",
            "base_model": _base_model(config, run_dir),
            "inputs": {"sequences": sequences, "orientation": "RAS"},
            "outputs": _outputs(get_task(run_task)),
            "runtime": {
                "entrypoint": INFER_ENTRYPOINT,
                "timeout_s": timeout_s,
                "memory_mb": memory_mb,
                "network": "none",
            },
            "artifacts": [],
            "selftest": {
                "sample": f"{SELFTEST_DIR}/{sample.name}",
                "reference": f"{SELFTEST_DIR}/reference{'.nii.gz' if kind == 'mask' else '.txt'}",
            },
        }
        spacing = (config.get("preprocess") or {}).get("spacing")
        if isinstance(spacing, list | tuple) and len(spacing) == 3:
            manifest_data["inputs"]["spacing"] = [float(s) for s in spacing]
        manifest = parse_manifest(manifest_data, out / "manifest.yaml")
        jobs = find_cases(manifest, sample)
        if len(jobs) != 1:
            raise NeuroFMError(sample, "--sample must be one case folder")
        sample_dir = tmp / SELFTEST_DIR / sample.name
        sample_dir.mkdir(parents=True)
        for seq, src in jobs[0].sources.items():
            suffix = ".nii.gz" if str(src).endswith(".gz") else ".nii"
            shutil.copyfile(Path(str(src)), sample_dir / f"{seq}{suffix}")
        dump_manifest(manifest, tmp)
        sealed = seal_package(tmp, make_reference=True, isolation=isolation)
        publish_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return sealed


def _input_groups(task: str, model_inputs: list[str]) -> list[str | list[str]]:
    """The manifest's input sequences from the run's channel slots (``swi|t2s`` is a one-of)."""
    groups: list[str | list[str]] = [s.split("|") if "|" in s else s for s in model_inputs]
    get_task(task).select({s for g in groups for s in ([g] if isinstance(g, str) else g)})
    return groups


def _outputs(task: TaskSpec) -> dict[str, Any]:
    """The manifest's outputs section, from the task's output kind, value range and units."""
    if task.value_range is None:
        return {"kind": task.output_kind, "geometry": "same_as_input", "labels": {1: task.name}}
    out = {"kind": task.output_kind, "geometry": "none", "range": list(task.value_range)}
    return out | ({"units": task.units} if task.units else {})


def _slug(text: str, task: str) -> str:
    slug = re.sub(r"[^a-z0-9._-]+", "-", f"{text}-{task}".lower()).strip("-.")
    return (slug or task)[:64]
