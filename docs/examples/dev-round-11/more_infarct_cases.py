"""Development round 11: one seed's demo benchmark with 80 infarct training cases instead of 20
(OUT/seeds/SEED/data), and a study folder OUT-SEED for `neurofm study --data` that reuses the
base's MAE pretraining run (docs/model-quality.md).

Every case has its own random stream, so the test splits (source and target sites) are the
demo benchmark's, byte for byte: the script checks that against the base folder's benchmark.
Usage: python more_infarct_cases.py BASE_STUDY OUT SEED
"""

import filecmp
import json
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

from neurofm.synth import PRESETS, build_benchmark

base, out, seed = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
demo = PRESETS["demo"]
preset = replace(demo, name="demo-infarct80", train={**demo.train, "infarct": 80})
root = out / "seeds" / str(seed)
root.mkdir(parents=True)
build_benchmark(root / "data", preset, seed, workers=2)
for split in ("test", "test_sitea", "test_siteb"):
    theirs = base / "seeds" / str(seed) / "data" / "infarct" / split
    mine = root / "data" / "infarct" / split
    files = sorted(p.relative_to(theirs) for p in theirs.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(mine) for p in mine.rglob("*") if p.is_file()), split
    assert all(filecmp.cmp(theirs / f, mine / f, shallow=False) for f in files), split
run = "pretrain-mae-tiny"
study = Path(f"{out}-{seed}")
(study / "seeds" / str(seed) / "runs").mkdir(parents=True)
src = base / "seeds" / str(seed) / "runs" / run
subprocess.run(["cp", "-al", str(src), str(study / "seeds" / str(seed) / "runs" / run)], check=True)
(study / "study.json").write_text(json.dumps({
    "code_revision": "", "confirmation_first_written": None,
    "created": time.strftime("%Y-%m-%dT%H:%M:%S+0000", time.gmtime()),
    "data": str(root / "data"), "phase": "development", "recipe_hash": "4087b229d0cf0a81",
    "recipe_name": "fomo25-demo-round3", "seeds": [],
}, indent=2))
print(f"seed {seed}: {root / 'data'} (test splits identical to {base}), study folder {study}")
