"""Per-seed primary metric per arm and study folder, in-domain (source) and out-of-domain
(target sites pooled). Development seeds only. Usage: peek.py FOLDER... [--hd95]

Each arm is labelled ``arm~folder`` (the folder's name), so the base study and its variants
sit side by side; AUROC per seed is computed from the pooled cases of the domain. ``A+B+C``
reads several folders as one, labelled by the first (one study folder per seed, run side by
side: a study folder takes one writer at a time)."""

import glob
import sys
from pathlib import Path

import pandas as pd
from sklearn.metrics import roc_auc_score

args = [a for a in sys.argv[1:] if a != "--hd95"]
prim = {"infarct": "auroc", "meningioma": "hd95" if "--hd95" in sys.argv else "dice",
        "brain_age": "abs_error"}
frames = []
for arg in args:
    folders = arg.split("+")
    for f in [f for folder in folders for f in glob.glob(f"{folder}/seeds/*/rows/*.csv")]:
        d = pd.read_csv(f, dtype={"case": str, "site": str})
        d["arm"] = d["arm"] + "~" + Path(folders[0]).name
        frames.append(d)
d = pd.concat(frames)
d["dom"] = (d.site == "source").map({True: "ID", False: "OOD"})
out = []
for (seed, arm, task, dom), g in d.groupby(["seed", "arm", "task", "dom"]):
    m = prim[task]
    if m in set(g.metric):
        vals = g[g.metric == m].value
        v = vals[vals < float("inf")].mean()  # HD95 of an empty prediction is infinite: left out
    else:
        w = g.pivot_table(index=["site", "case"], columns="metric", values="value")
        v = roc_auc_score(w["label"], w["prob"])
    out.append((task, arm, dom, seed, v))
t = pd.DataFrame(out, columns=["task", "arm", "dom", "seed", "v"])
p = t.pivot_table(index=["task", "arm"], columns=["dom", "seed"], values="v")
for dom in ("ID", "OOD"):
    cols = [c for c in p.columns if c[0] == dom]
    p[(dom, "mean")] = p[cols].mean(axis=1)
    p[(dom, "sd")] = p[cols].std(axis=1)
print(p.round(3).to_string())
