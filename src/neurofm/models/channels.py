"""Load pretrained encoder weights into a model whose input has other channels.

Pretraining here sees one sequence at a time (1 input channel), while tasks take 2-4 sequences
(docs/tasks.md). Only the first conv (``encoder.stem.conv.weight``, shape ``(F, C, k, k, k)``)
depends on the channel count, so only it is rebuilt, by this rule:

* a new channel whose sequence occurs in the checkpoint (both sides name their channels; names
  are normalised, so ``T1w`` matches ``t1``) gets that pretrained kernel unchanged;
* if no channel matched, the first new channel (the task's primary sequence, e.g. T1 for brain
  age, DWI for infarct) gets the sum of the pretrained kernels over their channels: for
  single-channel pretraining that is the pretrained kernel itself;
* every other new channel starts at zero.

An explicit ``mix`` (``{channel: weight}``, e.g. ``{"dwi_b1000": 1, "adc": -1}``) replaces that
rule: each named channel gets its weight times the (summed) pretrained kernel, every other
channel zero. Since the first conv is linear, the encoder then starts by seeing that weighted
sum of the sequences, e.g. ``z(DWI) - z(ADC)``, the contrast in which an acute infarct stands
out; under the default rule the task model starts from DWI alone and must grow the other
channels' kernels from zero within a few hundred steps.

Why the default: at the first step the task model computes exactly what the pretrained encoder
computes on the primary (or name-matched) sequences; the other sequences are added by
finetuning, since a zero kernel still receives gradients. The earlier rule (the kernel divided
over all channels) fed the encoder the *average* of the sequences, and averaging T1 with T2
cancels the grey/white/CSF contrast the encoder learned: a ridge probe of brain age on those
embeddings fell to chance (MAE 17.3 years, vs 9.5 from T1 alone, demo data, contrastive
encoder).

Everything else must match: a missing or differently shaped encoder weight is an architecture
mismatch and a one-line :class:`NeuroFMError` naming the checkpoint. Heads, adapters and (when
absent or shaped differently) the decoder keep their fresh initialisation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from neurofm.errors import NeuroFMError
from neurofm.models.unet import Encoder
from neurofm.sequences import try_normalise_sequence

FIRST_CONV = "encoder." + Encoder.FIRST_CONV
_ADAPTERS = "encoder.adapters."


@dataclass(frozen=True)
class LoadReport:
    """What :func:`load_encoder_weights` did, key by key."""

    source: str
    loaded: tuple[str, ...]
    channel_sources: tuple[str, ...]
    kept_initialised: tuple[str, ...]
    ignored: tuple[str, ...]

    def summary(self) -> str:
        """One line for logs."""
        return (
            f"{self.source}: loaded {len(self.loaded)} tensors, first-conv channels "
            f"[{', '.join(self.channel_sources)}], {len(self.kept_initialised)} kept initialised, "
            f"{len(self.ignored)} checkpoint tensors ignored"
        )


def _names(channels: Sequence[str] | None) -> list[str] | None:
    return None if channels is None else [try_normalise_sequence(c) or c for c in channels]


def adapt_input_kernel(
    weight: Tensor,
    n_dst: int,
    src_channels: Sequence[str] | None = None,
    dst_channels: Sequence[str] | None = None,
    mix: Mapping[str, float] | None = None,
) -> tuple[Tensor, list[str]]:
    """Rebuild a first-conv kernel ``(F, C_old, ...)`` for ``n_dst`` channels (module rule;
    ``mix`` weights the pretrained kernel per named channel instead).

    Returns the new kernel ``(F, n_dst, ...)`` and, per new channel, where it came from.
    """
    c_old = weight.shape[1]
    src, dst = _names(src_channels), _names(dst_channels)
    if mix:
        return _mixed_kernel(weight, n_dst, dst, mix)
    if src is not None and len(src) != c_old:
        raise NeuroFMError(
            None, f"src_channels {src} names {len(src)} channels, kernel has {c_old}"
        )
    if dst is not None and len(dst) != n_dst:
        raise NeuroFMError(None, f"dst_channels {dst} names {len(dst)} channels, model has {n_dst}")
    if (src is None or dst is None) and c_old == n_dst:
        return weight.clone(), [f"{i}<-{i}" for i in range(n_dst)]
    matched = [j for j in range(n_dst) if src is not None and dst is not None and dst[j] in src]
    kernels, sources = [], []
    for j in range(n_dst):
        name = dst[j] if dst is not None else str(j)
        if j in matched:
            assert src is not None
            kernels.append(weight[:, src.index(name)])
            sources.append(f"{name}<-{name}")
        elif j == 0 and not matched:
            kernels.append(weight.sum(dim=1))
            sources.append(f"{name}<-sum" if c_old > 1 else f"{name}<-pretrained")
        else:
            kernels.append(torch.zeros_like(weight[:, 0]))
            sources.append(f"{name}<-zero")
    return torch.stack(kernels, dim=1), sources


def _mixed_kernel(
    weight: Tensor, n_dst: int, dst: list[str] | None, mix: Mapping[str, float]
) -> tuple[Tensor, list[str]]:
    if dst is None or len(dst) != n_dst:
        raise NeuroFMError(None, "an input mix needs the model's channel names")
    wanted = {try_normalise_sequence(k) or k: float(v) for k, v in mix.items()}
    unknown = sorted(set(wanted) - set(dst))
    if unknown:
        raise NeuroFMError(None, f"input mix names {unknown}, not among the channels {dst}")
    base = weight.sum(dim=1)
    kernels = [base * wanted.get(name, 0.0) for name in dst]
    sources = [
        f"{name}<-pretrained*{wanted[name]:g}" if name in wanted else f"{name}<-zero"
        for name in dst
    ]
    return torch.stack(kernels, dim=1), sources


def load_encoder_weights(
    model: nn.Module,
    state_dict: Mapping[str, Tensor],
    *,
    src_channels: Sequence[str] | None = None,
    dst_channels: Sequence[str] | None = None,
    strict_other: bool = True,
    include_decoder: bool = True,
    source: str | Path = "state dict",
    mix: Mapping[str, float] | None = None,
) -> LoadReport:
    """Copy pretrained encoder (and decoder) weights into ``model`` in place.

    ``state_dict`` is model-level (keys ``encoder.*``, optionally ``decoder.*``; projection and
    reconstruction heads are ignored), or encoder-level when no key starts with ``encoder.``
    (e.g. ``pretrain_model.encoder.state_dict()``). ``model`` is anything with an ``encoder``
    (:class:`~neurofm.models.heads.TaskModel`, ``UNet``, ``PretrainModel``). With
    ``strict_other`` every encoder tensor other than the first conv and adapters must be
    present with the same shape; without it mismatches keep their initialisation.
    ``source`` names the checkpoint in errors; ``mix`` is :func:`adapt_input_kernel`'s.
    """
    where = str(source)
    if not isinstance(getattr(model, "encoder", None), Encoder):
        raise NeuroFMError(where, f"{type(model).__name__} has no neurofm encoder to load into")
    ckpt = dict(state_dict)
    if not any(k.startswith("encoder.") for k in ckpt):
        ckpt = {f"encoder.{k}": v for k, v in ckpt.items()}
    if FIRST_CONV not in ckpt:
        raise NeuroFMError(where, f"no encoder weights (no {FIRST_CONV!r} among {len(ckpt)} keys)")
    target = model.state_dict()
    new: dict[str, Tensor] = {}
    kept: list[str] = []
    problems: list[str] = []
    sources: list[str] = []
    for key, current in target.items():
        value = ckpt.get(key)
        is_encoder = key.startswith("encoder.") and not key.startswith(_ADAPTERS)
        loadable = key.startswith("encoder.") or (include_decoder and key.startswith("decoder."))
        if key == FIRST_CONV:
            value = ckpt[FIRST_CONV]
            if value.shape[0] != current.shape[0] or value.shape[2:] != current.shape[2:]:
                problems.append(
                    f"{key} (checkpoint {tuple(value.shape)} vs model {tuple(current.shape)})"
                )
                continue
            value, sources = adapt_input_kernel(
                value, current.shape[1], src_channels, dst_channels, mix
            )
        if loadable and value is not None and value.shape == current.shape:
            new[key] = value.to(device=current.device, dtype=current.dtype)
        elif is_encoder and strict_other:
            shape = "missing" if value is None else f"checkpoint {tuple(value.shape)}"
            problems.append(f"{key} ({shape} vs model {tuple(current.shape)})")
        else:
            kept.append(key)
    unexpected = [k for k in ckpt if k.startswith("encoder.") and k not in target]
    if strict_other:
        problems += [f"{k} (not in model)" for k in unexpected]
    if problems:
        shown = "; ".join(problems[:3]) + (
            f"; and {len(problems) - 3} more" if len(problems) > 3 else ""
        )
        raise NeuroFMError(where, f"encoder architecture mismatch with the model: {shown}")
    model.load_state_dict({**target, **new}, strict=True)
    return LoadReport(
        source=where,
        loaded=tuple(new),
        channel_sources=tuple(sources),
        kept_initialised=tuple(kept),
        ignored=tuple(k for k in ckpt if k not in new),
    )
