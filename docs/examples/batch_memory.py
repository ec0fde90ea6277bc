"""Reading two 4 x 96^3 patches from a memory-mapped .npy into a fresh batch tensor vs a reused one.

Usage: python docs/examples/batch_memory.py   (writes a 139 MB /tmp/clinical_volume.npy once)
Prints patches/s and minor page faults per batch, three rounds; one thread, no loader.
"""

import resource
import time
from pathlib import Path

import numpy as np
import torch

PATH = Path("/tmp/clinical_volume.npy")
SHAPE = (4, 197, 233, 189)  # four sequences of a clinical brain at 1 mm
if not PATH.exists():
    np.save(PATH, np.random.default_rng(0).standard_normal(SHAPE, dtype=np.float32))
volume = np.load(PATH, mmap_mode="r")
rng = np.random.default_rng(1)


def faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def read(batches: int, reuse: bool) -> tuple[float, float]:
    kept = torch.empty((2, 4, 96, 96, 96))
    f0, t0 = faults(), time.perf_counter()
    for _ in range(batches):
        batch = (kept if reuse else torch.empty((2, 4, 96, 96, 96))).numpy()
        for k in range(2):
            x, y, z = (int(rng.integers(0, s - 96)) for s in SHAPE[1:])
            batch[k] = volume[:, x : x + 96, y : y + 96, z : z + 96]
    seconds = time.perf_counter() - t0
    return 2 * batches / seconds, (faults() - f0) / batches


for round_ in range(3):
    for reuse in (False, True):
        rate, per_batch = read(40, reuse)
        print(f"round {round_} reuse={reuse!s:5} {rate:6.0f} patches/s, {per_batch:5.0f} faults")
