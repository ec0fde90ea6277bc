"""How a task model combines its input sequences.

* ``early`` — the sequences are the channels of one input, the encoder's first convolution
  mixes them (the default; one encoder pass per case);
* ``late`` — one *shared* single-channel encoder sees each sequence on its own, and the pooled
  embeddings are concatenated in channel-slot order before the head (one encoder pass per
  sequence). A single-channel pretrained encoder is used as it was pretrained (no first-conv
  adaptation), and the head sees which sequence each feature came from.

Late fusion needs a pooled head (classification or regression): a segmentation decoder reads
the encoder's skip connections at every scale, and there is no single place to concatenate
them, so segmentation with late fusion is refused.
"""

from __future__ import annotations

from torch import Tensor

from neurofm.models.config import PoolKind
from neurofm.models.unet import Encoder, global_pool


def late_fusion_embed(encoder: Encoder, x: Tensor, pool: PoolKind) -> Tensor:
    """``(B, C, X, Y, Z)`` -> ``(B, C * D)``: every sequence through the same encoder alone,
    pooled, then concatenated per case (sequence 0's features first)."""
    b, c = x.shape[:2]
    per_sequence = x.reshape(b * c, 1, *x.shape[2:])
    pooled = global_pool(encoder(per_sequence)[-1], pool)
    return pooled.reshape(b, c * pooled.shape[1])
