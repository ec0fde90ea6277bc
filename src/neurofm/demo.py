"""The main job, end to end on the embedded synthetic benchmark: a one-seed study.

synth (demo preset) -> prepare -> self-supervised pretraining -> few-shot finetuning of all three
tasks from the pretrained encoder and from scratch, beside the baselines (prior, a one-line hand
feature, a frozen random encoder with the same probe) -> prediction on every test split (raw
NIfTI in, outputs in the input geometry) -> evaluation -> a terminal table (in-domain and pooled
out-of-domain rows, case-bootstrap CIs, the paired gain over scratch and over the hand rule) and
the HTML report.

The choices (objectives, heads, steps, learning rates) come from the default study recipe
(``neurofm/study/recipes/fomo25-demo-round12.toml``), the same file ``neurofm study`` freezes;
the demo's options override single values for exploration. One demo run is one seed: read its
intervals as case-level only. ``neurofm study`` gives the seed-level answer. Stages are those of
:class:`neurofm.study.runner.SeedRun`: finished ones are reused, a finished run made with other
settings is refused (one-line error), ``overwrite`` starts afresh.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from rich.console import Console
from rich.table import Table

from neurofm.atomic import write_json_atomic
from neurofm.io.splits import list_splits
from neurofm.models import HeadKind, TaskModelConfig
from neurofm.results import summarise, write_results
from neurofm.study.analysis import OUT_OF_DOMAIN, compare, comparison_family, domain_of, estimates
from neurofm.study.grid import Grid
from neurofm.study.recipe import QUALITY_RECIPE, Recipe, load_recipe
from neurofm.study.study import GAIN, headline
from neurofm.tasks import TASKS
from neurofm.train.distributed import init_distributed

SCRATCH = "scratch"
PRETRAINED = "pretrained"  # the two model arms' names in results and report
DEMO_ARMS = (PRETRAINED, SCRATCH, "prior", "hand", "random")


@dataclass
class DemoSettings:
    """The demo's seed and options; None takes the value from the study recipe."""

    preset: str | None = None
    seed: int = 0
    quality: bool = False  # the quality preset's recipe (QUALITY_RECIPE) instead of the default
    spacing: float | None = None
    objective: str | None = None  # models that read a pooled embedding (brain age)
    decoder_objective: str | None = None  # meningioma and MIL infarct: models with a decoder
    infarct_head: HeadKind | None = None
    pretrain_steps: int | None = None
    finetune_steps: int | None = None
    segmentation_steps: int | None = None
    workers: int = 2
    n_boot: int | None = None
    tasks: tuple[str, ...] = tuple(TASKS)
    arms: tuple[str, ...] = DEMO_ARMS
    timings: dict[str, float] = field(default_factory=dict)

    def recipe(self, base: Recipe | None = None) -> Recipe:
        """The study recipe with this demo's overrides applied."""
        r = base or load_recipe(QUALITY_RECIPE if self.quality else None)
        tasks = dict(r.tasks)
        if self.infarct_head is not None:
            tasks["infarct"] = replace(tasks["infarct"], head=self.infarct_head)
        for task, spec in tasks.items():
            dense = TaskModelConfig(kind=TASKS[task].kind, head=spec.head).dense
            chosen = self.decoder_objective if dense else self.objective
            if chosen is not None:
                tasks[task] = replace(spec, objective=chosen)
        given: dict[str, Any] = {
            "preset": self.preset, "pretrain_steps": self.pretrain_steps,
            "finetune_steps": self.finetune_steps, "segmentation_steps": self.segmentation_steps,
            "n_boot": self.n_boot,
        }  # fmt: skip
        r = replace(r, tasks=tasks, **{k: v for k, v in given.items() if v is not None})
        return r if self.spacing is None else r.at_spacing(self.spacing)

    def describe_pretrained(self, recipe: Recipe) -> str:
        """Which pretraining each task's pretrained arm starts from (table caption, report)."""
        parts: dict[str, list[str]] = {}
        for task in self.tasks:
            parts.setdefault(recipe.task(task).objective, []).append(task)
        return "; ".join(f"{o} ({', '.join(t)})" for o, t in parts.items())


def demo_table(est: pd.DataFrame, comp: pd.DataFrame, labels: list[str], caption: str) -> Table:
    """Every arm per task: in-domain and out-of-domain value [95 % CI], and pretrained minus
    that arm out of domain with its CI and Holm-adjusted p (+ = pretrained better)."""
    table = Table(
        title="Few-shot results (synthetic stand-in benchmark, one seed)", caption=caption
    )
    for col in ("task", "arm", "metric", "in-domain", "out-of-domain", GAIN):
        table.add_column(col)
    for r in headline(est, comp, labels).to_dict("records"):
        table.add_row(r["task"], r["arm"], r["metric"], r["in-domain"], r["out-of-domain"], r[GAIN])
    return table


def _viewer_entries(raw: Path, runs: dict[str, Path], results: Path, n: int = 3) -> list[dict]:
    """Copy a few meningioma cases (FLAIR, reference, both predictions) for the 3D viewer."""
    entries: list[dict[str, Any]] = []
    task_dir = raw / "meningioma"
    if not task_dir.is_dir():
        return entries
    split = next((s for s in list_splits(task_dir) if s.startswith("test_")), None)
    if split is None:
        return entries
    labels = pd.read_csv(task_dir / split / "labels.csv", dtype=str)
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
            p = folder / split / f"{case}.nii.gz"
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


def run_demo(out: Path, s: DemoSettings, *, overwrite: bool = False) -> Path:
    """Run the whole demo into ``out``; returns the report's index.html."""
    from neurofm.report import build_report
    from neurofm.study.runner import SeedRun

    console = Console()
    out = Path(out)
    recipe = s.recipe()
    if overwrite and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    timings = s.timings
    torch.set_num_threads(2)
    dist = init_distributed("cpu")
    seed_run = SeedRun(out, s.seed, recipe, dist, console, s.workers, timings=timings)
    grid = Grid(s.arms, (recipe.backbone,), (None,), s.tasks)
    rows = seed_run.run(grid)
    rows["domain"] = domain_of(rows, {t: seed_run.source_sites(t) for t in s.tasks})

    t0 = time.perf_counter()
    results = out / "results"
    results.mkdir(exist_ok=True)
    tidy = rows.drop(columns=["seed", "domain"]).rename(columns={"arm": "model"})
    write_results(tidy, results / "results.csv")
    summarise(tidy, n_boot=recipe.n_boot, seed=s.seed).to_csv(results / "summary.csv", index=False)
    labels = list(s.arms)
    est = estimates(rows, labels, recipe.n_boot, seed=s.seed)
    pairs = comparison_family(s.tasks, s.arms, [], [], rows)
    comp = compare(rows, pairs, recipe.n_boot, seed=s.seed)
    est.to_csv(results / "estimates.csv", index=False)
    comp.to_csv(results / "comparisons.csv", index=False)
    preds = seed_run.prediction_dirs("meningioma", (PRETRAINED, SCRATCH), grid)
    write_json_atomic(results / "viewer.json", _viewer_entries(seed_run.raw, preds, results))
    caption = (
        f"pretrained = finetuned from {s.describe_pretrained(recipe)}; recipe {recipe.name} "
        f"{recipe.hash}; {OUT_OF_DOMAIN} pools the target sites; intervals over cases of one seed"
    )
    console.print(demo_table(est, comp, labels, caption))
    seed_run.record("evaluate", t0)

    t0 = time.perf_counter()
    run_info = {
        "title": "neurofm demo", "synthetic": True, "recipe": recipe.name,
        "recipe_hash": recipe.hash, "seed": s.seed, "arms": list(s.arms),
    }  # fmt: skip
    write_json_atomic(results / "run.json", {**run_info, "timings_s": timings})
    index = build_report(results, out / "report", overwrite=True, n_boot=recipe.n_boot, seed=s.seed)
    seed_run.record("report", t0)
    write_json_atomic(
        out / "timings.json", {"timings_s": timings, "total_s": round(sum(timings.values()), 1)}
    )
    console.print(f"report: {index}")
    return index
