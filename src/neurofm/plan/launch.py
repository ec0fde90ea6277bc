"""Learning-curve runs: finetune at several shot counts with repeats, predict, evaluate.

Each run is ``OUT/runs/shots<N>-r<R>`` (repeat ``R`` is the finetuning seed, so it draws its own
few-shot subset and initialisation); its predictions on the evaluation split are scored with
:func:`neurofm.evaluate.evaluate_predictions` and all runs' rows go to ``OUT/results.csv`` in the
tidy format, model names carrying the shot count for :mod:`neurofm.plan.inputs`. A run that
already has a model and predictions is reused, so an interrupted curve continues.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pandas as pd
from rich.progress import Progress

from neurofm.evaluate import evaluate_predictions
from neurofm.predict import load_predictor, predict_case_dir
from neurofm.results import write_results
from neurofm.runfiles import CONFIG, WEIGHTS
from neurofm.train.distributed import init_distributed, shutdown_distributed
from neurofm.train.finetuning import FinetuneSettings, finetune
from neurofm.train.runs import case_dirs, prepare_run_dir

DONE = ".predicted"


def run_name(shots: int, repeat: int) -> str:
    """Model name of one curve run (``shots20-r1``)."""
    return f"shots{shots}-r{repeat}"


def launch_curve(
    prepared: Path,
    eval_split: Path,
    out: Path,
    base: FinetuneSettings,
    shots: list[int],
    repeats: int,
    device: str = "cpu",
) -> Path:
    """Finetune ``base`` at each shot count ``repeats`` times; returns ``OUT/results.csv``."""
    dist = init_distributed(device)
    frames = []
    try:
        with Progress(transient=True) as bar:
            job = bar.add_task("learning-curve runs", total=len(shots) * repeats)
            for n in shots:
                for r in range(1, repeats + 1):
                    name = run_name(n, r)
                    run = out / "runs" / name
                    preds = run / "predictions"
                    if not ((run / WEIGHTS).exists() and (run / CONFIG).exists()
                            and (preds / DONE).exists()):  # fmt: skip
                        prepare_run_dir(run, overwrite=True, resume=False)
                        finetune(prepared, run, replace(base, shots=n, seed=r), dist)
                        predictor = load_predictor(run, device)
                        for case in case_dirs(eval_split):
                            predict_case_dir(predictor, case, preds)
                        (preds / DONE).touch()
                    ev = evaluate_predictions(base.task, preds, eval_split, name)
                    frames.append(ev.rows)
                    bar.advance(job)
    finally:
        shutdown_distributed()
    return write_results(pd.concat(frames, ignore_index=True), out / "results.csv")
