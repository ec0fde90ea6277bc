"""What the model sees: per task and split, the channel order and intensity range of the
prepared (normalised) inputs, source training cases beside target-site test cases.

    .venv/bin/python docs/examples/overfit/inputs.py [/work/runs/demo_seed0/prepared]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from neurofm.data.cache import PreparedDataset
from neurofm.tasks import get_task


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "/work/runs/demo_seed0/prepared")
    print("task split site n shape channel-slots(chosen) | per channel: p1 p50 p99 pad head-mean")
    for task in ("infarct", "meningioma", "brain_age"):
        spec = get_task(task)
        for split in ("train", "test", "test_sitea", "test_siteb"):
            data = PreparedDataset(root / task / split)
            cases = sorted(data.cases, key=lambda c: c.case_id)[:4]
            for c in cases:
                chosen = spec.select(c.channels, c.case_id)
                img = data.read(c.case_id, chosen)
                pads = [c.pad_values[c.channels.index(s)] for s in chosen]
                stats = []
                for k, s in enumerate(chosen):
                    x = img[k]
                    head = x[np.abs(x - pads[k]) > 1e-3]
                    p1, p50, p99 = np.percentile(x, [1, 50, 99])
                    hm = float(head.mean()) if head.size else float("nan")
                    stats.append(f"{s}:{p1:.2f}/{p50:.2f}/{p99:.2f} pad={pads[k]:.2f} h={hm:.2f}")
                print(task, split, c.site, c.case_id[-4:], c.shape, "|", "  ".join(stats))


if __name__ == "__main__":
    main()
