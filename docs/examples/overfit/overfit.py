"""Can the demo's models learn a handful of training cases? (issue 17, point 1)

Runs :func:`neurofm.train.finetuning.finetune` unchanged, with the settings the study builds
(:func:`neurofm.study.runner.finetune_settings` on the recipe file), except for three things a
memorisation check needs, patched in here and nowhere else:

- the validation cases ARE the training cases (``split_cases`` is replaced), so the logged
  ``val_loss`` is the training-set score of the deployed inferer (:func:`neurofm.inference.infer`);
- early stopping is off (``patience=0``) and ``--steps`` replaces the recipe's step count;
- ``--no-augment`` turns off training augmentation and the augmented copies of the head's
  closed-form fit;
- ``--head-bias B`` (diagnostic of the output-bias floor, docs/model-quality.md) starts the
  dense head's voxel-scoring bias (MIL or segmentation 1x1x1 conv) at ``B`` instead of
  PyTorch's default ``U(-1/sqrt(8), 1/sqrt(8))``;
- ``--batch-dice`` (diagnostic of the empty-patch Dice term) computes the segmentation loss's
  Dice over the whole batch (MONAI ``DiceCELoss(batch=True)``) instead of per patch.

After training it scores the written model on the same cases (AUROC for infarct, MAE and
Pearson r for brain age, Dice for meningioma) and prints one JSON line.

    .venv/bin/python docs/examples/overfit/overfit.py --task infarct --init scratch \
        --cases 6 --steps 150 --no-augment --out /work/runs/overfit_infarct_scratch
"""

from __future__ import annotations

import argparse
import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from monai.losses import DiceCELoss
from scipy.stats import pearsonr
from sklearn.metrics import roc_auc_score

import neurofm.train.finetuning as ft
from neurofm.data.cache import PreparedDataset
from neurofm.metrics import dice
from neurofm.predict import load_predictor
from neurofm.study.grid import Unit
from neurofm.study.recipe import load_recipe
from neurofm.study.runner import finetune_settings
from neurofm.tasks import get_task
from neurofm.train.distributed import DistInfo

SEED0 = Path("/work/runs/demo_seed0")
OBJECTIVE = {"infarct": "mae", "meningioma": "mae", "brain_age": "contrastive"}


def pick_cases(data: PreparedDataset, task: str, n: int) -> list[str]:
    """The first ``n`` training cases in id order; for infarct half positive, half negative."""
    cases = sorted(data.cases, key=lambda c: c.case_id)
    if get_task(task).kind != "classification":
        return [c.case_id for c in cases[:n]]
    pos = [c.case_id for c in cases if (c.label or 0) > 0.5]
    neg = [c.case_id for c in cases if (c.label or 0) <= 0.5]
    return sorted(pos[: n // 2] + neg[: n - n // 2])


def score(out: Path, data: PreparedDataset, ids: list[str]) -> dict[str, float]:
    """Training-set metric of the finished run, with the deployed inferer."""
    pred = load_predictor(out, device="cpu")
    kind = pred.task.kind
    outs = ft.validation_outputs(pred.model, pred.config, data, ids)  # type: ignore[arg-type]
    if kind == "segmentation":
        d = [
            dice(np.asarray(o) >= pred.config.threshold, data.read_mask(c) > 0)
            for c, o in zip(ids, outs, strict=True)
        ]
        return {"train_dice": float(np.mean(d)), "train_dice_min": float(np.min(d))}
    o = np.asarray([float(v) for v in outs])
    if kind == "classification":
        y = np.asarray([float(data.case(c).label or 0) for c in ids])
        return {"train_auroc": float(roc_auc_score(y, o)), "logits": o.round(2).tolist()}
    years = np.asarray([pred.config.target.to_units(v) for v in o])
    ages = np.asarray([float(data.case(c).age or 0) for c in ids])
    return {
        "train_mae": float(np.mean(np.abs(years - ages))),
        "train_r": float(pearsonr(years, ages)[0]),
        "mae_of_mean": float(np.mean(np.abs(ages - ages.mean()))),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", required=True, choices=sorted(OBJECTIVE))
    p.add_argument("--init", default="scratch", choices=["scratch", "pretrained"])
    p.add_argument("--cases", type=int, default=6)
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--eval-every", type=int, default=25)
    p.add_argument("--lr", type=float, default=None, help="override the recipe's lr")
    p.add_argument("--encoder-lr-scale", type=float, default=None)
    p.add_argument("--no-augment", action="store_true")
    p.add_argument("--head-bias", type=float, default=None)
    p.add_argument("--batch-dice", action="store_true")
    p.add_argument("--root", type=Path, default=SEED0)
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args()
    torch.set_num_threads(1)
    recipe = load_recipe(Path(__file__).parents[3] / "src/neurofm/study/recipes/fomo25-demo.toml")
    init = "scratch"
    if a.init == "pretrained":
        init = str(a.root / "runs" / f"pretrain-{OBJECTIVE[a.task]}")
    unit = Unit(
        arm=a.init, task=a.task, backbone=recipe.backbone, shots=None,
        init="scratch" if a.init == "scratch" else OBJECTIVE[a.task],
        recipe_backbone=recipe.backbone,
    )  # fmt: skip
    s = finetune_settings(recipe, unit, seed=0, workers=0, init=init)
    s = replace(s, steps=a.steps, patience=0, eval_every=a.eval_every, warmup_steps=10)
    if a.lr is not None:
        s = replace(s, lr=a.lr)
    if a.encoder_lr_scale is not None:
        s = replace(s, encoder_lr_scale=a.encoder_lr_scale)
    if a.no_augment:
        s = replace(s, probe_augmented=0)
        ft.AugmentConfig = lambda: None  # type: ignore[assignment,misc,return-value]
    if a.head_bias is not None:
        build = ft.build_task_model

        def build_with_bias(cfg: ft.TaskModelConfig) -> ft.TaskModel:
            model = build(cfg)
            with torch.no_grad():
                model.head.bias.fill_(a.head_bias)  # type: ignore[operator]
            return model

        ft.build_task_model = build_with_bias  # type: ignore[assignment]
    if a.batch_dice:
        ft._loss_fn = lambda *_a: DiceCELoss(sigmoid=True, batch=True)  # type: ignore[assignment]
    prepared = a.root / "prepared"
    data = PreparedDataset(ft.train_subset(prepared, a.task))
    ids = pick_cases(data, a.task, a.cases)
    ft.split_cases = lambda *_args: (list(ids), list(ids))  # type: ignore[assignment]
    if a.out.exists():
        shutil.rmtree(a.out)
    result = ft.finetune(prepared, a.out, s, DistInfo(0, 1, 0, torch.device("cpu")))
    log = [json.loads(x) for x in (a.out / "metrics.jsonl").read_text().splitlines()]
    train = [r["loss"] for r in log if r.get("phase") == "train" and "loss" in r]
    val = [r["val_loss"] for r in log if r.get("phase") == "val"]
    row = {
        "task": a.task, "init": a.init, "augment": not a.no_augment, "cases": len(ids),
        "steps": result.steps, "lr": s.lr, "encoder_lr_scale": s.encoder_lr_scale,
        "head_bias": a.head_bias, "batch_dice": a.batch_dice,
        "train_loss_first": train[0], "train_loss_last": train[-1],
        "train_loss_min": min(train), "val_on_train_first": val[0], "val_on_train_last": val[-1],
        "best_step": result.best_step, "seconds": round(result.seconds),
        **score(a.out, data, ids),
    }  # fmt: skip
    print(json.dumps(row))
    with (Path(__file__).parent / "results.jsonl").open("a") as f:
        f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
