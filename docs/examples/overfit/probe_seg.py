"""Segmentation probability inside the tumour, in brain background and in air for the overfit
meningioma runs (docs/model-quality.md, section 1).

    .venv/bin/python docs/examples/overfit/probe_seg.py RUN [RUN ...]
"""

from __future__ import annotations

import sys

import numpy as np
import torch

import neurofm.train.finetuning as ft
from neurofm.data.cache import PreparedDataset
from neurofm.predict import load_predictor


def main() -> None:
    torch.set_num_threads(1)
    d = PreparedDataset("/work/runs/demo_seed0/prepared/meningioma/train")
    for run in sys.argv[1:]:
        p = load_predictor(run, device="cpu")
        ids = p.config.train_cases
        outs = ft.validation_outputs(p.model, p.config, d, ids)
        for cid, o in zip(ids, outs, strict=True):
            prob = np.asarray(o)
            c = d.case(cid)
            ref = d.read_mask(cid) > 0
            first = p.task.select(c.channels, cid)[0]
            img = d.read(cid, [first])[0]
            head = np.abs(img - c.pad_values[c.channels.index(first)]) > 1e-3
            print(
                run, cid, "sum p", round(float(prob.sum()), 1), "sum ref", int(ref.sum()),
                "p tumour", round(float(prob[ref].mean()), 3),
                "p brain bg", round(float(prob[head & ~ref].mean()), 3),
                "p air", round(float(prob[~head].mean()), 3),
                "p99 non-tumour", round(float(np.percentile(prob[~ref], 99)), 3),
            )  # fmt: skip


if __name__ == "__main__":
    main()
