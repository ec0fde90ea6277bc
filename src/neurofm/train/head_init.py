"""Start a scalar head where a linear probe would end: standardise, then fit in closed form.

With ~20 labelled cases a head trained from a random start by a few hundred SGD steps learns
almost nothing before early stopping (demo data: brain-age validation MAE stayed at the
mean-predictor level, ~19 years, for a frozen contrastive encoder whose ridge probe reaches 9.5).
So before any finetuning step the head's embedding standardisation is set from the training
cases and, for a linear head, its weights are the scikit-learn fit on those embeddings —
``RidgeCV`` for regression (standardised targets), logistic regression with balanced class
weights (C chosen by cross-validated log-loss) for classification — the "linear probe, then
finetune" recipe (LP-FT, Kumar et al. 2022). Scratch and pretrained models get the same
treatment, so comparisons stay fair.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression, RidgeCV
from sklearn.metrics import log_loss
from sklearn.model_selection import GroupKFold, StratifiedGroupKFold
from torch import Tensor, nn

from neurofm.models.heads import PooledHead, TaskModel
from neurofm.pretrain.objectives import PretrainModel


@torch.no_grad()
def embed_all(
    model: TaskModel | PretrainModel, images: list[Tensor], device: torch.device
) -> np.ndarray:
    """Pooled embeddings ``(N, D)`` of whole-volume images ``(C, X, Y, Z)``, in eval mode
    (``model.embed``: the global-average-pooled bottleneck)."""
    was_training = model.training
    model.eval()
    out = [model.embed(x[None].to(device))[0].cpu().numpy() for x in images]
    model.train(was_training)
    return np.stack(out).astype(np.float64)


def _logistic_c(z: np.ndarray, labels: np.ndarray, groups: np.ndarray, folds: int) -> float:
    """Inverse regularisation strength with the lowest cross-validated log-loss.

    Written out rather than ``LogisticRegressionCV``, whose arguments and fitted attributes change
    across the scikit-learn versions this project accepts (>= 1.4).
    """
    cv = StratifiedGroupKFold(folds, shuffle=True, random_state=0)
    splits = list(cv.split(z, labels, groups))
    best, best_loss = 1.0, np.inf
    for c in np.logspace(-3, 2, 11):
        prob = np.zeros(len(labels))
        for fit, held in splits:
            m = LogisticRegression(C=c, class_weight="balanced", max_iter=5000)
            prob[held] = m.fit(z[fit], labels[fit]).predict_proba(z[held])[:, 1]
        loss = log_loss(labels, prob, labels=[0, 1])
        if loss < best_loss - 1e-12:
            best, best_loss = float(c), loss
    return best


@torch.no_grad()
def init_head(
    head: nn.Module,
    embeddings: np.ndarray,
    targets: np.ndarray,
    kind: str,
    groups: np.ndarray | None = None,
) -> str:
    """Set ``head``'s standardisation from ``embeddings`` and, for a linear head, its weights
    from a cross-validated linear fit of ``targets`` (standardised ages or 0/1 labels).

    ``groups`` names the case of each row when a case contributes several (augmented) rows:
    cross-validation folds then keep a case's rows together. Returns a one-line description for
    the run log.
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
    groups = np.arange(len(targets)) if groups is None else np.asarray(groups)
    n_cases = len(np.unique(groups))
    folds = max(2, min(5, n_cases // 2))
    if kind == "classification":
        labels = targets.astype(int)
        per_class = [len(np.unique(groups[labels == v])) for v in (0, 1)]
        folds = min(folds, min(per_class))
        if folds < 2:
            return "head standardised (too few cases of a class for a closed-form fit)"
        c = _logistic_c(z, labels, groups, folds)
        clf = LogisticRegression(C=c, class_weight="balanced", max_iter=5000).fit(z, labels)
        w, b, what = clf.coef_[0], float(clf.intercept_[0]), f"logistic C={c:.3g}"
    else:
        splits = list(GroupKFold(folds).split(z, targets, groups))
        reg = RidgeCV(alphas=np.logspace(-2, 5, 15), cv=splits).fit(z, targets)
        w, b, what = reg.coef_, float(reg.intercept_), f"ridge alpha={reg.alpha_:.3g}"
    linear.weight.copy_(torch.as_tensor(w, dtype=linear.weight.dtype).view_as(linear.weight))
    linear.bias.fill_(b)
    return f"head initialised by {what} on {len(targets)} embeddings of {n_cases} training cases"
