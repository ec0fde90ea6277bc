#!/usr/bin/env bash
# The worked example of docs/own-task.md, end to end on the tiny embedded benchmark.
# Usage: bash run.sh WORKDIR   (9 minutes measured on 2 shared CPU cores)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
TASK=$HERE/any_lesion.toml
mkdir -p "$1" && cd "$1"

neurofm synth bench --preset tiny --seed 0
python "$HERE/make_any_lesion.py" bench data
neurofm prepare data prep --task "$TASK" --spacing 8
neurofm prepare bench/pretrain prep --spacing 8
neurofm pretrain prep --objective mae --out runs/mae --steps 30 --batch-size 2 --patch 32 \
  --workers 0 --threads 1

COMMON=(prep --task "$TASK" --init runs/mae --input-size 32 --batch-size 2 --workers 0
        --threads 1 --eval-every 5)
for fusion in early late; do
  # frozen encoder + logistic regression: the closed-form fit alone (no gradient steps)
  neurofm finetune "${COMMON[@]}" --fusion $fusion --mode probe --head linear --steps 0 \
    --out runs/probe_linear_$fusion
  # frozen encoder + MLP head, trained
  neurofm finetune "${COMMON[@]}" --fusion $fusion --mode probe --head mlp --steps 40 \
    --out runs/probe_mlp_$fusion
  # full fine-tuning
  neurofm finetune "${COMMON[@]}" --fusion $fusion --mode full --steps 40 \
    --out runs/full_$fusion
done

for run in runs/probe_* runs/full_*; do
  name=$(basename "$run")
  neurofm predict --task "$TASK" --model "$run" --input data/any_lesion/test --output "preds/$name"
  neurofm evaluate --task "$TASK" --predictions "preds/$name" --references data/any_lesion/test \
    --model "$name" --out "eval/$name"
done

# one results folder for the report: every model's results.csv and strata.csv, stacked
mkdir -p results
for f in results.csv strata.csv; do
  { head -n 1 "eval/full_early/$f"; for d in eval/*/; do tail -n +2 "$d$f"; done; } > "results/$f"
done
neurofm report results --task "$TASK" --out report

neurofm package build runs/probe_linear_late --task "$TASK" --out pkg \
  --sample data/any_lesion/test/infarct_test_sitea_0000
neurofm package verify pkg
