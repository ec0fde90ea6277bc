"""Random patches or fixed-size whole volumes from a prepared dataset; a loader that fails loudly.

:class:`PatchDataset` reads only the chunks a patch touches (:mod:`neurofm.data.cache`), so a
sample costs a few milliseconds whatever the volume size. Channels are fixed (a list, or a task's
inputs in :meth:`~neurofm.tasks.TaskSpec.select` order) or drawn at random per sample
(``n_random_channels``: 1 for masked autoencoding, 2 for modality-invariant views).

Randomness (case-independent patch positions, channel picks, augmentation) comes from one numpy
Generator per process: the dataset's ``seed`` in the main process, the DataLoader's per-worker
seed in workers, so a loader built by :func:`make_loader` with the same seed and worker count
yields the same samples.

:func:`make_loader` returns a :class:`PatchLoader` (``backend="processes"``, the default), a
DataLoader whose iteration turns failures into clear errors instead of hangs or tracebacks from
inside workers:

- bad data in a worker (a corrupt chunk, a missing file) re-raises the worker's
  :class:`~neurofm.errors.NeuroFMError` in the main process, naming the file;
- a worker that dies (killed, out of memory, ``os._exit``) or hangs past ``timeout`` raises a
  RuntimeError naming the case it was reading; each worker records its current case in shared
  memory for this, since a dead process cannot report anything itself.

``backend="threads"`` returns a :class:`ThreadLoader` instead: worker *threads* in the training
process. Why: a process worker hands each batch over in new shared memory, and on Linux faulting
in those tmpfs pages costs more than reading the patch (about 15 ms for a batch of two 4 x 96^3
patches on the 2-core CI box, against 2 ms per patch read from an unpacked cache), so process
workers cap near 60 batches/s whatever the cache. Threads hand batches over in place. They only
pay off when the reads release the GIL, which numpy's copies from memory-mapped ``.npy`` files
(``neurofm prepare --unpack``) do and blosc2's decompression does not. A thread loader draws each
sample from its own generator seeded by (seed, pass, position), so its stream does not depend on
the thread count or on which thread ran first; it differs from the process loader's stream, so a
run's results depend on the backend (which is why it is a recorded setting, not a silent choice).
It also reuses a batch tensor once the consumer has let go of it, sparing the page faults and
zero fill of fresh memory per batch (same values either way).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import re
import warnings
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate, get_worker_info

from neurofm.data.augment import AugmentConfig, apply_augment, sample_augment
from neurofm.data.batch_buffers import BufferPool
from neurofm.data.cache import PreparedCase, PreparedDataset
from neurofm.errors import NeuroFMError
from neurofm.tasks import get_task

Sample = dict[str, Any]


def _size3(size: int | Sequence[int]) -> tuple[int, int, int]:
    s = (size, size, size) if isinstance(size, int) else tuple(int(v) for v in size)
    if len(s) != 3 or min(s) < 1:
        raise ValueError(f"patch size must be one or three positive ints, got {size!r}")
    return (s[0], s[1], s[2])


def centre_start(n: int, m: int) -> int:
    """Start of a size-``m`` window centred on a size-``n`` axis (negative: padded).

    Same placement as :func:`neurofm.predict.fit_to_shape`, so training and inference see
    whole volumes identically.
    """
    return (n - m) // 2 if n >= m else -((m - n) // 2)


class PatchDataset(Dataset[Sample]):
    """Samples ``{"image", "mask"?, "target"?, "case", "channels"}`` from a prepared subset.

    - ``patch_size``: spatial size of every sample (int or three ints).
    - channel choice, one of: ``channels`` (fixed names), ``task`` (that task's inputs; default
      when the prepared subset belongs to a task) or ``n_random_channels`` (k distinct sequences
      drawn per sample; sessions with fewer than k are left out, with a warning).
    - ``whole_volume``: centre crop/pad each case to ``patch_size`` instead of random patches
      (classification and regression).
    - ``foreground_prob``: chance that a patch is centred (with jitter) on a mask voxel.
    - ``samples_per_epoch``: dataset length (cases are cycled); default one sample per case.
    - ``augment``: an :class:`~neurofm.data.augment.AugmentConfig`, or None for none.
    - ``cases``: restrict to these case ids (few-shot subsets), in this order.

    ``"mask"`` (float32 ``(1, *patch)``) is returned when every case has one, ``"target"``
    (float32 ``(1,)``: the label for classification, the age for regression tasks) when every
    case has that value; mixing cases with and without is an error.
    """

    def __init__(
        self,
        data: PreparedDataset,
        patch_size: int | Sequence[int] = 64,
        *,
        channels: Sequence[str] | None = None,
        task: str | None = None,
        n_random_channels: int | None = None,
        whole_volume: bool = False,
        foreground_prob: float = 0.0,
        samples_per_epoch: int | None = None,
        augment: AugmentConfig | None = None,
        cases: Sequence[str] | None = None,
        seed: int = 0,
    ) -> None:
        self.data = data
        self.patch_size = _size3(patch_size)
        self.whole_volume = whole_volume
        self.foreground_prob = foreground_prob
        self.augment = augment
        self.seed = seed
        chosen = [data.case(c) for c in cases] if cases is not None else list(data.cases)
        modes = sum(x is not None for x in (channels, task, n_random_channels))
        if modes > 1:
            raise ValueError("give at most one of channels, task, n_random_channels")
        if modes == 0:
            if data.task is None:
                raise NeuroFMError(
                    data.root, "not a task subset: give channels, task or n_random_channels"
                )
            task = data.task
        self.n_random_channels = n_random_channels
        self.channels: list[list[str]] = []
        if n_random_channels is not None:
            kept = [c for c in chosen if len(c.channels) >= n_random_channels]
            if len(kept) < len(chosen):
                warnings.warn(
                    f"{data.root}: {len(chosen) - len(kept)} of {len(chosen)} cases have fewer "
                    f"than {n_random_channels} sequences and are left out",
                    stacklevel=2,
                )
            chosen = kept
            self.channels = [list(c.channels) for c in chosen]
        elif task is not None:
            spec = get_task(task)
            self.channels = [spec.select(c.channels, str(data.root / c.case_id)) for c in chosen]
        else:
            assert channels is not None
            for c in chosen:
                missing = [s for s in channels if s not in c.channels]
                if missing:
                    raise NeuroFMError(
                        data.root / c.case_id, f"prepared case lacks sequence(s) {missing}"
                    )
            self.channels = [list(channels) for _ in chosen]
        if not chosen:
            raise NeuroFMError(data.root, "no cases to sample from")
        self.cases: list[PreparedCase] = chosen
        self.with_mask = _all_or_none(chosen, lambda c: c.has_mask, "mask", data)
        if foreground_prob > 0 and not self.with_mask:
            raise NeuroFMError(data.root, "foreground oversampling needs masks")
        self.target_key = get_task(task).reference_row if task is not None else None
        if self.target_key is not None:
            key = self.target_key
            if not _all_or_none(chosen, lambda c: getattr(c, key) is not None, key, data):
                self.target_key = None
        self.length = samples_per_epoch if samples_per_epoch is not None else len(chosen)
        self._rng: np.random.Generator | None = None
        self._rng_pid = -1

    def __len__(self) -> int:
        return self.length

    def case_index(self, index: int) -> int:
        return index % len(self.cases)

    def rng(self) -> np.random.Generator:
        """This process's generator (re-seeded in each DataLoader worker)."""
        if self._rng is None or self._rng_pid != os.getpid():
            info = get_worker_info()
            self._rng = np.random.default_rng(info.seed if info is not None else self.seed)
            self._rng_pid = os.getpid()
        return self._rng

    def _start(self, case: PreparedCase, rng: np.random.Generator) -> tuple[int, int, int]:
        size, shape = self.patch_size, case.shape
        if self.whole_volume:
            return (
                centre_start(shape[0], size[0]),
                centre_start(shape[1], size[1]),
                centre_start(shape[2], size[2]),
            )
        lo = [min(0, n - k) for n, k in zip(shape, size, strict=True)]
        hi = [max(0, n - k) for n, k in zip(shape, size, strict=True)]
        if case.fg_points and self.foreground_prob > 0 and rng.random() < self.foreground_prob:
            p = case.fg_points[int(rng.integers(len(case.fg_points)))]
            jitter = [int(rng.integers(-(k // 4), k // 4 + 1)) for k in size]
            want = [p[i] - size[i] // 2 + jitter[i] for i in range(3)]
            s = [min(max(want[i], lo[i]), hi[i]) for i in range(3)]
        else:
            s = [int(rng.integers(lo[i], hi[i] + 1)) for i in range(3)]
        return (s[0], s[1], s[2])

    def __getitem__(self, index: int) -> Sample:
        return self.sample(index, self.rng())

    @property
    def channel_count(self) -> int | None:
        """Channels of every sample, or None if cases differ (samples then cannot be batched)."""
        if self.n_random_channels is not None:
            return self.n_random_channels
        counts = {len(c) for c in self.channels}
        return counts.pop() if len(counts) == 1 else None

    def sample(
        self, index: int, rng: np.random.Generator, out: torch.Tensor | None = None
    ) -> Sample:
        """Sample ``index`` with its randomness (position, channels, augmentation) from ``rng``;
        its image is written into ``out`` (a contiguous float32 batch slot) when given."""
        ci = self.case_index(index)
        case = self.cases[ci]
        channels = self.channels[ci]
        if self.n_random_channels is not None:
            pick = rng.choice(len(channels), self.n_random_channels, replace=False)
            channels = [channels[int(i)] for i in pick]
        start = self._start(case, rng)
        slot = out.numpy() if out is not None else None
        image = torch.from_numpy(
            self.data.read_patch(case.case_id, start, self.patch_size, channels, out=slot)
        )
        mask = None
        if self.with_mask:
            m = self.data.read_mask_patch(case.case_id, start, self.patch_size)
            mask = torch.from_numpy(m.astype(np.float32))[None]
        if self.augment is not None:
            params = sample_augment(self.augment, rng, len(channels))
            image, mask = apply_augment(image, mask, params)
            if out is not None:
                image = out.copy_(image)
        sample: Sample = {"image": image, "case": case.case_id, "channels": ",".join(channels)}
        if mask is not None:
            sample["mask"] = mask
        if self.target_key is not None:
            sample["target"] = torch.tensor([float(getattr(case, self.target_key))])
        return sample


def _all_or_none(cases: Sequence[PreparedCase], has: Any, what: str, data: PreparedDataset) -> bool:
    flags = [bool(has(c)) for c in cases]
    if all(flags):
        return True
    if any(flags):
        lacking = cases[flags.index(False)].case_id
        raise NeuroFMError(
            data.root / lacking, f"case has no {what} while other cases of the subset do"
        )
    return False


@dataclass(frozen=True)
class _Failure:
    """A NeuroFMError carried out of a worker as data (its two-argument init does not unpickle)."""

    where: str | None
    problem: str


class _Guarded(Dataset[Sample | _Failure]):
    """Worker-side wrapper: records the case being read; returns bad-data errors as data."""

    def __init__(self, inner: PatchDataset, workers: int) -> None:
        self.inner = inner
        self.crumbs = mp.RawArray("q", max(1, workers) * 2)  # per worker: pid, case index
        for i in range(len(self.crumbs)):
            self.crumbs[i] = -1

    def __len__(self) -> int:
        return len(self.inner)

    def __getitem__(self, index: int) -> Sample | _Failure:
        info = get_worker_info()
        slot = 2 * info.id if info is not None else None
        if slot is not None:
            self.crumbs[slot] = os.getpid()
            self.crumbs[slot + 1] = self.inner.case_index(index)
        try:
            return self.inner[index]
        except NeuroFMError as exc:
            return _Failure(exc.where, exc.problem)
        finally:
            if slot is not None:
                self.crumbs[slot + 1] = -1

    def busy_cases(self, pids: set[int] | None = None) -> list[str]:
        out = []
        for w in range(len(self.crumbs) // 2):
            pid, ci = self.crumbs[2 * w], self.crumbs[2 * w + 1]
            if ci >= 0 and (pids is None or pid in pids):
                out.append(self.inner.cases[ci].case_id)
        return out


def _collate(batch: list[Sample | _Failure]) -> Any:
    for item in batch:
        if isinstance(item, _Failure):
            return item
    return default_collate(batch)


class PatchLoader(DataLoader[Any]):
    """DataLoader over a :class:`PatchDataset` that names the case when a worker fails."""

    dataset: _Guarded

    @property
    def patches(self) -> PatchDataset:
        return self.dataset.inner

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        it = super().__iter__()
        while True:
            try:
                batch = next(it)
            except StopIteration:
                return
            except RuntimeError as exc:
                raise RuntimeError(self._explain(str(exc))) from exc
            if isinstance(batch, _Failure):
                raise NeuroFMError(batch.where, batch.problem)
            yield batch

    def _explain(self, message: str) -> str:
        first = message.strip().splitlines()[0] if message.strip() else "DataLoader failed"
        m = re.search(r"pid(?:\(s\))?\s+([\d,\s]+)", message)
        pids = {int(p) for p in re.findall(r"\d+", m.group(1))} if m else set()
        cases = self.dataset.busy_cases(pids) or self.dataset.busy_cases()
        root = self.patches.data.root
        if cases:
            return f"{first} (loader worker was reading case(s) {', '.join(cases)} from {root})"
        return f"{first} (loading patches from {root})"


LoaderBackend = Literal["processes", "threads"]
LOADER_BACKENDS: tuple[LoaderBackend, ...] = ("processes", "threads")


class ThreadLoader:
    """Batches of a :class:`PatchDataset` built by ``threads`` threads, ``prefetch`` ahead.

    Iterating once is one pass over the sampler (or a seeded shuffle, new order each pass). Bad
    data re-raises the sample's NeuroFMError; a batch not ready within ``timeout`` seconds raises
    a RuntimeError naming its cases. Leaving the loop early cancels the batches not yet started.
    """

    def __init__(
        self,
        dataset: PatchDataset,
        batch_size: int,
        *,
        threads: int = 2,
        seed: int = 0,
        shuffle: bool = True,
        drop_last: bool = False,
        sampler: Sampler[int] | None = None,
        timeout: float = 120.0,
        prefetch: int = 4,
    ) -> None:
        if batch_size < 1 or threads < 1 or prefetch < 1:
            raise ValueError("batch_size, threads and prefetch must be at least 1")
        self.dataset = dataset
        self.batch_size = batch_size
        self.threads = threads
        self.seed = seed
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.sampler = sampler
        self.timeout = timeout
        self.prefetch = prefetch
        self._passes = 0
        # enough for every batch in flight, the one being used and the one just before it
        self._buffers = BufferPool(prefetch + threads + 2)

    @property
    def patches(self) -> PatchDataset:
        return self.dataset

    def _order(self, epoch: int) -> list[int]:
        if self.sampler is not None:
            return [int(i) for i in self.sampler]
        n = len(self.dataset)
        if not self.shuffle:
            return list(range(n))
        return [int(i) for i in np.random.default_rng([self.seed, epoch]).permutation(n)]

    def __len__(self) -> int:
        n = len(self.sampler) if self.sampler is not None else len(self.dataset)  # type: ignore[arg-type]
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _batch(self, epoch: int, first: int, indices: list[int]) -> Any:
        """One batch; patches are read straight into the batch tensor (no collating copy), a
        reused one when the consumer no longer refers to it (:mod:`neurofm.data.batch_buffers`)."""
        ds, channels = self.dataset, self.dataset.channel_count
        image = None
        if channels is not None:
            image = self._buffers.take((len(indices), channels, *ds.patch_size))
        samples = [
            ds.sample(
                i,
                np.random.default_rng([self.seed, epoch, first + k]),
                out=image[k] if image is not None else None,
            )
            for k, i in enumerate(indices)
        ]
        if image is None:
            return default_collate(samples)
        rest = default_collate([{k: v for k, v in s.items() if k != "image"} for s in samples])
        return {"image": image, **rest}

    def __iter__(self) -> Iterator[Any]:
        epoch = self._passes
        self._passes += 1
        order = self._order(epoch)
        step = self.batch_size
        stop = len(order) - len(order) % step if self.drop_last else len(order)
        starts = iter(range(0, stop, step))
        pool = ThreadPoolExecutor(self.threads, thread_name_prefix="neurofm-loader")
        pending: deque[tuple[list[int], Future[Any]]] = deque()

        def submit() -> None:
            first = next(starts, None)
            if first is not None:
                idx = order[first : first + step]
                pending.append((idx, pool.submit(self._batch, epoch, first, idx)))

        try:
            for _ in range(self.prefetch + self.threads):
                submit()
            while pending:
                idx, future = pending.popleft()
                try:
                    batch = future.result(timeout=self.timeout)
                except FutureTimeout:
                    cases = sorted(
                        {self.dataset.cases[self.dataset.case_index(i)].case_id for i in idx}
                    )
                    raise RuntimeError(
                        f"loader thread took over {self.timeout:g} s for a batch (reading "
                        f"case(s) {', '.join(cases)} from {self.dataset.data.root})"
                    ) from None
                submit()
                yield batch
        finally:
            pool.shutdown(wait=False, cancel_futures=True)


def make_loader(
    dataset: PatchDataset,
    batch_size: int,
    workers: int = 2,
    seed: int = 0,
    *,
    shuffle: bool = True,
    drop_last: bool = False,
    sampler: Sampler[int] | None = None,
    timeout: float = 120.0,
    prefetch_factor: int = 4,
    pin_memory: bool = False,
    backend: LoaderBackend = "processes",
) -> PatchLoader | ThreadLoader:
    """A :class:`PatchLoader` with persistent, seeded workers and a per-batch ``timeout``, or with
    ``backend="threads"`` a :class:`ThreadLoader` with ``workers`` threads (at least one).

    ``sampler`` (e.g. a DistributedSampler) replaces shuffling. Worker errors surface within
    seconds: bad data as NeuroFMError, a dead worker as RuntimeError naming the case, a worker
    stuck longer than ``timeout`` seconds as RuntimeError too.
    """
    if backend == "threads":
        return ThreadLoader(
            dataset,
            batch_size,
            threads=max(1, workers),
            seed=seed,
            shuffle=shuffle,
            drop_last=drop_last,
            sampler=sampler,
            timeout=timeout,
            prefetch=prefetch_factor,
        )
    if backend != "processes":
        raise ValueError(f"loader backend must be one of {LOADER_BACKENDS}, got {backend!r}")
    generator = torch.Generator().manual_seed(seed)
    multi = workers > 0
    return PatchLoader(
        _Guarded(dataset, workers),
        batch_size=batch_size,
        shuffle=shuffle if sampler is None else False,
        sampler=sampler,
        num_workers=workers,
        collate_fn=_collate,
        pin_memory=pin_memory,
        drop_last=drop_last,
        timeout=timeout if multi else 0,
        generator=generator,
        persistent_workers=multi,
        prefetch_factor=prefetch_factor if multi else None,
    )
