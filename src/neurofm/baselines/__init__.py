"""Baselines every results table carries beside the models (docs/baselines.md).

``prior`` and ``hand`` are fitted on a raw training split and predict any split
(:func:`fit_baseline`, :meth:`Baseline.predict_split`); the random-features probe is a
finetuning arm (:mod:`neurofm.baselines.random_features`, imported on demand since it needs
torch).
"""

from neurofm.baselines.baseline import BASELINES, Baseline, fit_baseline

__all__ = ["BASELINES", "Baseline", "fit_baseline"]
