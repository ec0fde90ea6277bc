"""Run a study's grid for one seed: benchmark -> prepare -> pretrain -> finetune/baselines ->
predict -> evaluate, each stage reused when it already finished with the same settings.

Everything a seed makes lives under ``OUT/seeds/<seed>/``; a unit's scored rows are written
atomically to ``rows/<label>__<task>.csv`` as its last step, so a grid killed at any point and
run again redoes only unfinished units (training runs themselves resume from their last
checkpoint) and gives the same rows.
"""

from __future__ import annotations

import filecmp
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd
from rich.console import Console

from neurofm.atomic import write_text_atomic
from neurofm.baselines import fit_baseline
from neurofm.baselines.random_features import random_features_settings
from neurofm.data.cache import PreparedDataset
from neurofm.data.prepare import prepare
from neurofm.errors import NeuroFMError
from neurofm.evaluate import evaluate_predictions
from neurofm.io.splits import list_splits
from neurofm.models import TaskModelConfig
from neurofm.predict import load_predictor, predict_case_dir
from neurofm.pretrain.objectives import get_objective
from neurofm.runfiles import load_run_config
from neurofm.study.analysis import ROW_COLUMNS
from neurofm.study.grid import Grid, Unit
from neurofm.study.recipe import Recipe
from neurofm.synth import build_benchmark
from neurofm.tasks import get_task
from neurofm.train.distributed import DistInfo
from neurofm.train.finetuning import FinetuneSettings, finetune, split_cases, train_subset
from neurofm.train.pretraining import PretrainSettings, pretrain
from neurofm.train.runs import case_dirs


def reusable(run: Path, settings: PretrainSettings | FinetuneSettings) -> bool:
    """True when ``run`` finished with ``settings``; a finished run with others is refused.

    A setting the run's config does not list (added to neurofm after the run was made) counts
    as its default, which is what the run was trained with. The pretraining run a finetuning
    started from counts as the same when its weights are byte for byte the same file content,
    wherever it lies (a study folder that reuses another's runs through links or copies).
    """
    if not (run / "model.safetensors").exists():
        return False
    made = dict(load_run_config(run).recipe)
    recipe, default = asdict(settings), asdict(type(settings)())
    was = {k: made.get(k, default[k]) for k in recipe}
    diff = {
        k: (was[k], v)
        for k, v in recipe.items()
        if was[k] != v and not (k == "init" and same_weights(str(was[k]), str(v)))
    }
    if diff:
        shown = ", ".join(f"{k} {a!r} (now {b!r})" for k, (a, b) in sorted(diff.items())[:3])
        raise NeuroFMError(run, f"finished with other settings: {shown}; rerun with --overwrite")
    return True


def same_weights(a: str, b: str) -> bool:
    """True when run folders ``a`` and ``b`` hold weight files of identical content."""
    wa, wb = Path(a) / "model.safetensors", Path(b) / "model.safetensors"
    return wa.is_file() and wb.is_file() and filecmp.cmp(wa, wb, shallow=False)


def pretrain_settings(
    recipe: Recipe, objective: str, backbone: str, seed: int, workers: int
) -> PretrainSettings:
    """The recipe's pretraining run with ``objective`` on ``backbone``."""
    reconstructs = get_objective(objective).reconstruction
    return PretrainSettings(
        objective=objective, preset=backbone, steps=recipe.pretrain_steps,
        batch_size=recipe.reconstruction_batch if reconstructs else recipe.contrastive_batch,
        workers=workers, seed=seed, probe_every=max(1, recipe.pretrain_steps // 4),
        patch_size=recipe.pretrain_patch,
    )  # fmt: skip


def finetune_settings(
    recipe: Recipe, unit: Unit, seed: int, workers: int, init: str
) -> FinetuneSettings:
    """The recipe's finetuning of ``unit`` from ``init`` (a run folder or ``scratch``).

    A pretrained encoder under a pooled head trains at ``pretrained_encoder_lr_scale`` of the
    head's rate; models with a decoder, and scratch models, train everything at the full rate.
    The task's adaptation mode and input mix apply to a pretrained start only (a frozen random
    encoder is the ``random`` arm, not scratch); its weight selection to every arm.
    """
    spec = get_task(unit.task)
    chosen = recipe.task(unit.task)
    head, pool = chosen.head, chosen.pool
    dense = TaskModelConfig(kind=spec.kind, head=head).dense
    steps = recipe.segmentation_steps if spec.kind == "segmentation" else recipe.finetune_steps
    slow = init != "scratch" and not dense
    return FinetuneSettings(
        task=unit.task, init=init, shots=unit.shots, preset=unit.backbone, head=head, pool=pool,
        mil_head_only=chosen.mil_head_only, largest_component=chosen.largest_component,
        steps=steps, workers=workers, seed=seed, eval_every=max(5, steps // 10),
        patience=recipe.patience, lr=recipe.lr, augment=recipe.augment,
        schedule=recipe.lr_schedule,
        encoder_lr_scale=recipe.pretrained_encoder_lr_scale if slow else 1.0,
        mode=chosen.mode if init != "scratch" else "full", select=chosen.select,
        input_mix=dict(chosen.input_mix) if chosen.input_mix and init != "scratch" else None,
        input_size=recipe.finetune_input_size, patch_size=recipe.finetune_patch,
    )  # fmt: skip


@dataclass
class SeedRun:
    """One seed of a study: where its files go and how it trains."""

    root: Path
    seed: int
    recipe: Recipe
    dist: DistInfo
    console: Console
    workers: int = 2
    data: Path | None = None
    """User data in the task layout; None builds the synthetic benchmark for this seed."""
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds per stage that did work in this process (reused stages are not listed)."""

    @property
    def raw(self) -> Path:
        return self.data if self.data is not None else self.root / "data"

    @property
    def prepared(self) -> Path:
        return self.root / "prepared"

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    def record(self, name: str, t0: float) -> None:
        """Note a finished stage's time and print it."""
        self.timings[name] = round(time.perf_counter() - t0, 1)
        self.console.print(f"[green]✓[/] seed {self.seed}: {name} ({self.timings[name]:.0f}s)")

    def prepare_data(self) -> None:
        """Synthesise (per seed) and prepare the data, unless already done."""
        t0 = time.perf_counter()
        if self.data is None and not (self.raw / "benchmark.json").exists():
            build_benchmark(self.raw, self.recipe.preset, self.seed, shift=self.recipe.shift)
        self.record("synth", t0)
        t0 = time.perf_counter()
        prepare(
            self.raw, self.prepared, params=self.recipe.preprocess_params(), workers=self.workers
        )
        self.record("prepare", t0)

    def pretrain_run(self, objective: str, backbone: str) -> Path:
        """The seed's pretraining run for ``objective`` on ``backbone`` (trained if needed)."""
        run = self.runs / f"pretrain-{objective}-{backbone}"
        ps = pretrain_settings(self.recipe, objective, backbone, self.seed, self.workers)
        if not reusable(run, ps):
            t0 = time.perf_counter()
            pretrain(
                self.prepared, run, ps, self.dist, resume=(run / "checkpoints" / "last").exists()
            )
            self.record(f"pretrain {objective} ({backbone})", t0)
        return run

    def model_run(self, unit: Unit) -> Path:
        """The finetuned run of a model arm (scratch, pretrained, an objective, random)."""
        if unit.init in ("scratch", "random"):
            base = self.settings(unit, "scratch")
        else:
            base = self.settings(unit, str(self.pretrain_run(unit.init, unit.backbone)))
        run = self.runs / unit.run_name
        fs = base
        if unit.init == "random":
            init_dir = self.runs / f"random-init-{unit.task}-{unit.backbone}"
            if (init_dir / "model.safetensors").exists():
                fs = FinetuneSettings(**{**asdict(base), "init": str(init_dir), "mode": "probe"})
            else:
                fs = random_features_settings(base, init_dir, self.prepared)
        if not reusable(run, fs):
            t0 = time.perf_counter()
            finetune(
                self.prepared, run, fs, self.dist, resume=(run / "checkpoints" / "last").exists()
            )
            self.record(f"finetune {unit.task} {unit.label}", t0)
        return run

    def settings(self, unit: Unit, init: str) -> FinetuneSettings:
        """The recipe's finetune settings for ``unit`` starting from ``init``."""
        return finetune_settings(self.recipe, unit, self.seed, self.workers, init)

    def train_cases(self, unit: Unit) -> list[str] | None:
        """The few-shot subset the model arms of ``unit``'s shot count train on (None: all)."""
        if unit.shots is None:
            return None
        spec = get_task(unit.task)
        prepared = PreparedDataset(train_subset(self.prepared, unit.task))
        ids = [c.case_id for c in prepared.cases]
        labels = (
            [float(c.label or 0.0) for c in prepared.cases]
            if spec.kind == "classification" else None
        )  # fmt: skip
        train, val = split_cases(ids, labels, unit.shots, 0.25, self.seed)
        return train + val

    def test_splits(self, task: str) -> list[str]:
        return [s for s in list_splits(self.raw / task) if s != "train"]

    def prediction_root(self, unit: Unit) -> Path:
        """Where ``unit``'s predictions go, one folder per test split."""
        if unit.is_baseline:
            return self.root / "baselines" / unit.label.replace("/", "_") / unit.task
        return self.runs / unit.run_name / "predictions"

    def prediction_dirs(self, task: str, arms: tuple[str, ...], grid: Grid) -> dict[str, Path]:
        """Prediction roots of ``task``'s units whose label is one of ``arms``."""
        units = [u for u in grid.units(self.recipe) if u.task == task and u.label in arms]
        return {u.label: self.prediction_root(u) for u in units}

    def unit_rows(self, unit: Unit) -> pd.DataFrame:
        """Scored rows of one unit on every test split (computed once, then read back)."""
        done = self.root / "rows" / f"{unit.label.replace('/', '_')}__{unit.task}.csv"
        if done.exists():
            return pd.read_csv(done, dtype={"case": str, "site": str, "arm": str})
        t0 = time.perf_counter()
        pred_root = self.prediction_root(unit)
        if unit.is_baseline:
            baseline = fit_baseline(
                unit.arm, unit.task, self.raw / unit.task / "train", self.train_cases(unit)
            )
        else:
            predictor = load_predictor(self.model_run(unit), "cpu")
        frames = []
        for split in self.test_splits(unit.task):
            split_dir, pred_dir = self.raw / unit.task / split, pred_root / split
            if unit.is_baseline:
                baseline.predict_split(split_dir, pred_dir, overwrite=True)
            else:
                for case in case_dirs(split_dir):
                    predict_case_dir(predictor, case, pred_dir)
            frames.append(evaluate_predictions(unit.task, pred_dir, split_dir, unit.label).rows)
        rows = pd.concat(frames, ignore_index=True).rename(columns={"model": "arm"})
        rows.insert(0, "seed", self.seed)
        rows = rows[list(ROW_COLUMNS)]
        done.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(done, rows.to_csv(index=False))
        self.record(f"predict+evaluate {unit.task} {unit.label}", t0)
        return rows

    def source_sites(self, task: str) -> set[str]:
        """Sites of the task's training cases: their test cases are in-domain."""
        labels = pd.read_csv(self.raw / task / "train" / "labels.csv", dtype=str)
        if "site" not in labels.columns:
            raise NeuroFMError(self.raw / task / "train" / "labels.csv", "needs a site column")
        return set(labels["site"])

    def check_recipe(self) -> None:
        """Refuse a seed folder made with another recipe (its scored rows would be stale)."""
        stamp = self.root / "recipe-hash.txt"
        if stamp.exists():
            made = stamp.read_text().strip()
            if made != self.recipe.hash:
                raise NeuroFMError(
                    self.root, f"finished with other settings (recipe {made}, now "
                    f"{self.recipe.hash}); rerun with --overwrite or use a new folder",
                )  # fmt: skip
            return
        self.root.mkdir(parents=True, exist_ok=True)
        write_text_atomic(stamp, self.recipe.hash + "\n")

    def run(self, grid: Grid) -> pd.DataFrame:
        """Every unit of the grid for this seed; rows of all of them."""
        self.check_recipe()
        self.prepare_data()
        frames = [self.unit_rows(u) for u in grid.units(self.recipe)]
        return pd.concat(frames, ignore_index=True)
