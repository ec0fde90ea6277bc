#!/usr/bin/env python3
"""FOMO25 challenge entry point for the neurofm package "$name" ($package_id $version).

Exported by ``neurofm package export --fomo25`` and installed at ``/app/predict.py``. The
organisers call it once per case, one flag per sequence::

    python /app/predict.py $organiser_flags

and it writes $output_desc to the ``--output`` path. The model in ``model/`` beside this file
runs with the same neurofm code as ``neurofm package run`` (``neurofm.predict``), so the outputs
are identical. The device is chosen at run time: the GPU when one is visible, else the CPU
(``--device`` or ``NEUROFM_DEVICE`` override it). Nothing is downloaded. A missing input file or
an unusable case exits with code 2 and writes nothing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
TASK = "$task"
SEQUENCES = ("flair", "dwi_b1000", "adc", "swi", "t2s", "t1", "t2")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=f"FOMO25 {TASK} prediction ($package_id)")
    for seq in SEQUENCES:
        parser.add_argument(f"--{seq}", type=Path, help=f"{seq} image (NIfTI)")
    parser.add_argument("--output", type=Path, required=True, help="where to write the result")
    parser.add_argument("--device", default=os.environ.get("NEUROFM_DEVICE", "auto"))
    args = parser.parse_args(argv)
    given = {s: getattr(args, s) for s in SEQUENCES if getattr(args, s) is not None}
    for seq, path in given.items():
        if not path.is_file():
            print(f"error: --{seq} {path}: file does not exist", file=sys.stderr)
            return 2

    from neurofm.errors import NeuroFMError
    from neurofm.predict import load_predictor, predict_case_dir

    try:
        predictor = load_predictor(HERE / "model", device=args.device)
        print(f"{TASK}: running on {predictor.device}", file=sys.stderr)
        with tempfile.TemporaryDirectory(prefix="fomo25-") as tmp:
            case = Path(tmp) / "case"
            case.mkdir()
            for seq, path in given.items():
                suffix = ".nii.gz" if path.name.endswith(".gz") else ".nii"
                os.symlink(path.resolve(), case / f"{seq}{suffix}")
            result = predict_case_dir(predictor, case, Path(tmp) / "out")
            args.output.parent.mkdir(parents=True, exist_ok=True)
            partial = args.output.with_name(f".{args.output.name}.partial")
            shutil.copyfile(result, partial)
            os.replace(partial, args.output)
    except NeuroFMError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
