"""The entrypoint of packages built from a neurofm run; runs inside the sandbox.

``python -m neurofm.packages.infer --model DIR --input DIR --output DIR``: loads the packaged
weights once with :func:`neurofm.predict.load_predictor` and predicts every case folder of
``--input`` into ``--output`` (``<case>.txt`` or ``<case>.nii.gz``) with
:func:`neurofm.predict.predict_case_dir`, the same code ``neurofm predict`` uses. The device comes
from ``--device`` or ``NEUROFM_DEVICE`` (set by the runner), default ``auto``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m neurofm.packages.infer")
    parser.add_argument("--model", type=Path, required=True, help="folder with weights + config")
    parser.add_argument("--input", type=Path, required=True, help="folder of case folders")
    parser.add_argument("--output", type=Path, required=True, help="folder for the outputs")
    parser.add_argument("--device", default=os.environ.get("NEUROFM_DEVICE", "auto"))
    args = parser.parse_args(argv)

    import torch

    from neurofm.errors import NeuroFMError
    from neurofm.predict import load_predictor, predict_case_dir

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    try:
        predictor = load_predictor(args.model, device=args.device)
        args.output.mkdir(parents=True, exist_ok=True)
        for case_dir in sorted(p for p in args.input.iterdir() if p.is_dir()):
            predict_case_dir(predictor, case_dir, args.output)
    except NeuroFMError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
