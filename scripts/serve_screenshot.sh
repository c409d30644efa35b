#!/usr/bin/env bash
# Writes docs/serve.png: the page of `pert serve` as tests/test_serve.py drives it in headless Chromium, with the
# test's small models (a tiny PERT pre-trained for a few minutes on People's Daily, MiniLM with an untrained QA
# head). Chinese text needs a CJK font for Chromium to draw it (Debian: fonts-wqy-microhei).
set -euo pipefail
cd "$(dirname "$0")/.."
fc-list :lang=zh | grep -q . || apt-get install -y -qq fonts-wqy-microhei
PERT_SERVE_SCREENSHOT="$PWD/docs/serve.png" PERT_SERVE_PRETRAIN_STEPS="${STEPS:-150}" \
  .venv/bin/python -m pytest -q tests/test_serve.py -k browser
