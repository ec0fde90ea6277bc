"""Load pretrained encoder weights into a model whose input has other channels.

Pretraining here sees one sequence at a time (1 input channel), while tasks take 2-4 sequences
(DESIGN.md §1). Only the first conv (``encoder.stem.conv.weight``, shape ``(F, C, k, k, k)``)
depends on the channel count, so only it is rebuilt, by this rule:

* each new channel ``j`` starts from a base kernel: the pretrained kernel of the same sequence
  when both sides name their channels and the name occurs in the checkpoint (names are
  normalised, so ``T1w`` matches ``t1``), otherwise the mean of the pretrained kernels over
  their channels;
* every base kernel is scaled by ``C_old / C_new``.

Why: the first layer sums its response over channels. If every input channel carries an image
of similar intensity ``x``, the new layer gives ``sum_j K_j * x * C_old / C_new``, which equals
the pretrained response ``sum_c W_c * x`` when the kernels are means, and exactly reproduces it
for single-channel pretraining (``C_old = 1``: each channel gets ``W / C_new``). So the
activation scale the rest of the network was trained on is kept. Identical names in the same
count copy kernels unchanged (factor 1), in the new order.

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
) -> tuple[Tensor, list[str]]:
    """Rebuild a first-conv kernel ``(F, C_old, ...)`` for ``n_dst`` channels (module rule).

    Returns the new kernel ``(F, n_dst, ...)`` and, per new channel, where it came from.
    """
    c_old = weight.shape[1]
    src, dst = _names(src_channels), _names(dst_channels)
    if src is not None and len(src) != c_old:
        raise NeuroFMError(
            None, f"src_channels {src} names {len(src)} channels, kernel has {c_old}"
        )
    if dst is not None and len(dst) != n_dst:
        raise NeuroFMError(None, f"dst_channels {dst} names {len(dst)} channels, model has {n_dst}")
    if (src is None or dst is None) and c_old == n_dst:
        return weight.clone(), [f"{i}<-{i}" for i in range(n_dst)]
    mean = weight.mean(dim=1)
    kernels, sources = [], []
    for j in range(n_dst):
        name = dst[j] if dst is not None else str(j)
        if src is not None and name in src:
            kernels.append(weight[:, src.index(name)])
            sources.append(f"{name}<-{name}")
        else:
            kernels.append(mean)
            sources.append(f"{name}<-mean")
    return torch.stack(kernels, dim=1) * (c_old / n_dst), sources


def load_encoder_weights(
    model: nn.Module,
    state_dict: Mapping[str, Tensor],
    *,
    src_channels: Sequence[str] | None = None,
    dst_channels: Sequence[str] | None = None,
    strict_other: bool = True,
    include_decoder: bool = True,
    source: str | Path = "state dict",
) -> LoadReport:
    """Copy pretrained encoder (and decoder) weights into ``model`` in place.

    ``state_dict`` is model-level (keys ``encoder.*``, optionally ``decoder.*``; projection and
    reconstruction heads are ignored), or encoder-level when no key starts with ``encoder.``
    (e.g. ``pretrain_model.encoder.state_dict()``). ``model`` is anything with an ``encoder``
    (:class:`~neurofm.models.heads.TaskModel`, ``UNet``, ``PretrainModel``). With
    ``strict_other`` every encoder tensor other than the first conv and adapters must be
    present with the same shape; without it mismatches keep their initialisation.
    ``source`` names the checkpoint in errors.
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
            value, sources = adapt_input_kernel(value, current.shape[1], src_channels, dst_channels)
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
