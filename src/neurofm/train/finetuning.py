"""Few-shot adaptation of a pretrained (or fresh) backbone to one FOMO25 task.

Choices that matter with ~20 labelled cases, and why:

- early stopping on a held-out slice of the *training* cases (stratified for infarct), never on
  test data; the best validation checkpoint becomes the run's model;
- class imbalance: ``pos_weight = negatives / positives`` in the BCE loss (infarct), foreground
  oversampling of patches plus Dice + BCE (meningioma);
- brain age is regressed standardised (mean/std of the training ages, stored in the config);
- augmentation (flips, small affine, gamma, noise, bias field, thick slices) on every training
  sample, at the strength of the ``augment`` profile (``full`` unless a recipe says otherwise).

Pretrained weights come from a pretraining run (single-channel encoder and decoder); the first
convolution is adapted to the task's channel count by
:func:`neurofm.models.channels.load_encoder_weights` (see its docstring for the rule).
"""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.losses import DiceCELoss
from torch import Tensor, nn

from neurofm.data.augment import augment_profile
from neurofm.data.cache import PreparedDataset
from neurofm.data.patches import PatchDataset
from neurofm.errors import NeuroFMError
from neurofm.inference import infer
from neurofm.metrics import dice
from neurofm.models import (
    TaskModel,
    TaskModelConfig,
    build_task_model,
    configure_trainable,
    get_preset,
    load_encoder_weights,
)
from neurofm.postprocess import keep_largest_component
from neurofm.runconfig import FinetuneRunConfig, TargetScale, preprocess_from_dict
from neurofm.runfiles import (
    WEIGHTS,
    code_revision,
    load_pretrain_config,
    load_weights,
    write_model_files,
)
from neurofm.task_text import TASK_FILE_KEY, task_record
from neurofm.tasks import TaskSpec, get_task
from neurofm.train.batches import batch_stream
from neurofm.train.distributed import DistInfo
from neurofm.train.head_init import embed_all, init_head
from neurofm.train.loop import LoopConfig, LoopResult, seed_everything, train
from neurofm.train.runs import data_fingerprint
from neurofm.train.settings import FinetuneSettings


def train_subset(data: Path, task: str) -> Path:
    """The prepared training split: ``DATA/<task>/train`` or DATA itself."""
    data = Path(data)
    for cand in (data / task / "train", data):
        if (cand / "manifest.json").exists():
            return cand
    raise NeuroFMError(data, f"no prepared {task} training split (run `neurofm prepare` first)")


def split_cases(
    ids: list[str], labels: list[float] | None, shots: int | None, val_fraction: float, seed: int
) -> tuple[list[str], list[str]]:
    """Few-shot subsample (``shots`` cases, stratified by label when given), then hold out a
    validation slice of it (stratified, at least 2 cases and for labels one of each class)."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(ids))
    if labels is None:
        groups = [list(order)]
    else:
        groups = [[i for i in order if labels[i] == v] for v in sorted(set(labels))]
    n = len(ids) if shots is None else shots
    if n > len(ids):
        raise NeuroFMError(None, f"--shots {n} but only {len(ids)} training cases")
    if n < 4:
        raise NeuroFMError(None, f"--shots {n}: need at least 4 cases (train + validation)")
    picked: list[list[int]] = []
    for g in groups:
        k = round(n * len(g) / len(ids))
        picked.append(g[: max(1, k)] if labels is not None else g[:k])
    chosen = [i for g in picked for i in g]
    n_val = max(2, round(val_fraction * len(chosen)))
    val: list[int] = []
    if labels is not None:
        val = [g[0] for g in picked if len(g) > 1]
    rest = [i for i in rng.permutation(chosen) if i not in val]
    val += rest[: max(0, n_val - len(val))]
    train_ids = [ids[i] for i in chosen if i not in val]
    return sorted(train_ids), sorted(ids[i] for i in val)


def load_init(
    init: str, cfg: TaskModelConfig
) -> tuple[TaskModelConfig, dict[str, Tensor] | None, str]:
    """Backbone config and pretrained state from a pretraining run; ``cfg`` as is for scratch."""
    if init == "scratch":
        return cfg, None, "scratch"
    folder = Path(init)
    pre = load_pretrain_config(folder)
    backbone = replace(pre.backbone, in_channels=cfg.backbone.in_channels, out_channels=1)
    return replace(cfg, backbone=backbone), load_weights(folder), str(folder)


def _loss_fn(task: TaskSpec, pos_weight: float) -> nn.Module:
    if task.kind == "segmentation":
        return DiceCELoss(sigmoid=True)
    if task.kind == "classification":
        return nn.BCEWithLogitsLoss(pos_weight=torch.tensor([pos_weight]))
    return nn.SmoothL1Loss()


def validation_outputs(
    model: TaskModel, run: FinetuneRunConfig, data: PreparedDataset, ids: list[str]
) -> list[float | np.ndarray]:
    """Each case's :func:`~neurofm.inference.infer` output (the deployed inferer, so the best
    checkpoint is chosen with the numbers prediction will produce)."""
    task = get_task(run.task)
    outs: list[float | np.ndarray] = []
    for cid in ids:
        case = data.case(cid)
        chosen = task.select(case.channels, cid)
        pads = [case.pad_values[case.channels.index(c)] for c in chosen]
        image = data.read(cid, chosen)
        sizes = {"input_size": run.input_size, "patch_size": run.patch_size}
        outs.append(infer(model, task.kind, image, pads, **sizes, device=_device(model)))
    return outs


def validate(
    model: TaskModel, run: FinetuneRunConfig, data: PreparedDataset, ids: list[str]
) -> dict[str, float]:
    """Validation score on held-out training cases: BCE (infarct), MAE in years (brain age),
    soft Dice loss (meningioma, hard Dice logged beside it); lower is better for all three."""
    kind = get_task(run.task).kind
    outs = validation_outputs(model, run, data, ids)
    if kind == "segmentation":
        dices, soft = [], []
        for cid, out in zip(ids, outs, strict=True):
            prob = np.asarray(out, dtype=np.float64)
            ref = data.read_mask(cid).astype(np.float64)
            hard = prob >= run.threshold
            dices.append(
                dice(keep_largest_component(hard) if run.largest_component else hard, ref > 0)
            )
            soft.append(1.0 - (2.0 * (prob * ref).sum() + 1.0) / (prob.sum() + ref.sum() + 1.0))
        # the soft Dice loss keeps improving while the hard Dice is still 0 (nothing predicted
        # yet), so early stopping does not give up on a model that is learning
        return {"val_loss": float(np.mean(soft)), "val_dice": float(np.mean(dices))}
    o = np.asarray([float(v) for v in outs])
    if kind == "classification":
        y = np.asarray([float(data.case(c).label or 0.0) for c in ids])
        bce = F.binary_cross_entropy_with_logits(torch.tensor(o), torch.tensor(y))
        return {"val_loss": float(bce)}
    years = np.asarray([run.target.to_units(v) for v in o])
    ages = np.asarray([float(data.case(c).age or 0.0) for c in ids])
    return {"val_loss": float(np.mean(np.abs(years - ages)))}


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _init_head(
    model: TaskModel,
    data: PreparedDataset,
    task: TaskSpec,
    ids: list[str],
    s: FinetuneSettings,
    target: TargetScale,
    device: torch.device,
) -> str:
    """Standardise the head's input and fit it in closed form (:mod:`neurofm.train.head_init`)
    on each training case as it is plus ``s.probe_augmented`` copies augmented like the training
    samples, so the fit does not lean on what augmentation varies (resolution, bias field,
    contrast, noise). Without augmentation the copies would repeat the cases and are skipped."""
    n = len(ids)
    plain = PatchDataset(data, s.input_size, task=task.name, whole_volume=True, cases=ids)
    samples = [plain[i] for i in range(n)]
    augment = augment_profile(s.augment)
    if s.probe_augmented and augment is not None:
        augmented = PatchDataset(
            data, s.input_size, task=task.name, whole_volume=True, cases=ids,
            augment=augment, samples_per_epoch=n * s.probe_augmented, seed=s.seed,
        )  # fmt: skip
        samples += [augmented[i] for i in range(len(augmented))]
    model.to(device)
    emb = embed_all(model, [x["image"] for x in samples], device)
    y = np.asarray([float(x["target"][0]) for x in samples])
    if task.kind == "regression":
        y = target.standardise(y)
    groups = np.arange(len(samples)) % n
    return init_head(model.head, emb, y, task.kind, groups)


def finetune(
    data: Path, out: Path, s: FinetuneSettings, dist: DistInfo, *, resume: bool = False
) -> LoopResult:
    """Adapt to ``s.task``; writes the best model to ``out/model.safetensors`` + config.json."""
    task = get_task(s.task)  # a task file's task is known by its name from here on
    subset = train_subset(data, task.name)
    seed_everything(s.seed)  # model initialisation draws from the global RNG
    prepared = PreparedDataset(subset)
    ids = [c.case_id for c in prepared.cases]
    labels: list[float] | None = None
    if task.kind == "classification":
        if any(c.label is None for c in prepared.cases):
            raise NeuroFMError(subset, f"{task.name} training cases need labels")
        labels = [float(c.label or 0.0) for c in prepared.cases]
    train_ids, val_ids = split_cases(ids, labels, s.shots, s.val_fraction, s.seed)
    cfg = TaskModelConfig(
        get_preset(s.preset, in_channels=task.n_channels),
        kind=task.kind,
        head=s.head,
        adapter_rank=s.adapter_rank if s.mode == "adapter" else 0,
        pool=s.pool,
        mil_head_only=s.mil_head_only and s.head == "mil",
        fusion=s.fusion,
    )
    cfg, pretrained, init_name = load_init(s.init, cfg)
    model = build_task_model(cfg)
    if pretrained is not None:
        load_encoder_weights(
            model,
            pretrained,
            # late fusion: the shared encoder stays single-channel, as it was pretrained
            dst_channels=list(task.channel_slots) if cfg.fusion == "early" else None,
            include_decoder=cfg.dense,
            source=Path(s.init) / WEIGHTS,
            mix=s.input_mix,
        )
    elif s.mode != "full":
        raise NeuroFMError(None, f"--mode {s.mode} needs a pretrained --init (scratch + {s.mode})")
    configure_trainable(model, s.mode)
    target = TargetScale()
    pos_weight = 1.0
    train_cases = [prepared.case(c) for c in train_ids]
    if task.kind == "regression":
        ages = np.asarray([c.age for c in train_cases], dtype=np.float64)
        target = TargetScale(float(ages.mean()), float(ages.std() + 1e-6))
    if labels is not None:
        pos = sum(float(c.label or 0) for c in train_cases)
        pos_weight = float((len(train_cases) - pos) / max(pos, 1.0))
    seg = task.kind == "segmentation"
    head_init = "none (decoder head)"
    resuming = resume and (out / "checkpoints" / "last" / "train_state.pt").exists()
    if not cfg.dense and not resuming:  # a resumed run restores its head from the checkpoint
        head_init = _init_head(model, prepared, task, train_ids, s, target, dist.device)
    dataset = PatchDataset(
        prepared,
        s.patch_size if seg else s.input_size,
        task=task.name,
        whole_volume=not seg,
        foreground_prob=0.5 if seg else 0.0,
        samples_per_epoch=max(64, s.batch_size * 16),
        augment=augment_profile(s.augment),
        cases=train_ids,
        seed=s.seed,
    )
    loss_fn = _loss_fn(task, pos_weight).to(dist.device)

    def step(m: nn.Module, batch: dict[str, Any], gen: torch.Generator) -> tuple[Tensor, dict]:
        out = m(batch["image"])
        if seg:
            return loss_fn(out, batch["mask"]), {}
        y = batch["target"]
        if task.kind == "regression":
            y = target.standardise(y)
        return loss_fn(out.reshape(y.shape), y), {}

    run = FinetuneRunConfig(
        task=task.name,
        model=cfg,
        input_sequences=list(task.channel_slots),
        preprocess=preprocess_from_dict(prepared.params),
        input_size=(s.input_size,) * 3,
        patch_size=(s.patch_size,) * 3,
        target=target,
        largest_component=s.largest_component,
        init=init_name,
        head_init=head_init,
        recipe=asdict(s),
        train_cases=train_ids,
        val_cases=val_ids,
        code_revision=code_revision(),
        data_fingerprint=data_fingerprint([subset]),
        extra={TASK_FILE_KEY: text} if (text := task_record(task)) else {},
    )
    loop = LoopConfig(
        steps=s.steps,
        lr=s.lr,
        weight_decay=s.weight_decay,
        warmup_steps=s.warmup_steps,
        schedule=s.schedule,
        checkpoint_every=s.eval_every,
        log_every=s.log_every,
        eval_every=s.eval_every,
        monitor="val_loss",
        patience=s.patience if s.select == "best" else 0,
        lr_scales={"encoder.": s.encoder_lr_scale, "decoder.": s.encoder_lr_scale},
        seed=s.seed,
    )
    result = train(
        model,
        step,
        batch_stream(dataset, s.batch_size, s.workers, s.seed, dist, s.loader),
        loop,
        out,
        run.to_dict(),
        dist,
        evaluate=lambda m: validate(model, run, prepared, val_ids),
        resume=resume,
        describe=f"finetune {task.name} ({'pretrained' if pretrained else 'scratch'}, {s.mode})",
    )
    if dist.is_main:
        keep = "best" if s.select == "best" and result.best_step >= 0 else "last"
        final = replace(run, steps=result.steps, best_step=result.best_step, best=result.best)
        write_model_files(out, load_weights(out / "checkpoints" / keep), final)
    return result
