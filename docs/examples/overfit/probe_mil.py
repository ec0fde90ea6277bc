"""Where the infarct MIL case logits come from: the head bias against each case's top-16 voxel
scores (docs/model-quality.md, section 1).

    .venv/bin/python docs/examples/overfit/probe_mil.py [/work/runs/overfit_infarct_scratch]
"""

from __future__ import annotations

import sys

import numpy as np
import torch
from scipy.ndimage import distance_transform_edt

from neurofm.data.cache import PreparedDataset
from neurofm.inference import fit_to_shape
from neurofm.predict import load_predictor


def main() -> None:
    torch.set_num_threads(1)
    run = sys.argv[1] if len(sys.argv) > 1 else "/work/runs/overfit_infarct_scratch"
    p = load_predictor(run, device="cpu")
    m = p.model.eval()
    d = PreparedDataset("/work/runs/demo_seed0/prepared/infarct/train")
    print("head bias", round(float(m.head.bias.detach()[0]), 4))  # type: ignore[index]
    for cid in p.config.train_cases:
        c = d.case(cid)
        ch = p.task.select(c.channels, cid)
        pads = [c.pad_values[c.channels.index(s)] for s in ch]
        x = torch.from_numpy(fit_to_shape(d.read(cid, ch), p.config.input_size, pads))[None]
        with torch.no_grad():
            out = m.head(m.decoder(m.encoder(x)))[0, 0]  # type: ignore[misc]
        v, i = out.flatten().topk(p.config.model.mil_top)
        idx = np.array(np.unravel_index(i.numpy(), out.shape)).T
        # inside the head: any sequence differs from its air value (one sequence alone can sit
        # at its clip floor inside the head)
        diff = np.abs(x[0].numpy() - np.asarray(pads, dtype=np.float32)[:, None, None, None])
        in_head = (diff > 1e-3).any(axis=0)
        n_in = int(sum(in_head[tuple(j)] for j in idx))
        to_head = distance_transform_edt(~in_head)  # voxels from the nearest in-head voxel
        far = max(float(to_head[tuple(j)]) for j in idx)
        print(
            cid, "label", c.label, "max", round(float(v[0]), 3), "top-k mean",
            round(float(v.mean()), 3), "median", round(float(out.median()), 3),
            "top-k voxels inside head", n_in, "farthest from head (voxels)", round(far, 1),
        )  # fmt: skip


if __name__ == "__main__":
    main()
