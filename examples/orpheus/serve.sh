#!/usr/bin/env bash
# Orpheus TTS (canopylabs/orpheus-3b-0.1-ft) on a shared 24 GB card (RTX 4090 / RTX 3090), next to other jobs.
# Sized by kvfit for: 8 requests of 8,192 tokens resident, vLLM under 9 GB of the card:
#   kvfit check canopylabs/orpheus-3b-0.1-ft --gpu "RTX 4090" --quantization fp8 \
#       --gpu-memory-utilization 0.35 --max-vram 9GB --context 8192 --concurrency 8 --format serve
# FP8 weights (quantized at load) and an FP8 KV cache; at most 8 sequences scheduled at once.
# Re-checked in CI by examples/kvfit.toml.
set -euo pipefail

exec vllm serve canopylabs/orpheus-3b-0.1-ft \
    --gpu-memory-utilization 0.35 \
    --quantization fp8 \
    --max-model-len 8192 \
    --kv-cache-dtype fp8 \
    --max-num-seqs 8 \
    --served-model-name orpheus \
    --port 8000
