#!/usr/bin/env bash
# GPU check: on one GPU, a reduced run of the SLM side of one PaDA iteration (bundled SmolLM2-135M in bf16,
# 300 SQuAD training examples, 1 epoch, then 500 test questions), printing fine-tune tokens/s, evaluation
# samples/s and peak GPU memory. Aim: under 8 minutes (the timeout below). No network: it needs the bundled
# model (installed, ~/.cache/pada) and the SQuAD data (Hugging Face cache, or --data-dir DIR with
# squad/train-v1.1.jsonl and squad/dev-v1.1.jsonl).
#
#   scripts/gpu_check.sh                                   # one GPU: the first visible one (CUDA_VISIBLE_DEVICES)
#   scripts/gpu_check.sh --device cpu --train 8 --test 8   # dry run of the same code on a CPU
#   scripts/gpu_check.sh --json out.json                   # also write the figures as JSON
#
# Exits 2 at once when no CUDA GPU is visible (and --device cpu is not given); 124 past the timeout.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec timeout "${GPU_CHECK_TIMEOUT_S:-480}" "$PYTHON" -m pada.slm.gpu_check "$@"
