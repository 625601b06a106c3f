#!/usr/bin/env bash
# The same Orpheus deployment as serve.sh, in vLLM's OpenAI-compatible container
# (kvfit check ... --format docker, plus a name and a restart policy).
set -euo pipefail

docker run -d --name orpheus --restart unless-stopped \
    --runtime nvidia \
    --gpus '"device=0"' \
    -v ~/.cache/huggingface:/root/.cache/huggingface \
    --env HF_TOKEN \
    -p 8000:8000 \
    --ipc=host \
    vllm/vllm-openai:latest \
    --model canopylabs/orpheus-3b-0.1-ft \
    --gpu-memory-utilization 0.35 \
    --quantization fp8 \
    --max-model-len 8192 \
    --kv-cache-dtype fp8 \
    --max-num-seqs 8 \
    --served-model-name orpheus
