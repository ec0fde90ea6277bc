"""Self-supervised pretraining pieces: masking, losses, objectives and the pretraining model.

The training loop lives elsewhere; it only needs ``OBJECTIVES``, ``build_pretrain_model`` and
``loss, logs = objective(model, batch, generator)``.
"""

from neurofm.pretrain.losses import ProjectionHead, info_nce, masked_reconstruction_loss
from neurofm.pretrain.masking import random_patch_mask
from neurofm.pretrain.objectives import (
    OBJECTIVES,
    Contrastive,
    Hybrid,
    MaskedAutoencoding,
    ModalityInvariant,
    Objective,
    ObjectiveSpec,
    PretrainModel,
    PretrainOutput,
    ViewAugment,
    build_pretrain_model,
    get_objective,
)

__all__ = [
    "OBJECTIVES",
    "Contrastive",
    "Hybrid",
    "MaskedAutoencoding",
    "ModalityInvariant",
    "Objective",
    "ObjectiveSpec",
    "PretrainModel",
    "PretrainOutput",
    "ProjectionHead",
    "ViewAugment",
    "build_pretrain_model",
    "get_objective",
    "info_nce",
    "masked_reconstruction_loss",
    "random_patch_mask",
]
