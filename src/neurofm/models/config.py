"""Architecture configs as frozen dataclasses: one U-Net family, task models built on it.

A config is the whole description of an architecture, so a checkpoint stores ``to_dict()`` as
JSON and ``from_dict`` rebuilds the same module; unknown or ill-typed fields are a one-line
:class:`~neurofm.errors.NeuroFMError`, never a silently different model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal, get_args

from neurofm.errors import NeuroFMError
from neurofm.tasks import TaskKind

Norm = Literal["instance", "batch"]
Activation = Literal["leakyrelu", "relu", "gelu"]
HeadKind = Literal["linear", "mlp", "mil"]
PoolKind = Literal["avg", "max", "avgmax"]
FusionKind = Literal["early", "late"]
"""How sequences are combined (:mod:`neurofm.models.fusion`)."""


@dataclass(frozen=True)
class UNetConfig:
    """A 3D residual-encoder U-Net (nnU-Net ResEnc layout).

    Stage 0 is a 3x3x3 stem conv (stride ``stem_stride``) followed by ``blocks[0]`` residual
    blocks; stage ``i > 0`` starts with a stride-2 residual block, so stage ``i`` works at
    ``1 / (stem_stride * 2**i)`` of the input size. The decoder mirrors the encoder with a
    transposed conv, skip concatenation and one conv-norm-act per stage (nnU-Net ResEnc
    default), plus one transposed conv back to full resolution when ``stem_stride == 2``; no
    deep supervision. ``stem_stride=2`` cuts FLOPs about 8x (the CPU ``tiny`` preset uses it).

    Input spatial sizes must be multiples of :attr:`divisor` and at least ``2 * divisor``
    (instance norm needs more than one voxel at the bottleneck).
    """

    in_channels: int = 1
    out_channels: int = 1
    features: tuple[int, ...] = (16, 32, 64, 128)
    blocks: tuple[int, ...] = (1, 1, 1, 1)
    stem_stride: int = 1
    norm: Norm = "instance"
    activation: Activation = "leakyrelu"

    def __post_init__(self) -> None:
        where = "UNetConfig"
        if self.in_channels < 1 or self.out_channels < 1:
            raise NeuroFMError(where, "in_channels and out_channels must be >= 1")
        if not self.features or any(f < 1 for f in self.features):
            raise NeuroFMError(where, f"features must be positive, got {self.features}")
        if len(self.blocks) != len(self.features) or any(b < 1 for b in self.blocks):
            raise NeuroFMError(
                where, f"blocks {self.blocks} needs one count >= 1 per stage {self.features}"
            )
        if self.stem_stride not in (1, 2):
            raise NeuroFMError(where, f"stem_stride must be 1 or 2, got {self.stem_stride}")
        if self.norm not in get_args(Norm):
            raise NeuroFMError(where, f"norm {self.norm!r} not in {get_args(Norm)}")
        if self.activation not in get_args(Activation):
            raise NeuroFMError(
                where, f"activation {self.activation!r} not in {get_args(Activation)}"
            )

    @property
    def stages(self) -> int:
        return len(self.features)

    @property
    def divisor(self) -> int:
        """Input spatial sizes must be multiples of this: the total downsampling factor."""
        return self.stem_stride * 2 ** (self.stages - 1)

    @property
    def embed_dim(self) -> int:
        """Width of the pooled bottleneck embedding."""
        return self.features[-1]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UNetConfig:
        _check_keys(cls, data)
        values = dict(data)
        try:
            for key in ("features", "blocks"):
                if key in values:
                    values[key] = tuple(int(v) for v in values[key])
            if "stem_stride" in values:
                values["stem_stride"] = int(values["stem_stride"])
        except (TypeError, ValueError) as exc:
            raise NeuroFMError(
                cls.__name__, f"features/blocks must be integer lists: {exc}"
            ) from exc
        return cls(**values)


@dataclass(frozen=True)
class TaskModelConfig:
    """A backbone plus a head for one task kind.

    ``head`` is the pooled-embedding head of classification/regression (segmentation always
    uses the U-Net decoder + a 1x1x1 conv), or ``mil`` for classification: the decoder + 1x1x1
    conv score every voxel and the case logit is the mean of the ``mil_top`` highest scores
    (multiple-instance learning: "is there a lesion anywhere" is a local question);
    ``mil_head_only`` ranks only voxels inside the head (some input channel above its air
    value), so air outside the head can never be the evidence (off in runs made before it).
    ``adapter_rank > 0`` inserts zero-initialised residual bottleneck adapters of that width
    after every encoder stage (needed for the ``adapter`` training mode); 0 means no adapters.
    ``pool`` is how the bottleneck becomes the head's embedding
    (:func:`~neurofm.models.unet.global_pool`).
    """

    backbone: UNetConfig = field(default_factory=UNetConfig)
    kind: TaskKind = "classification"
    head: HeadKind = "linear"
    head_hidden: int = 128
    head_dropout: float = 0.0
    adapter_rank: int = 0
    pool: PoolKind = "avg"
    mil_top: int = 16
    mil_head_only: bool = False
    fusion: FusionKind = "early"

    def __post_init__(self) -> None:
        where = "TaskModelConfig"
        if self.head == "mil" and (self.kind != "classification" or self.mil_top < 1):
            raise NeuroFMError(where, "head 'mil' is for classification, with mil_top >= 1")
        if self.pool not in get_args(PoolKind):
            raise NeuroFMError(where, f"pool {self.pool!r} not in {get_args(PoolKind)}")
        if self.kind not in get_args(TaskKind):
            raise NeuroFMError(where, f"kind {self.kind!r} not in {get_args(TaskKind)}")
        if self.head not in get_args(HeadKind):
            raise NeuroFMError(where, f"head {self.head!r} not in {get_args(HeadKind)}")
        if self.fusion not in get_args(FusionKind):
            raise NeuroFMError(where, f"fusion {self.fusion!r} not in {get_args(FusionKind)}")
        if self.fusion == "late" and self.dense:
            raise NeuroFMError(
                where, "late fusion needs a pooled head (classification/regression, not mil)"
            )
        if self.head_hidden < 1 or not 0.0 <= self.head_dropout < 1.0 or self.adapter_rank < 0:
            raise NeuroFMError(
                where, "head_hidden must be >= 1, head_dropout in [0, 1), adapter_rank >= 0"
            )

    @property
    def dense(self) -> bool:
        """True when the model has a decoder (segmentation, MIL classification)."""
        return self.kind == "segmentation" or self.head == "mil"

    @property
    def embed_dim(self) -> int:
        """Width of the pooled embedding the head reads (late fusion: one per input channel)."""
        per_input = self.backbone.embed_dim * (2 if self.pool == "avgmax" else 1)
        return per_input * (self.backbone.in_channels if self.fusion == "late" else 1)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskModelConfig:
        _check_keys(cls, data)
        values = dict(data)
        if "backbone" in values:
            values["backbone"] = UNetConfig.from_dict(values["backbone"])
        return cls(**values)


def _check_keys(cls: type, data: dict[str, Any]) -> None:
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise NeuroFMError(cls.__name__, f"unknown field(s) {unknown} (known: {sorted(known)})")
