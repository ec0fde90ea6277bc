"""Metrics of a training run: one JSON line per logged step in ``<run>/metrics.jsonl``, mirrored to
TensorBoard (``<run>/tensorboard``) when the ``tensorboard`` package is installed."""

from __future__ import annotations

import json
from pathlib import Path
from types import TracebackType
from typing import Any


class RunLog:
    """Append-only metrics log; only the main rank writes."""

    def __init__(self, run_dir: Path, enabled: bool = True) -> None:
        self.path = Path(run_dir) / "metrics.jsonl"
        self.enabled = enabled
        self._tb: Any = None
        if enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(Path(run_dir) / "tensorboard"))
            except ImportError:
                self._tb = None

    def log(self, step: int, values: dict[str, float], phase: str = "train") -> None:
        """Record ``values`` at ``step`` under ``phase`` (train, val, probe...)."""
        if not self.enabled:
            return
        row = {"step": step, "phase": phase, **{k: float(v) for k, v in values.items()}}
        with self.path.open("a") as fh:
            fh.write(json.dumps(row) + "\n")
        if self._tb is not None:
            for k, v in values.items():
                self._tb.add_scalar(f"{phase}/{k}", float(v), step)

    def truncate_after(self, step: int) -> None:
        """Drop rows logged after ``step`` (resuming from a checkpoint taken at ``step``)."""
        if not self.enabled or not self.path.exists():
            return
        keep = [ln for ln in self.path.read_text().splitlines() if json.loads(ln)["step"] <= step]
        self.path.write_text("".join(ln + "\n" for ln in keep))

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()

    def __enter__(self) -> RunLog:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def read_log(run_dir: Path, phase: str | None = None) -> list[dict[str, Any]]:
    """Rows of ``metrics.jsonl`` (optionally one phase), for reports and tests."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    rows = [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]
    return [r for r in rows if phase is None or r["phase"] == phase]
