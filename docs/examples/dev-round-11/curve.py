"""Development round 11: infarct AUROC per arm, shot count and seed, in domain (source test) and
out of domain (target sites pooled), from study folders' rows; writes the pretrained arm's
out-of-domain learning curve as CURVE_CSV (shots, repeat = seed, score) for
`neurofm plan --results`. Usage: python curve.py CURVE_CSV FOLDER..."""

import glob
import sys
from pathlib import Path

import pandas as pd
from sklearn.metrics import roc_auc_score

target = Path(sys.argv[1])
files = [f for folder in sys.argv[2:] for f in glob.glob(f"{folder}/seeds/*/rows/*.csv")]
d = pd.concat(pd.read_csv(f, dtype={"case": str, "site": str}) for f in files)
d = d[d.task == "infarct"]
d["dom"] = (d.site == "source").map({True: "ID", False: "OOD"})
rows = []
for (seed, arm, dom), g in d.groupby(["seed", "arm", "dom"]):
    w = g.pivot_table(index=["site", "case"], columns="metric", values="value")
    rows.append((arm, dom, seed, roc_auc_score(w["label"], w["prob"])))
t = pd.DataFrame(rows, columns=["arm", "dom", "seed", "auroc"])
table = t.pivot_table(index="arm", columns=["dom", "seed"], values="auroc")
for dom in ("ID", "OOD"):
    per_seed = table[dom].copy()
    table[(dom, "mean")] = per_seed.mean(axis=1)
    table[(dom, "sd")] = per_seed.std(axis=1)
print(table.sort_index(axis=1).round(3).to_string())
curve = t[(t.dom == "OOD") & t.arm.str.startswith("pretrained/n")].copy()
curve["shots"] = curve.arm.str.split("/n").str[1].astype(int)
curve["repeat"] = curve.seed
curve = curve.rename(columns={"auroc": "score"})[["shots", "repeat", "score"]]
curve.sort_values(["shots", "repeat"]).to_csv(target, index=False)
