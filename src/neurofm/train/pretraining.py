"""Self-supervised pretraining run: objective + backbone + unlabeled sessions -> encoder weights.

Pretraining sees one sequence at a time (two for the modality-invariant objective), drawn at
random from whatever subset each session has, as in FOMO60K. An online linear probe (ridge
regression of brain age on pooled embeddings, 5-fold cross-validated) runs every
``probe_every`` steps when the prepared data has ``brain_age/train``: its MAE falling over
training is the evidence that representations improve.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import KFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

from neurofm.data.cache import PreparedDataset
from neurofm.data.patches import PatchDataset
from neurofm.errors import NeuroFMError
from neurofm.models import get_preset
from neurofm.pretrain.objectives import build_pretrain_model, get_objective
from neurofm.runconfig import PretrainRunConfig, preprocess_from_dict
from neurofm.runfiles import code_revision, load_weights, write_model_files
from neurofm.train.batches import batch_stream
from neurofm.train.distributed import DistInfo
from neurofm.train.head_init import embed_all
from neurofm.train.loop import LoopConfig, LoopResult, seed_everything, train
from neurofm.train.runs import data_fingerprint
from neurofm.train.settings import PretrainSettings


def pretrain_subset(data: Path) -> Path:
    """The prepared unlabeled subset: ``DATA/pretrain`` or DATA itself."""
    data = Path(data)
    for cand in (data / "pretrain", data):
        if (cand / "manifest.json").exists():
            return cand
    raise NeuroFMError(data, "no prepared pretraining data (run `neurofm prepare` first)")


def probe_inputs(dataset: PatchDataset) -> tuple[list[torch.Tensor], np.ndarray]:
    """Whole-volume images and ages of every case of the probe dataset."""
    images = [dataset[i]["image"] for i in range(len(dataset))]
    ages = [float(dataset.cases[dataset.case_index(i)].age or 0.0) for i in range(len(dataset))]
    return images, np.asarray(ages)


def probe_mae(embeddings: np.ndarray, ages: np.ndarray, seed: int = 0) -> float:
    """Cross-validated MAE (years) of a ridge regression of age on embeddings."""
    folds = KFold(n_splits=min(5, len(ages)), shuffle=True, random_state=seed)
    model = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-2, 4, 13)))
    pred = cross_val_predict(model, embeddings, ages, cv=folds)
    return float(np.mean(np.abs(pred - ages)))


def _probe_dataset(root: Path, size: int) -> PatchDataset | None:
    subset = root / "brain_age" / "train"
    if not (subset / "manifest.json").exists():
        return None
    data = PreparedDataset(subset)
    return PatchDataset(data, size, channels=["t1"], whole_volume=True)


def pretrain(
    data: Path, out: Path, settings: PretrainSettings, dist: DistInfo, *, resume: bool = False
) -> LoopResult:
    """Run self-supervised pretraining; writes ``out/model.safetensors`` + ``out/config.json``."""
    subset = pretrain_subset(data)
    seed_everything(settings.seed)  # model initialisation draws from the global RNG
    spec = get_objective(settings.objective)
    backbone = get_preset(settings.preset)  # the settings checked --patch against it
    model = build_pretrain_model(backbone, settings.objective)
    objective = spec.build()
    n_views = 2 if settings.objective == "modality" else 1
    prepared = PreparedDataset(subset)
    dataset = PatchDataset(
        prepared,
        settings.patch_size,
        n_random_channels=n_views,
        samples_per_epoch=max(256, settings.batch_size * dist.world_size * 20),
        seed=settings.seed,
    )
    run = PretrainRunConfig(
        objective=settings.objective,
        backbone=model.cfg,
        preprocess=preprocess_from_dict(prepared.params),
        recipe=asdict(settings),
        code_revision=code_revision(),
        data_fingerprint=data_fingerprint([subset]),
        world_size=dist.world_size,
    )
    probe = _probe_dataset(Path(data), settings.probe_size) if settings.probe_every else None

    def evaluate(m: nn.Module) -> dict[str, float]:
        assert probe is not None
        images, ages = probe_inputs(probe)
        return {"probe_mae": probe_mae(embed_all(model, images, dist.device), ages, settings.seed)}

    loop = LoopConfig(
        steps=settings.steps,
        lr=settings.lr,
        weight_decay=settings.weight_decay,
        warmup_steps=settings.warmup_steps,
        checkpoint_every=settings.checkpoint_every,
        log_every=settings.log_every,
        eval_every=settings.probe_every if probe is not None else 0,
        monitor="probe_mae",
        seed=settings.seed,
    )
    result = train(
        model,
        objective,
        batch_stream(
            dataset, settings.batch_size, settings.workers, settings.seed, dist, settings.loader
        ),
        loop,
        out,
        run.to_dict(),
        dist,
        evaluate=evaluate if probe is not None else None,
        resume=resume,
        describe=f"pretrain {settings.objective}",
    )
    if dist.is_main:
        final = load_weights(out / "checkpoints" / "last")
        write_model_files(out, final, replace(run, steps=result.steps))
    return result
