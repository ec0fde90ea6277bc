"""Batch tensors that a loader reuses once nothing else refers to them.

Why: a fresh float32 batch of two 4 x 96^3 patches is 28 MB of new memory; the allocator maps it
anew each time, and the kernel's page faults and zero fill cost about as much as reading the
patches into it (docs/performance.md). PyTorch's DataLoader allocates per batch as well; DALI
reuses its buffers and asks the user not to hold outputs across iterations. Here nothing is
asked of the user: a buffer is handed out again only when no Python reference, no view and no
numpy array refers to it any more, otherwise a new one is made, so a consumer that keeps
batches gets correct, merely slower, batches.

How "referred to" is counted: the Python reference count of the tensor object (a kept batch
dict) and the use count of its storage (views, ``.numpy()`` arrays), each against the counts of
a buffer held only by the pool, measured on this interpreter when the pool is made rather than
assumed. ``torch._C._storage_Use_Count`` is PyTorch's own (private) counter; without it no
buffer is ever reused, which is slower, never wrong.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Sequence

import torch

_use_count = getattr(torch._C, "_storage_Use_Count", None)


def _counts(buffers: list[torch.Tensor], i: int) -> tuple[int, int]:
    """(Python references, storage users) of ``buffers[i]``, seen from inside the pool."""
    refs = sys.getrefcount(buffers[i])
    users = _use_count(buffers[i].untyped_storage()._cdata) if _use_count is not None else -1
    return refs, users


class BufferPool:
    """Up to ``limit`` reusable float32 tensors; :meth:`take` is safe from several threads."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._buffers: list[torch.Tensor] = []
        self._lock = threading.Lock()
        probe = [torch.empty(0)]
        self._free = _counts(probe, 0)  # the counts of a buffer only the pool holds
        self.reused = 0  # how many takes were served from the pool (tests, benchmarks)

    def take(self, shape: Sequence[int]) -> torch.Tensor:
        """A float32 tensor of ``shape`` with undefined contents, reused when free."""
        shape = torch.Size(shape)
        with self._lock:
            if _use_count is not None:
                for i in range(len(self._buffers)):  # by index: a loop variable is a reference
                    if self._buffers[i].shape == shape and _counts(self._buffers, i) == self._free:
                        self.reused += 1
                        return self._buffers[i]
            fresh = torch.empty(shape)
            if len(self._buffers) < self.limit:
                self._buffers.append(fresh)
            return fresh
