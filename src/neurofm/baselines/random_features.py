"""Random-features baseline: the scratch arm's randomly initialised encoder, frozen, same probe.

``finetune`` refuses ``--init scratch --mode probe`` (a frozen random encoder is rarely what a
user means), so this baseline is spelled as a pretraining run whose weights are the random
initialisation: :func:`write_random_init` builds the task model exactly as ``finetune`` builds
the scratch arm's (same seed, preset, head and pooling, hence the same random weights) and saves
it as a ``kind: pretrain`` run with ``objective: random``. Finetuning from it with ``--mode
probe`` then freezes that encoder and trains what the scratch arm's probe would train (the
pooled head after its closed-form fit, or decoder + head for dense models). Every input channel
keeps its own random first-layer kernel, because the saved run has the task's channel count.

The gap between this arm and a pretrained probe is what pretraining taught the encoder; the gap
to scratch is what training the encoder on the few labelled cases bought.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from neurofm.data.cache import PreparedDataset
from neurofm.errors import NeuroFMError
from neurofm.models import TaskModelConfig, build_task_model, get_preset
from neurofm.runconfig import PretrainRunConfig, preprocess_from_dict
from neurofm.runfiles import code_revision, write_model_files
from neurofm.tasks import get_task
from neurofm.train.finetuning import train_subset
from neurofm.train.loop import seed_everything
from neurofm.train.runs import refuse_existing_outputs
from neurofm.train.settings import FinetuneSettings

RANDOM_OBJECTIVE = "random"


def write_random_init(
    out: str | Path, scratch: FinetuneSettings, data: str | Path, *, overwrite: bool = False
) -> Path:
    """Save the random weights that the scratch arm ``scratch`` on prepared ``data`` starts from
    as a pretraining run (recording ``data``'s preprocessing, like a real pretraining run)."""
    if scratch.init != "scratch":
        raise NeuroFMError(None, f"random features need a scratch arm, not init {scratch.init!r}")
    task = get_task(scratch.task)
    folder = Path(out)
    refuse_existing_outputs([folder / "config.json", folder / "model.safetensors"], overwrite)
    params = PreparedDataset(train_subset(Path(data), task.name)).params
    cfg = TaskModelConfig(
        get_preset(scratch.preset, in_channels=task.n_channels),
        kind=task.kind,
        head=scratch.head,
        pool=scratch.pool,
    )
    seed_everything(scratch.seed)  # as finetune does right before building the model
    model = build_task_model(cfg)
    config = PretrainRunConfig(
        objective=RANDOM_OBJECTIVE,
        backbone=cfg.backbone,
        preprocess=preprocess_from_dict(params),
        input_sequences=list(task.channel_slots),
        input_rule="random initialisation of the scratch task model (random-features baseline)",
        recipe={"task": task.name, "preset": scratch.preset, "head": scratch.head,
                "pool": scratch.pool, "seed": scratch.seed},
        code_revision=code_revision(),
        steps=0,
    )  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    write_model_files(folder, model.state_dict(), config)
    return folder


def random_features_settings(
    scratch: FinetuneSettings, init_dir: str | Path, data: str | Path, *, overwrite: bool = False
) -> FinetuneSettings:
    """Write the random init into ``init_dir`` and return the scratch arm's settings turned into
    a frozen-encoder probe of it (same task, head, pooling, steps, learning rate and seed)."""
    folder = write_random_init(init_dir, scratch, data, overwrite=overwrite)
    return replace(scratch, init=str(folder), mode="probe")
