"""Build the worked example's data: an ``any_lesion`` task from an embedded benchmark.

    python make_any_lesion.py BENCHMARK OUT

writes ``OUT/any_lesion/{train,test}/<case>/`` (DWI, FLAIR and SWI or T2* of every infarct and
meningioma case) and a ``labels.csv`` per split with
``case,site,any_lesion,age,source``: the target (1 for an infarct or a meningioma, 0 for an
infarct-task case without one) and two columns that ``neurofm evaluate`` turns into strata. The
ages come from the benchmark's ``ground_truth/cases.csv``. The source hospital's cases (the
benchmark's ``train`` and ``test`` splits) become ``train``, so that the few-shot fit sees
enough cases without a lesion; the other hospitals' cases (``test_<site>``) become ``test``, so
the test is out of domain, as in FOMO25.
"""

from __future__ import annotations

import csv
import shutil
import sys
from pathlib import Path

SEQUENCES = ("dwi_b1000", "flair", "swi", "t2s")


def make(bench: Path, out: Path) -> Path:
    """Write the task folder ``out/any_lesion`` and return it."""
    with (bench / "ground_truth" / "cases.csv").open(newline="") as fh:
        ages = {r["case"]: r["age"] for r in csv.DictReader(fh)}
    root = out / "any_lesion"
    rows: dict[str, list[list[str]]] = {"train": [], "test": []}
    for source in ("infarct", "meningioma"):
        for split_dir in sorted(p for p in (bench / source).iterdir() if p.is_dir()):
            split = "train" if split_dir.name in ("train", "test") else "test"
            with (split_dir / "labels.csv").open(newline="") as fh:
                for r in csv.DictReader(fh):
                    lesion = r["label"] if source == "infarct" else "1"
                    case_dir = root / split / r["case"]
                    case_dir.mkdir(parents=True, exist_ok=True)
                    for f in (split_dir / r["case"]).iterdir():
                        if f.name.split(".")[0] in SEQUENCES:
                            shutil.copyfile(f, case_dir / f.name)
                    rows[split].append([r["case"], r["site"], lesion, ages[r["case"]], source])
    for split, items in rows.items():
        with (root / split / "labels.csv").open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["case", "site", "any_lesion", "age", "source"])
            writer.writerows(sorted(items))
    return root


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    print(make(Path(sys.argv[1]), Path(sys.argv[2])))
