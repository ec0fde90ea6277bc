"""Black-box error detection on case folders: embed, read predictions, fit, compare, write."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from neurofm.atomic import publish_dir, sibling_tmp_dir, write_json_atomic, write_text_atomic
from neurofm.monitor.blackbox import compare_on_test, fit_error_detector
from neurofm.monitor.cases import read_predictions, split_labels
from neurofm.monitor.embed import load_embedder


def run_error_detection(
    model: Path,
    task: str,
    val: tuple[Path, Path],
    test: tuple[Path, Path],
    out: Path,
    *,
    max_fpr: float,
    bb_threshold: float,
    k: int,
    seed: int,
    device: str,
) -> pd.DataFrame:
    """``val`` / ``test``: (split folder, predictions folder). Returns the before/after table."""
    val_cases, val_y = split_labels(val[0], task)
    test_cases, test_y = split_labels(test[0], task)
    val_p = read_predictions(val[1], [c.name for c in val_cases])
    test_p = read_predictions(test[1], [c.name for c in test_cases])
    embedder = load_embedder(model, device)
    val_e = embedder.embed_cases(val_cases, label="embed validation")
    test_e = embedder.embed_cases(test_cases, label="embed test")
    det = fit_error_detector(
        val_e, val_p, val_y, max_fpr=max_fpr, bb_threshold=bb_threshold, k=k, seed=seed
    )
    table = compare_on_test(det, test_e, test_p, test_y)
    cases = pd.DataFrame(
        {
            "case": [c.name for c in test_cases],
            "label": test_y.astype(int),
            "black_box": test_p,
            "assisted": det.score(test_e, test_p),
        }
    )
    tmp = sibling_tmp_dir(out)
    write_text_atomic(tmp / "before_after.csv", table.to_csv(index=False))
    write_text_atomic(tmp / "cases.csv", cases.to_csv(index=False))
    write_json_atomic(
        tmp / "errors.json",
        {
            "model": str(model),
            "weights_sha256": embedder.weights,
            "max_fpr": max_fpr,
            "black_box_threshold": bb_threshold,
            "assisted_threshold": det.threshold,
            "black_box_rethreshold": det.bb_rethreshold,
            "n_validation": len(val_cases),
            "n_test": len(test_cases),
            "rows": table.to_dict(orient="records"),
        },
    )
    publish_dir(tmp, out)
    return table
