"""Per-seed primary metric per arm, in-domain (source) and out-of-domain (target sites pooled).
Development seeds only."""
import sys, glob
import pandas as pd
from sklearn.metrics import roc_auc_score
frames = []
for folder in sys.argv[1:]:
    for f in glob.glob(f"{folder}/seeds/*/rows/*.csv"):
        d = pd.read_csv(f, dtype={"case": str, "site": str})
        d["arm"] = d["arm"] + ("" if folder.endswith("dev-v2") else "~" + folder.split("var-")[-1])
        frames.append(d)
d = pd.concat(frames)
d["dom"] = (d.site == "source").map({True: "ID", False: "OOD"})
prim = {"infarct": "auroc", "meningioma": "dice", "brain_age": "abs_error"}
if len(sys.argv) > 1 and sys.argv[-1] == "--hd95":
    prim["meningioma"] = "hd95"; sys.argv.pop()
out = []
for (seed, arm, task, dom), g in d.groupby(["seed", "arm", "task", "dom"]):
    m = prim[task]
    if m in set(g.metric):
        v = g[g.metric == m].value.mean()
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
