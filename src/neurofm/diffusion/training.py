"""Training a class-conditional diffusion model on a task's labelled cases.

The standard DDPM objective (predict the added noise, mean squared error) with three choices:

* timesteps are drawn uniformly from ``[0, t_max * steps)``, the range the classifier evaluates
  (:mod:`neurofm.diffusion.classify`); the model is never asked to generate, so capacity spent
  on the nearly-pure-noise end would be wasted on a CPU budget;
* labels are replaced by the null class with probability ``class_dropout``, so the same network
  also learns the unconditional denoiser (classifier-free-guidance style);
* no early stopping: the rule has no loss that a handful of validation cases could track
  reliably, so the run trains for ``steps`` and keeps the last weights, on all labelled training
  cases (the discriminative models hold a few out to pick a checkpoint; the test splits are the
  same).

The run folder is a standard finetuned run: ``model.safetensors`` and a ``config.json`` whose
``model`` is the shared backbone (``TaskModelConfig``: encoder/decoder architecture) and whose
``head`` is ``"diffusion"``, with the diffusion model, noise schedule and classification rule
under ``diffusion``; :func:`neurofm.predict.load_predictor` dispatches on that ``head``.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from neurofm.data.augment import AugmentConfig
from neurofm.data.cache import PreparedDataset
from neurofm.data.patches import PatchDataset
from neurofm.diffusion.schedule import NoiseSchedule
from neurofm.diffusion.settings import DiffusionSettings
from neurofm.errors import NeuroFMError
from neurofm.models import TaskModelConfig, get_preset, load_encoder_weights
from neurofm.models.diffusion_unet import DiffusionUNet, DiffusionUNetConfig
from neurofm.runconfig import FinetuneRunConfig, preprocess_from_dict
from neurofm.runfiles import WEIGHTS, code_revision, load_weights, write_model_files
from neurofm.tasks import get_task
from neurofm.train.batches import batch_stream
from neurofm.train.distributed import DistInfo
from neurofm.train.finetuning import load_init, train_subset
from neurofm.train.loop import LoopConfig, LoopResult, seed_everything, train
from neurofm.train.runs import data_fingerprint

HEAD = "diffusion"


def diffusion_section(cfg: DiffusionUNetConfig, s: DiffusionSettings) -> dict[str, Any]:
    """What ``config.json`` records under ``diffusion``: model, schedule and the default rule."""
    schedule = NoiseSchedule(s.schedule, s.diffusion_steps)
    rule = s.classifier()
    return {
        "model": cfg.to_dict(),
        "schedule": schedule.to_dict(),
        "classifier": {"k": rule.k, "t": rule.t, "t_max": rule.t_max, "seed": rule.seed},
        "probability": "Jeffreys-smoothed vote share over K x T draws",
    }


def diffusion_loss(
    model: DiffusionUNet,
    net: nn.Module,
    x0: Tensor,
    labels: Tensor,
    schedule: NoiseSchedule,
    t_max: float,
    gen: torch.Generator,
) -> Tensor:
    """Noise-prediction MSE of one batch; ``net`` is ``model`` or its DDP wrapper."""
    top = max(1, int(t_max * schedule.steps))
    t = torch.randint(0, top, (x0.shape[0],), generator=gen).to(x0.device)
    noise = torch.randn(x0.shape, generator=gen).to(x0.device, x0.dtype)
    y = model.drop_classes(labels.long(), gen)
    return F.mse_loss(net(schedule.q_sample(x0, t, noise), t, y), noise)


def finetune_diffusion(
    data: Path, out: Path, s: DiffusionSettings, dist: DistInfo, *, resume: bool = False
) -> LoopResult:
    """Train the diffusion classifier; writes ``out/model.safetensors`` + ``config.json``."""
    task = get_task(s.task)
    subset = train_subset(data, s.task)
    seed_everything(s.seed)
    prepared = PreparedDataset(subset)
    cases = list(prepared.cases)
    if any(c.label is None for c in cases):
        raise NeuroFMError(subset, f"{task.name} training cases need labels")
    backbone_cfg, pretrained, init_name = load_init(
        s.init, TaskModelConfig(get_preset(s.preset, in_channels=task.n_channels))
    )
    cfg = DiffusionUNetConfig(
        backbone_cfg.backbone, n_classes=2, embed_dim=s.embed_dim, class_dropout=s.class_dropout
    )
    model = DiffusionUNet(cfg)
    if pretrained is not None:
        load_encoder_weights(
            model, pretrained, dst_channels=list(task.channel_slots), include_decoder=True,
            source=Path(s.init) / WEIGHTS,
        )  # fmt: skip
    ids = [c.case_id for c in cases]
    dataset = PatchDataset(
        prepared, s.input_size, task=s.task, whole_volume=True,
        samples_per_epoch=max(64, s.batch_size * 16), augment=AugmentConfig(), cases=ids,
        seed=s.seed,
    )  # fmt: skip
    schedule = NoiseSchedule(s.schedule, s.diffusion_steps)

    def step(m: nn.Module, batch: dict[str, Any], gen: torch.Generator) -> tuple[Tensor, dict]:
        labels = batch["target"].reshape(-1)
        return diffusion_loss(model, m, batch["image"], labels, schedule, s.t_max, gen), {}

    run = FinetuneRunConfig(
        task=task.name,
        model=backbone_cfg,
        input_sequences=list(task.channel_slots),
        preprocess=preprocess_from_dict(prepared.params),
        input_size=(s.input_size,) * 3,
        patch_size=(s.input_size,) * 3,
        init=init_name,
        head_init="none (diffusion head)",
        recipe=asdict(s),
        train_cases=sorted(ids),
        code_revision=code_revision(),
        data_fingerprint=data_fingerprint([subset]),
        extra={"head": HEAD, HEAD: diffusion_section(cfg, s)},
    )
    loop = LoopConfig(
        steps=s.steps, lr=s.lr, weight_decay=s.weight_decay, warmup_steps=s.warmup_steps,
        checkpoint_every=s.checkpoint_every, log_every=s.log_every, seed=s.seed,
    )  # fmt: skip
    result = train(
        model,
        step,
        batch_stream(dataset, s.batch_size, s.workers, s.seed, dist),
        loop,
        out,
        run.to_dict(),
        dist,
        resume=resume,
        describe=f"diffusion {task.name} ({'pretrained' if pretrained else 'scratch'})",
    )
    if dist.is_main:
        run.steps = result.steps
        run.best = dict(result.last)
        run.extra[HEAD]["train_seconds"] = result.seconds
        write_model_files(out, load_weights(out / "checkpoints" / "last"), run)
    return result
