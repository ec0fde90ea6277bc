"""Offline check on development predictions: meningioma Dice/HD95 before and after keeping only
the largest connected component of each predicted mask (nnU-Net's postprocessing choice)."""
import sys, glob
from pathlib import Path
import numpy as np, nibabel as nib, pandas as pd
from scipy import ndimage
from neurofm.metrics.segmentation import segmentation_metrics

def lcc(m):
    lab, n = ndimage.label(m)
    if n <= 1:
        return m
    sizes = ndimage.sum(m, lab, range(1, n + 1))
    return lab == (1 + int(np.argmax(sizes)))

rows = []
for folder in sys.argv[1:]:
    for run in glob.glob(f"{folder}/seeds/*/runs/meningioma-from-*-tiny"):
        seed = run.split("/seeds/")[1].split("/")[0]
        arm = run.split("meningioma-from-")[1].replace("-tiny", "")
        for split in ("test", "test_sitea", "test_siteb"):
            for p in sorted(glob.glob(f"{run}/predictions/{split}/*.nii.gz")):
                case = Path(p).name.replace(".nii.gz", "")
                ref_img = nib.load(f"{folder}/seeds/{seed}/data/meningioma/{split}/{case}/label.nii.gz")
                ref = np.asarray(ref_img.dataobj) > 0
                pr = np.asarray(nib.load(p).dataobj) > 0
                sp = ref_img.header.get_zooms()[:3]
                for post, m in (("raw", pr), ("lcc", lcc(pr))):
                    r = segmentation_metrics(m, ref, sp)
                    rows.append(dict(seed=seed, arm=arm, dom="ID" if split == "test" else "OOD", post=post,
                                     n_comp=ndimage.label(pr)[1], **r))
d = pd.DataFrame(rows)
d["hd95"] = d["hd95"].replace(np.inf, np.nan)
print(d.groupby(["arm", "post", "dom", "seed"])[["dice", "hd95", "n_comp"]].mean().round(3).to_string())
