"""The main job, end to end on the embedded synthetic benchmark.

synth (demo preset) -> prepare (4 mm) -> self-supervised pretraining -> few-shot finetuning of
all three tasks from the pretrained encoder and from scratch -> prediction on every test split
(raw NIfTI in, outputs in the input geometry) -> evaluation with case-bootstrap CIs -> a terminal
table and the HTML report. Stages whose outputs are complete are reused, so an interrupted demo
continues where it stopped; a finished run made with other settings is refused (one-line error)
rather than silently mixed into the results; ``overwrite`` starts afresh.

Two pretraining runs, one per kind of model. A pooled head (brain age) reads an embedding, and
contrastive pretraining makes a better one: on the demo data 300 MAE steps moved the brain-age
ridge probe from 17.3 to 15.3 years, 300 contrastive steps to 9.5, and a batch of 24 gives
InfoNCE its negatives (same 7200 samples: batch 8 x 900 steps probed 12.3 years, 24 x 300 9.8).
Models with a decoder — meningioma segmentation, and infarct with the MIL head that scores every
voxel — start from a masked-autoencoder run (encoder and decoder, 300 steps of 8, ~1 min):
meningioma from it gained +0.08 Dice over scratch, from the contrastive encoder +0.03; infarct
with a pooled linear head reached AUROC 0.43-0.55 from scratch and 0.50-0.68 pretrained (seeds
0, 1), with MIL 0.56-0.73 and 0.69-0.74 (seeds 0-2).
``--objective`` / ``--decoder-objective`` / ``--infarct-head`` change them (the same objective
twice pretrains once). A pretrained encoder under a pooled head finetunes at a tenth of the
head's learning rate, a pretrained decoder model at the full rate; pooled heads of both arms
start from a closed-form probe (:mod:`neurofm.train.head_init`).
"""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from rich.console import Console
from rich.table import Table

from neurofm.atomic import write_json_atomic
from neurofm.data.prepare import prepare
from neurofm.data.preprocess import PreprocessParams
from neurofm.errors import NeuroFMError
from neurofm.evaluate import evaluate_predictions
from neurofm.io.splits import list_splits
from neurofm.models import HeadKind, TaskModelConfig
from neurofm.predict import load_predictor, predict_case_dir
from neurofm.pretrain.objectives import get_objective
from neurofm.report.baseline import baseline_differences
from neurofm.results import summarise, write_results
from neurofm.runfiles import load_config
from neurofm.synth import build_benchmark
from neurofm.tasks import TASKS
from neurofm.train.distributed import init_distributed
from neurofm.train.finetuning import FinetuneSettings, finetune
from neurofm.train.pretraining import PretrainSettings, pretrain
from neurofm.train.runs import case_dirs

SCRATCH = "scratch"
PRETRAINED = "pretrained"  # the two arms' names in results and report


@dataclass
class DemoSettings:
    """Knobs of the demo; defaults fit 15 minutes on 2 CPU cores."""

    preset: str = "demo"
    seed: int = 0
    spacing: float = 4.0
    objective: str = "contrastive"  # models that read a pooled embedding (brain age)
    decoder_objective: str = "mae"  # meningioma and MIL infarct: models with a decoder
    infarct_head: HeadKind = (
        "mil"  # linear head: AUROC 0.55 from scratch, 0.68 pretrained; mil 0.73
    )
    pretrain_steps: int = 300
    pretrain_batch: int = 24  # InfoNCE negatives: batch 24 probed 9.8 years, batch 8 12.3
    reconstruction_batch: int = 8  # mae/hybrid/modality: 300 x 8 MAE steps took 53 s
    finetune_steps: int = 300
    segmentation_steps: int = 600  # patch-based: at 300 steps the tumour was not found yet
    finetune_lr: float = 3e-3
    pretrained_encoder_lr_scale: float = 0.1  # full rate wrecked the pretrained embedding
    workers: int = 2
    tasks: tuple[str, ...] = tuple(TASKS)
    n_boot: int = 1000
    timings: dict[str, float] = field(default_factory=dict)

    def head_for(self, task: str) -> HeadKind:
        """The finetuning head of ``task`` (segmentation ignores it)."""
        return self.infarct_head if TASKS[task].kind == "classification" else "linear"

    def has_decoder(self, task: str) -> bool:
        """True when ``task``'s model has a decoder to pretrain (segmentation, MIL head)."""
        return TaskModelConfig(kind=TASKS[task].kind, head=self.head_for(task)).dense

    def objective_for(self, task: str) -> str:
        """The pretraining objective whose run ``task`` is finetuned from."""
        return self.decoder_objective if self.has_decoder(task) else self.objective

    def pretrain_settings(self, objective: str) -> PretrainSettings:
        """Recipe of the demo's pretraining run with ``objective``."""
        reconstructs = get_objective(objective).reconstruction
        return PretrainSettings(
            objective=objective, steps=self.pretrain_steps,
            batch_size=self.reconstruction_batch if reconstructs else self.pretrain_batch,
            workers=self.workers, seed=self.seed, probe_every=max(1, self.pretrain_steps // 4),
        )  # fmt: skip

    def describe_pretrained(self) -> str:
        """Which pretraining each task's pretrained arm starts from (table caption, report)."""
        parts: dict[str, list[str]] = {}
        for task in self.tasks:
            parts.setdefault(self.objective_for(task), []).append(task)
        return "; ".join(f"{o} ({', '.join(t)})" for o, t in parts.items())


def _reusable(run: Path, recipe: dict[str, Any]) -> bool:
    """True when ``run`` finished with ``recipe``; a finished run with another recipe is refused."""
    if not (run / "model.safetensors").exists():
        return False
    made = load_config(run).get("recipe", {})
    diff = {k: (made.get(k), v) for k, v in recipe.items() if made.get(k) != v}
    if diff:
        shown = ", ".join(f"{k} {a!r} (now {b!r})" for k, (a, b) in sorted(diff.items())[:3])
        raise NeuroFMError(run, f"finished with other settings: {shown}; rerun with --overwrite")
    return True


def _stage(console: Console, name: str, timings: dict[str, float], t0: float) -> None:
    timings[name] = round(time.perf_counter() - t0, 1)
    console.print(f"[green]✓[/] {name} ({timings[name]:.0f}s)")


def _predict_split(run: Path, split_dir: Path, out: Path) -> None:
    predictor = load_predictor(run, "cpu")
    for case in case_dirs(split_dir):
        predict_case_dir(predictor, case, out)


def _viewer_entries(raw: Path, runs: dict[str, Path], results: Path, n: int = 3) -> list[dict]:
    """Copy a few meningioma cases (FLAIR, reference, both predictions) for the 3D viewer."""
    entries: list[dict[str, Any]] = []
    task_dir = raw / "meningioma"
    if not task_dir.is_dir():
        return entries
    split = next((s for s in list_splits(task_dir) if s.startswith("test_")), None)
    if split is None:
        return entries
    labels = pd.read_csv(task_dir / split / "labels.csv")
    for case in labels["case"].tolist()[:n]:
        dst = results / "viewer" / case
        dst.mkdir(parents=True, exist_ok=True)
        src = task_dir / split / case
        images = {}
        for seq in ("flair", "dwi_b1000"):
            shutil.copy(src / f"{seq}.nii.gz", dst / f"{seq}.nii.gz")
            images[seq] = f"viewer/{case}/{seq}.nii.gz"
        shutil.copy(src / "label.nii.gz", dst / "reference.nii.gz")
        preds = {}
        for model, folder in runs.items():
            p = folder / "predictions" / split / f"{case}.nii.gz"
            if p.exists():
                shutil.copy(p, dst / f"{model}.nii.gz")
                preds[model] = f"viewer/{case}/{model}.nii.gz"
        entries.append(
            {
                "task": "meningioma",
                "case": case,
                "site": str(labels.loc[labels["case"] == case, "site"].iloc[0]),
                "images": images,
                "reference": f"viewer/{case}/reference.nii.gz",
                "predictions": preds,
            }
        )
    return entries


def comparison_table(
    rows: pd.DataFrame,
    summary: pd.DataFrame,
    pretrained: str,
    n_boot: int,
    seed: int,
    origin: str = "",
) -> Table:
    """Pretrained vs scratch per task and site: primary metric with 95% CI and the paired gain
    (positive = pretrained better, in the metric's units). ``origin`` says in the caption which
    pretraining the arm started from."""
    table = Table(
        title="Out-of-domain few-shot results (synthetic stand-in benchmark)",
        caption=f"pretrained = {pretrained}{f' from {origin}' if origin else ''}; "
        "gain > 0: pretrained better",
    )
    for col in ("task", "site", "metric", "pretrained", SCRATCH, "gain [95% CI]", "separated"):
        table.add_column(col)
    for task in [t for t in TASKS if t in set(summary["task"])]:
        metric = TASKS[task].primary_metric
        sign = 1.0 if TASKS[task].higher_is_better else -1.0
        diffs = baseline_differences(rows, task, SCRATCH, n_boot, seed)
        for d in diffs[diffs["model"] == pretrained].itertuples():
            sel = summary[
                (summary.task == task) & (summary.site == d.site) & (summary.metric == metric)
            ]
            cell = {
                r.model: f"{r.value:.3f} [{r.ci_low:.3f}, {r.ci_high:.3f}]"
                for r in sel.itertuples()
            }
            lo, hi = sorted((sign * d.ci_low, sign * d.ci_high))
            table.add_row(
                task, str(d.site), metric, cell.get(pretrained, "-"), cell.get(SCRATCH, "-"),
                f"{sign * d.value:+.3f} [{lo:+.3f}, {hi:+.3f}]", "yes" if lo > 0 else "no",
            )  # fmt: skip
    return table


def run_demo(out: Path, s: DemoSettings, *, overwrite: bool = False) -> Path:
    """Run the whole demo into ``out``; returns the report's index.html."""
    console = Console()
    out = Path(out)
    if overwrite and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    timings = s.timings
    dist = init_distributed("cpu")
    torch.set_num_threads(2)
    raw, prep, runs_dir = out / "data", out / "prepared", out / "runs"
    t0 = time.perf_counter()
    if not (raw / "benchmark.json").exists():
        build_benchmark(raw, s.preset, s.seed)
    _stage(console, "synth", timings, t0)

    t0 = time.perf_counter()
    params = PreprocessParams(spacing=(s.spacing,) * 3)
    prepare(raw, prep, params=params, workers=s.workers)
    _stage(console, "prepare", timings, t0)

    pre_runs: dict[str, Path] = {}
    for objective in dict.fromkeys(s.objective_for(t) for t in s.tasks):
        t0 = time.perf_counter()
        pre = pre_runs[objective] = runs_dir / f"pretrain-{objective}"
        ps = s.pretrain_settings(objective)
        if not _reusable(pre, asdict(ps)):
            pretrain(prep, pre, ps, dist, resume=(pre / "checkpoints" / "last").exists())
        _stage(console, f"pretrain {objective}", timings, t0)

    all_rows = []
    pretrained = PRETRAINED
    for task in s.tasks:
        runs = {pretrained: runs_dir / f"{task}-pretrained", SCRATCH: runs_dir / f"{task}-scratch"}
        seg = TASKS[task].kind == "segmentation"
        steps = s.segmentation_steps if seg else s.finetune_steps
        pre = pre_runs[s.objective_for(task)]
        for model, run in runs.items():
            t0 = time.perf_counter()
            from_pretrained = model == pretrained
            slow_encoder = from_pretrained and not s.has_decoder(task)
            fs = FinetuneSettings(
                task=task, init=str(pre) if from_pretrained else "scratch",
                head=s.head_for(task),
                steps=steps, workers=s.workers, seed=s.seed,
                eval_every=max(5, steps // 10), patience=5, lr=s.finetune_lr,
                encoder_lr_scale=s.pretrained_encoder_lr_scale if slow_encoder else 1.0,
            )  # fmt: skip
            if not _reusable(run, asdict(fs)):
                finetune(prep, run, fs, dist, resume=(run / "checkpoints" / "last").exists())
            _stage(console, f"finetune {task} {model}", timings, t0)
            t0 = time.perf_counter()
            for split in list_splits(raw / task):
                if split == "train":
                    continue
                pred_dir = run / "predictions" / split
                _predict_split(run, raw / task / split, pred_dir)
                ev = evaluate_predictions(task, pred_dir, raw / task / split, model)
                all_rows.append(ev.rows)
            _stage(console, f"predict+evaluate {task} {model}", timings, t0)

    t0 = time.perf_counter()
    rows = pd.concat(all_rows, ignore_index=True)
    results = out / "results"
    results.mkdir(exist_ok=True)
    write_results(rows, results / "results.csv")
    summary = summarise(rows, n_boot=s.n_boot, seed=s.seed)
    summary.to_csv(results / "summary.csv", index=False)
    task_runs = {
        pretrained: runs_dir / "meningioma-pretrained",
        SCRATCH: runs_dir / "meningioma-scratch",
    }
    write_json_atomic(results / "viewer.json", _viewer_entries(raw, task_runs, results))
    console.print(
        comparison_table(rows, summary, pretrained, s.n_boot, s.seed, s.describe_pretrained())
    )
    _stage(console, "evaluate", timings, t0)

    from neurofm.report import build_report

    t0 = time.perf_counter()
    settings = {k: v for k, v in vars(s).items() if k != "timings"}
    run_info = {"title": "neurofm demo", "synthetic": True, "settings": settings}
    write_json_atomic(results / "run.json", {**run_info, "timings_s": timings})
    index = build_report(results, out / "report", overwrite=True, n_boot=s.n_boot, seed=s.seed)
    _stage(console, "report", timings, t0)
    write_json_atomic(
        out / "timings.json", {"timings_s": timings, "total_s": sum(timings.values())}
    )
    console.print(f"report: {index}")
    return index
