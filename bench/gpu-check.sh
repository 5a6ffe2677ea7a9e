#!/usr/bin/env bash
# GPU check: parity of a GPU provider with the CPU on the test fixtures, then prefill, decode and GPU memory on
# LLaVA-1.5-7B shapes (random F16 weights), written to gpu-check/gpu-check.md for a bug report. At most 10 minutes.
#
#   bash bench/gpu-check.sh [--provider cuda] [--layers N] [--runs 3] [--decode 32] [--out gpu-check]
#   bash bench/gpu-check.sh --provider cpu --model test/fixtures/tiny-llava-llama --budgets 8,4,2   # on a CPU
#
# Needs `npm ci` in this clone and, for CUDA, `node dist/cli.js providers install-cuda` (or the extension's
# "FiCoCo: Install CUDA Provider"). The random 7B-shaped weights (up to 14 GB) are kept in $TMPDIR/ficoco-bench.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -d node_modules/onnxruntime-node ]; then
  echo "gpu-check: run npm ci in $(pwd) first" >&2
  exit 2
fi
status=0
timeout --kill-after=10 600 node --import tsx bench/gpu-check.ts "$@" || status=$?
if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
  echo "gpu-check: stopped after 10 minutes; the report holds what finished (try --layers 8 or --runs 1)" >&2
fi
exit "$status"
