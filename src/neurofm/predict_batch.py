"""Batch prediction over a split on ``dask.distributed`` (``neurofm predict --workers N``).

Each case is one Dask task (:func:`neurofm.data.dask_runner.run_cases`); each worker process
loads the finetuned run once and keeps it for the cases it gets. Every output file is written
atomically by :func:`neurofm.predict.write_prediction`, so a worker that dies mid-case leaves
no partial prediction, and Dask re-runs that case on another worker.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

from neurofm.data.dask_runner import CaseFailure, run_cases
from neurofm.predict import Predictor, load_predictor, predict_case_dir


@lru_cache(maxsize=2)
def _worker_predictor(model_dir: str, device: str) -> Predictor:
    """One load per worker process and run (the model is read-only while predicting)."""
    import torch

    torch.set_num_threads(1)  # one worker per core: threads inside would only contend
    return load_predictor(model_dir, device)


def _predict_one(model_dir: str, device: str, case_dir: Path, out_dir: Path) -> str:
    """Dask task: predict one case folder, return the written file's path."""
    return str(predict_case_dir(_worker_predictor(model_dir, device), case_dir, out_dir))


def predict_cases(
    client: object,
    model_dir: Path,
    device: str,
    cases: list[Path],
    out_dir: Path,
    *,
    fail_fast: bool = False,
    on_done: Callable[[str, object], None] | None = None,
) -> tuple[list[Path], list[CaseFailure]]:
    """Predict every case folder on the cluster; returns written files and failed cases."""
    results, failures = run_cases(
        client,
        _predict_one,
        [
            (c.name, (str(model_dir.resolve()), device, c.resolve(), out_dir.resolve()))
            for c in cases
        ],
        fail_fast=fail_fast,
        on_done=on_done,
        label="predict",
    )
    return [Path(results[c.name]) for c in cases if c.name in results], failures
