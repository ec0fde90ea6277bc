"""Start a scalar head where a linear probe would end: standardise, then fit in closed form.

With ~20 labelled cases a head trained from a random start by a few hundred SGD steps learns
almost nothing before early stopping (demo data: brain-age validation MAE stayed at the
mean-predictor level, ~19 years, for a frozen contrastive encoder whose ridge probe reaches 9.5).
So before any finetuning step the head's embedding standardisation is set from the training
cases and, for a linear head, its weights are the scikit-learn fit on those embeddings —
``RidgeCV`` for regression (standardised targets), ``LogisticRegressionCV`` with balanced class
weights for classification — the "linear probe, then finetune" recipe (LP-FT, Kumar et al.
2022). Scratch and pretrained models get the same treatment, so comparisons stay fair.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.linear_model import LogisticRegressionCV, RidgeCV
from torch import Tensor, nn

from neurofm.models.heads import PooledHead, TaskModel


@torch.no_grad()
def embed_all(model: TaskModel, images: list[Tensor], device: torch.device) -> np.ndarray:
    """Pooled embeddings ``(N, D)`` of whole-volume images ``(C, X, Y, Z)``, in eval mode."""
    was_training = model.training
    model.eval()
    out = [model.embed(x[None].to(device))[0].cpu().numpy() for x in images]
    model.train(was_training)
    return np.stack(out).astype(np.float64)


@torch.no_grad()
def init_head(head: nn.Module, embeddings: np.ndarray, targets: np.ndarray, kind: str) -> str:
    """Set ``head``'s standardisation from ``embeddings`` and, for a linear head, its weights
    from a cross-validated linear fit of ``targets`` (standardised ages or 0/1 labels).

    Returns a one-line description for the run log.
    """
    if not isinstance(head, PooledHead):
        raise TypeError(f"init_head needs a PooledHead, got {type(head).__name__}")
    center = embeddings.mean(axis=0)
    scale = embeddings.std(axis=0)
    scale = np.where(scale > 1e-6 * max(float(scale.max()), 1e-12), scale, 1.0)
    head.center.copy_(torch.as_tensor(center, dtype=head.center.dtype))
    head.scale.copy_(torch.as_tensor(scale, dtype=head.scale.dtype))
    linear = head.net[-1]
    hidden = any(isinstance(m, nn.Linear) for m in list(head.net)[:-1])
    if hidden or not isinstance(linear, nn.Linear):
        return "head standardised (MLP head: weights stay randomly initialised)"
    z = (embeddings - center) / scale
    folds = max(2, min(5, len(targets) // 2))
    if kind == "classification":
        labels = targets.astype(int)
        folds = min(folds, int(np.bincount(labels, minlength=2).min()))
        if folds < 2:
            return "head standardised (too few cases of a class for a closed-form fit)"
        clf = LogisticRegressionCV(
            Cs=np.logspace(-3, 2, 11), cv=folds, class_weight="balanced", max_iter=5000
        ).fit(z, labels)
        w, b, what = clf.coef_[0], float(clf.intercept_[0]), f"logistic C={clf.C_[0]:.3g}"
    else:
        reg = RidgeCV(alphas=np.logspace(-2, 5, 15), cv=folds).fit(z, targets)
        w, b, what = reg.coef_, float(reg.intercept_), f"ridge alpha={reg.alpha_:.3g}"
    linear.weight.copy_(torch.as_tensor(w, dtype=linear.weight.dtype).view_as(linear.weight))
    linear.bias.fill_(b)
    return f"head initialised by {what} on {len(targets)} training embeddings"
