"""Endless, seeded batch streams over a patch dataset, for the training loop.

``batches(start_step)`` builds a loader whose seed depends on the start step, so a fresh run and
a resumed run each see a reproducible stream. Under DDP every rank reads its own shard through a
``DistributedSampler`` whose epoch advances with each pass.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from torch.utils.data import DistributedSampler

from neurofm.data.patches import LoaderBackend, PatchDataset, make_loader
from neurofm.train.distributed import DistInfo


def batch_stream(
    dataset: PatchDataset,
    batch_size: int,
    workers: int,
    seed: int,
    dist: DistInfo,
    backend: LoaderBackend = "processes",
) -> Callable[[int], Iterator[dict[str, Any]]]:
    """``start_step -> endless iterator of batches``, for :func:`neurofm.train.loop.train`;
    ``workers`` processes or threads (``backend``) read the patches."""

    def make(start: int) -> Iterator[dict[str, Any]]:
        run_seed = seed + 7919 * start
        sampler: DistributedSampler[int] | None = None
        if dist.distributed:
            sampler = DistributedSampler(
                dataset, num_replicas=dist.world_size, rank=dist.rank, seed=run_seed
            )
        loader = make_loader(
            dataset,
            batch_size,
            workers,
            run_seed + dist.rank,
            sampler=sampler,
            drop_last=True,
            backend=backend,
        )
        epoch = 0
        while True:
            if sampler is not None:
                sampler.set_epoch(epoch)
            yield from loader
            epoch += 1

    return make
