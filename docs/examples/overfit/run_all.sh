#!/usr/bin/env bash
# Every overfitting run in docs/model-quality.md (seed-0 development data, 2-core shared CPU).
# Two chains side by side; each run appends one JSON line to results.jsonl.
set -euo pipefail
cd "$(dirname "$0")/../../.."
py() { .venv/bin/python docs/examples/overfit/overfit.py "$@"; }
(
  py --task infarct --init scratch --cases 6 --steps 150 --eval-every 50 --no-augment --out /work/runs/overfit_infarct_scratch
  py --task infarct --init pretrained --cases 6 --steps 150 --eval-every 50 --no-augment --out /work/runs/overfit_infarct_pretrained
  py --task brain_age --init scratch --cases 6 --steps 150 --eval-every 50 --no-augment --out /work/runs/overfit_brain_age_scratch
) &
(
  py --task brain_age --init pretrained --cases 6 --steps 150 --eval-every 50 --no-augment --out /work/runs/overfit_brain_age_pretrained
  py --task meningioma --init scratch --cases 4 --steps 200 --eval-every 50 --no-augment --out /work/runs/overfit_meningioma_scratch
  py --task meningioma --init pretrained --cases 4 --steps 200 --eval-every 50 --no-augment --out /work/runs/overfit_meningioma_pretrained
) &
wait
# the MIL floor diagnostic: the same infarct run with the voxel-scoring bias started at -3
py --task infarct --init scratch --cases 6 --steps 150 --eval-every 50 --no-augment --head-bias -3 --out /work/runs/overfit_infarct_scratch_bias
# the empty-patch Dice diagnostic: the same meningioma run with the Dice term over the batch
py --task meningioma --init scratch --cases 4 --steps 200 --eval-every 50 --no-augment --batch-dice --out /work/runs/overfit_meningioma_scratch_batchdice
# the output-bias floor in segmentation: the meningioma scratch run with the head bias at -4.6
py --task meningioma --init scratch --cases 4 --steps 200 --eval-every 50 --no-augment --head-bias -4.6 --out /work/runs/overfit_meningioma_scratch_bias
# where the logits / probabilities sit (docs/model-quality.md, sections 1-2)
.venv/bin/python docs/examples/overfit/probe_mil.py /work/runs/overfit_infarct_scratch
.venv/bin/python docs/examples/overfit/probe_seg.py /work/runs/overfit_meningioma_scratch /work/runs/overfit_meningioma_pretrained /work/runs/overfit_meningioma_scratch_bias
