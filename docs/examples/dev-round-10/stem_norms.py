"""Which input channels does a finetuned infarct model read? The norm of its first conv's kernel
per input channel (dwi_b1000, flair, adc, swi|t2s), pretrained and scratch arms, development
seeds 0-2 of a study folder. Usage: python stem_norms.py STUDY_FOLDER"""

import sys
from pathlib import Path

from safetensors.torch import load_file

folder = Path(sys.argv[1])
for seed in (0, 1, 2):
    for arm in ("mae", "scratch"):
        run = folder / "seeds" / str(seed) / "runs" / f"infarct-from-{arm}-tiny"
        stem = load_file(str(run / "model.safetensors"))["encoder.stem.conv.weight"]
        norms = [float(stem[:, c].norm()) for c in range(stem.shape[1])]
        print(seed, arm, " ".join(f"{n:.2f}" for n in norms))
