#!/usr/bin/env bash
# The curve that fixes the study's wor-long budget: the no-pre-training arm (random init) fine-tuned for word-order
# restoration with the study's wor settings, scored on the dev split every 400 steps up to 4,000 (never on test).
# Run after `pert study run` has made the data cell, before any span-arm fine-tuning cell is read:
#   scripts/study_wor_long_probe.sh runs/study          # WORK, the study's --work folder; add --resume to continue
# The curve is in WORK/probe-wor/seed-1/metrics.json (dev_history); the config's notes say how it was read.
set -euo pipefail
WORK=${1:?usage: scripts/study_wor_long_probe.sh WORK [--resume]}
shift
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
"$PY" - "$WORK" <<'PY'
import sys
from pathlib import Path

from pert.config import build_config
from pert.study import StudyConfig
from pert.study.run import _run_init, model_dir

cfg, work = build_config(StudyConfig, "configs/study/perlm-vs-mlm.yaml"), Path(sys.argv[1])
if not (model_dir(work, "random", cfg) / "config.json").is_file():
    _run_init(cfg, work, "random")  # the recorded random floor, re-drawn from its seed
PY
"$PY" -m pert.cli finetune --task wor --model "$WORK/init/random/final" --data "$WORK/wor" --out "$WORK/probe-wor" \
  --task-args moved_weight=5 --lr 1e-3 --epochs 100 --batch-size 32 --max-seq-len 64 --max-steps 4000 \
  --eval-every 400 --splits dev --seeds 1 --no-save-model "$@"
