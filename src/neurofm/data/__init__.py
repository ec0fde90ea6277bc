"""Data for training: preprocessing, the chunked prepared cache, `prepare`, patch loading.

Tiers: :mod:`~neurofm.data.preprocess` and :mod:`~neurofm.data.augment` are pure functions;
:mod:`~neurofm.data.cache` (``PreparedDataset``), :mod:`~neurofm.data.prepare` and
:mod:`~neurofm.data.patches` (``PatchDataset``, ``make_loader``) hold state. Nothing is imported
here so that ``import neurofm.data.cache`` stays free of torch.
"""
