"""Where a 4 x 96^3 patch's time goes: blosc2 vs memory-mapped .npy reads, and the shared-memory
hand-over of a process worker's batch (docs/performance.md, "What was slow").

Usage: python docs/examples/loader_costs.py PREPARED_SUBSET
(e.g. the ``prepared/pretrain`` folder that ``neurofm bench loader --preset clinical --work W``
leaves in W; it has to have been prepared with --unpack, which the bench does).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import numpy as np
import torch

from neurofm.data.cache import PreparedDataset


def per_call_ms(fn: Callable[[list[int]], object], starts: list[list[int]]) -> float:
    fn(starts[0])
    t0 = time.perf_counter()
    for s in starts:
        fn(s)
    return (time.perf_counter() - t0) / len(starts) * 1e3


def main(subset: str) -> None:
    torch.set_num_threads(1)
    packed, plain = PreparedDataset(subset, unpacked=False), PreparedDataset(subset)
    case = packed.cases[0]
    rng = np.random.default_rng(0)
    starts = [[int(rng.integers(0, n - 96 + 1)) for n in case.shape] for _ in range(40)]
    size = (96, 96, 96)
    for name, ds in (("blosc2", packed), ("npy memmap", plain)):
        ms = per_call_ms(lambda s, ds=ds: ds.read_patch(case.case_id, s, size), starts)
        print(f"read one 4 x 96^3 patch, {name}: {ms:.1f} ms")
    ms = per_call_ms(lambda s: torch.empty((2, 4, *size)).share_memory_(), starts)
    print(f"new shared memory for a batch of two (process worker hand-over): {ms:.1f} ms")
    ms = per_call_ms(lambda s: torch.empty((2, 4, *size)).fill_(0), starts)
    print(f"new private memory for a batch of two, touched: {ms:.1f} ms")


if __name__ == "__main__":
    main(sys.argv[1])
