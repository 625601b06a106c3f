"""vLLM's own command line as data: every flag `vllm serve` knows (0.32, plus flags older releases had), its
kind (switch, one value, several values), the aliases, and how vLLM spells a name canonically. Pure data.
"""

from __future__ import annotations

import re

FORMS = ("serve", "docker", "yaml", "python", "env", "k8s", "helm")

# --- what vLLM's CLI knows (vLLM 0.32 `vllm serve --help`, plus flags older releases had) -------------

_BOOL = """trust-request-chat-template trust-request-mm-kwargs return-tokens-as-token-ids enable-auto-tool-choice
exclude-tools-when-tool-choice-none enable-prompt-tokens-details enable-per-request-metrics
enable-server-load-tracking enable-force-include-usage enable-tokenizer-info-endpoint enable-log-outputs
enable-log-deltas cohere-is-reasoning-model log-error-stack tokens-only enable-scale-out disable-uvicorn-access-log
allow-credentials enable-ssl-refresh enable-request-id-headers disable-fastapi-docs enable-offline-docs
enable-flash-late-interaction trust-remote-code allow-deprecated-quantization enforce-eager
enable-return-routed-experts return-sampling-mask use-fp64-gumbel enable-trace-replay disable-sliding-window
disable-cascade-attn skip-tokenizer-init enable-prompt-embeds enable-sleep-mode sleep-mode-offload-cudagraph
enable-cumem-allocator enable-nccl-comm-suspend use-tqdm-on-load enable-mamba-cache-stochastic-rounding numa-bind
dcp-q-replicate data-parallel-hybrid-lb data-parallel-external-lb enable-hc-sp enable-expert-parallel
enable-batch-sharded-sampling enable-ep-weight-filter enable-dbo enable-shm-tensor-arena enable-elastic-ep
disable-nccl-for-dp-synchronization enable-eplb ray-workers-use-nsight disable-custom-all-reduce
enable-fault-tolerance enable-prefix-caching kv-sharing-fast-prefill swa-bounded-replay
enable-mamba-shared-prefix-checkpoint use-replayssm language-model-only enable-mm-embeds mm-encoder-only
interleave-mm-strings skip-mm-profiling mm-device-do-normalize enable-lora enable-tower-connector-lora
fully-sharded-loras specialize-active-lora enable-mixed-moe-lora-format enable-moe-shared-loras kv-cache-metrics
cudagraph-metrics enable-layerwise-nvtx-tracing enable-mfu-metrics enable-logging-iteration-details
jit-monitor-verbose long-prefill-token-threshold-adaptive enable-chunked-prefill disable-chunked-mm-input
scheduler-reserve-full-isl disable-hybrid-kv-cache-manager async-scheduling enable-flashinfer-autotune
fail-on-environ-validation enable-log-requests calculate-kv-scales""".split()
_TRUE = """headless grpc data-parallel-multi-port-external-lb disable-log-stats aggregate-engine-logging
disable-log-requests disable-frontend-multiprocessing use-v2-block-manager enable-reasoning
disable-async-output-proc worker-use-ray engine-use-ray""".split()
_MULTI = """lora-modules api-key middleware allowed-media-domains served-model-name sleep-preserve-parameter-names
logits-processors ignore-patterns numa-bind-nodes numa-bind-cpus kv-cache-dtype-skip-layers cpu-offload-params
offload-params lora-target-modules collect-detailed-traces cudagraph-capture-sizes prompt-adapters""".split()
_OPTIONAL = ["hf-token"]
_ONE = """api-server-count config chat-template chat-template-content-format default-chat-template-kwargs response-role
tool-call-parser tool-parser-plugin tool-strict-level tool-server max-log-len sse-keep-alive-interval cohere-format
anthropic-disabled-thinking-effort fingerprint-mode fingerprint-value host port grpc-port
data-parallel-supervisor-port dp-supervisor-probe-interval-s dp-supervisor-probe-timeout-s
dp-supervisor-probe-failure-threshold uds uvicorn-log-level disable-access-log-for-endpoints allowed-origins
allowed-methods allowed-headers ssl-keyfile ssl-certfile ssl-ca-certs ssl-cert-reqs ssl-ciphers root-path
h11-max-incomplete-event-size h11-max-header-count model runner convert tokenizer tokenizer-mode dtype seed
hf-config-path allowed-local-media-path revision code-revision tokenizer-revision max-model-len quantization
quantization-config max-logprobs logprobs-mode config-format hf-overrides model-class-overrides pooler-config
generation-config override-generation-config model-impl io-processor-plugin renderer-num-workers load-format
download-dir safetensors-load-strategy safetensors-prefetch-num-threads safetensors-prefetch-block-size
model-loader-extra-config pt-load-map-location attention-backend mamba-backend mamba-ssu-algorithm
mamba-cache-philox-rounds reasoning-parser reasoning-parser-plugin distributed-executor-backend
pipeline-parallel-size master-addr master-port nnodes node-rank distributed-timeout-seconds
cpu-distributed-timeout-seconds device-ids tensor-parallel-size decode-context-parallel-size dcp-comm-backend
dcp-kv-cache-interleave-size cp-kv-cache-interleave-size prefill-context-parallel-size data-parallel-size
data-parallel-rank data-parallel-start-rank data-parallel-size-local data-parallel-address data-parallel-rpc-port
data-parallel-backend all2all-backend ubatch-size elastic-ep-max-dp-size dbo-decode-token-threshold
dp-sync-interval dbo-prefill-token-threshold eplb-config expert-placement-strategy max-parallel-loading-workers
worker-cls worker-extension-cls fault-tolerance-config block-size gpu-memory-utilization kv-cache-memory-bytes
kv-cache-dtype num-gpu-blocks-override prefix-caching-hash-algo prefix-cache-retention-interval mamba-cache-dtype
mamba-ssm-cache-dtype mamba-block-size prefix-match-unit mamba-cache-mode replayssm-buffer-len kv-offloading-size
kv-offloading-backend offload-backend cpu-offload-gb offload-group-size offload-num-in-group offload-prefetch-step
limit-mm-per-prompt media-io-kwargs mm-processor-kwargs mm-processor-cache-gb mm-processor-cache-type
mm-hasher-algorithm mm-shm-cache-max-object-size-mb mm-encoder-tp-mode mm-encoder-attn-backend
mm-encoder-attn-dtype mm-encoder-fp8-scale-path mm-encoder-fp8-scale-save-path mm-encoder-fp8-scale-save-margin
video-pruning-rate video-pruning-method mm-tensor-ipc mm-processor-device mm-ipc-gpu-memory-gb max-loras
max-lora-rank lora-dtype max-cpu-loras default-mm-loras max-lora-cls-labels logging-config log-level
log-config-file show-hidden-metrics-for-version otlp-traces-endpoint per-request-spec-decode-metrics
kv-cache-metrics-sample custom-histogram-buckets jit-monitor-mode max-num-batched-tokens max-num-scheduled-tokens
max-num-seqs max-num-active-seqs max-num-queued-reqs max-num-queued-tokens long-prefill-token-threshold
scheduling-policy scheduler-cls watermark prefill-schedule-interval stream-interval max-cudagraph-capture-size
ir-op-priority moe-backend linear-backend sparse-indexer-topk-backend speculative-config spec-method spec-model
spec-tokens watermark-config diffusion-config kv-transfer-config kv-events-config ec-transfer-config
ec-manager-config compilation-config attention-config engram-config reasoning-config kernel-config
additional-config structured-outputs-config aux-output-config profiler-config optimization-level performance-mode
weight-transfer-config shutdown-timeout gdn-prefill-backend kda-prefill-backend kda-decode-backend
device swap-space max-seq-len-to-capture num-scheduler-steps guided-decoding-backend task tokenizer-pool-size
rope-scaling rope-theta speculative-model num-speculative-tokens preemption-mode num-lookahead-slots
max-context-len-to-capture cpu-offload-gb""".split()
ALIASES = {"-asc": "api-server-count", "-q": "quantization", "-pp": "pipeline-parallel-size", "-n": "nnodes",
           "-r": "node-rank", "-tp": "tensor-parallel-size", "-dcp": "decode-context-parallel-size",
           "-pcp": "prefill-context-parallel-size", "-dp": "data-parallel-size", "-dpn": "data-parallel-rank",
           "-dpr": "data-parallel-start-rank", "-dpl": "data-parallel-size-local", "-dpa": "data-parallel-address",
           "-dpp": "data-parallel-rpc-port", "-dpb": "data-parallel-backend", "-dph": "data-parallel-hybrid-lb",
           "-dpe": "data-parallel-external-lb", "-dpm": "data-parallel-multi-port-external-lb",
           "-ep": "enable-expert-parallel", "--device-memory-utilization": "gpu-memory-utilization",
           "-sc": "speculative-config", "-dc": "diffusion-config", "-cc": "compilation-config",
           "-ac": "attention-config"}
KIND: dict[str, str] = {**{k: "one" for k in _ONE}, **{k: "bool" for k in _BOOL}, **{k: "true" for k in _TRUE},
                        **{k: "multi" for k in _MULTI}, **{k: "optional" for k in _OPTIONAL}}
_INT = set("""api-server-count sse-keep-alive-interval port seed max-model-len max-logprobs pipeline-parallel-size
master-port nnodes node-rank tensor-parallel-size decode-context-parallel-size prefill-context-parallel-size
data-parallel-size data-parallel-rank data-parallel-start-rank data-parallel-size-local data-parallel-rpc-port
block-size max-loras max-lora-rank max-num-batched-tokens max-num-seqs long-prefill-token-threshold
stream-interval cudagraph-capture-sizes max-cudagraph-capture-size spec-tokens shutdown-timeout
kv-cache-memory-bytes num-gpu-blocks-override max-num-scheduled-tokens swap-space max-seq-len-to-capture
num-scheduler-steps num-speculative-tokens""".split())
_HUMAN_INT = {"max-model-len", "max-num-batched-tokens", "kv-cache-memory-bytes", "safetensors-prefetch-block-size"}
_FLOAT = set("""gpu-memory-utilization cpu-offload-gb mm-processor-cache-gb mm-ipc-gpu-memory-gb watermark
kv-cache-metrics-sample""".split())
_JSON = set("""default-chat-template-kwargs allowed-origins allowed-methods allowed-headers hf-overrides
model-class-overrides override-generation-config model-loader-extra-config eplb-config fault-tolerance-config
limit-mm-per-prompt media-io-kwargs logging-config compilation-config attention-config kernel-config
additional-config structured-outputs-config aux-output-config profiler-config speculative-config
kv-transfer-config kv-events-config ec-transfer-config quantization-config pooler-config mm-processor-kwargs
reasoning-config weight-transfer-config rope-scaling""".split())
# `vllm serve` frontend arguments: the LLM class / EngineArgs do not take them.
FRONTEND = set("""headless api-server-count config grpc lora-modules chat-template chat-template-content-format
trust-request-chat-template trust-request-mm-kwargs default-chat-template-kwargs response-role
return-tokens-as-token-ids enable-auto-tool-choice exclude-tools-when-tool-choice-none tool-call-parser
tool-parser-plugin tool-strict-level tool-server max-log-len enable-prompt-tokens-details enable-per-request-metrics
enable-server-load-tracking enable-force-include-usage sse-keep-alive-interval enable-tokenizer-info-endpoint
enable-log-outputs enable-log-deltas cohere-is-reasoning-model cohere-format anthropic-disabled-thinking-effort
log-error-stack tokens-only enable-scale-out fingerprint-mode fingerprint-value host port grpc-port
data-parallel-supervisor-port dp-supervisor-probe-interval-s dp-supervisor-probe-timeout-s
dp-supervisor-probe-failure-threshold uds uvicorn-log-level disable-uvicorn-access-log
disable-access-log-for-endpoints allow-credentials allowed-origins allowed-methods allowed-headers api-key
ssl-keyfile ssl-certfile ssl-ca-certs enable-ssl-refresh ssl-cert-reqs ssl-ciphers root-path middleware
enable-request-id-headers disable-fastapi-docs h11-max-incomplete-event-size h11-max-header-count
enable-offline-docs enable-flash-late-interaction disable-log-requests enable-log-requests
disable-frontend-multiprocessing""".split())
# vLLM flags that change GPU memory in ways kvfit does not model: a launch that sets one is refused with
# exit 2 naming it (never dropped, never silently sized without it). The flags kvfit models are the vLLM
# flags of kvfit/flags.py; every other flag vLLM knows does not touch GPU memory and passes through.
NOT_MODELLED = {
    "speculative-model": "old-style speculative decoding (use --speculative-config)",
    "num-speculative-tokens": "old-style speculative decoding (use --speculative-config)",
    "mm-encoder-tp-mode": "the encoder's weights per GPU",
    "compilation-config": "CUDA-graph capture", "cudagraph-capture-sizes": "CUDA-graph capture",
    "max-cudagraph-capture-size": "CUDA-graph capture", "max-seq-len-to-capture": "CUDA-graph capture",
    "optimization-level": "compilation and CUDA-graph capture", "kv-offloading-size": "KV offloading",
    "kv-offloading-backend": "KV offloading", "kv-transfer-config": "KV transfer (disaggregated serving)",
    "mamba-cache-mode": "mamba state caching",
    "mamba-block-size": "mamba state blocks", "kv-cache-dtype-skip-layers": "per-layer KV dtypes",
    "quantization-config": "online quantization settings", "num-scheduler-steps": "V0 multi-step scheduling",
    "offload-group-size": "weight offloading", "offload-num-in-group": "weight offloading",
    "offload-prefetch-step": "weight offloading", "cpu-offload-params": "weight offloading",
    "offload-params": "weight offloading", "offload-backend": "weight offloading",
    "attention-backend": "the attention backend's block size and workspace", "enable-dbo": "dual-batch overlap",
    "ubatch-size": "micro-batching", "mm-processor-cache-gb": "the multimodal processor cache",
    "enable-eplb": "expert load balancing (redundant experts)", "eplb-config": "expert load balancing",
    "kernel-config": "kernel workspaces", "moe-backend": "the fused-MoE workspace",
    "mm-ipc-gpu-memory-gb": "GPU memory for multimodal IPC, taken from the KV cache",
    "language-model-only": "a multimodal model without its encoders (weights and profiling)",
    "mm-encoder-only": "an encoder-only multimodal launch",
}
# Values of flags that are vLLM's defaults and so change nothing: allowed even though the flag is listed above.
NOT_MODELLED_DEFAULTS = {"enable-eplb": ("False", "false"), "enable-dbo": ("False", "false"),
                         "language-model-only": ("False", "false"), "mm-encoder-only": ("False", "false"),
                         "mm-ipc-gpu-memory-gb": ("0", "0.0")}


ASSIGN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_NEGNUM = re.compile(r"^-\d")


def canonical(flag: str) -> tuple[str, bool]:
    """'--max_model_len' -> ('max-model-len', False); '--no-enforce-eager' -> ('enforce-eager', True); '-tp' -> ..."""
    if flag in ALIASES:
        return ALIASES[flag], False
    name = flag.lstrip("-")
    head, dot, tail = name.partition(".")
    name = head.replace("_", "-") + dot + tail
    if "--" + name in ALIASES:
        return ALIASES["--" + name], False
    if name.startswith("no-") and KIND.get(name[3:]) == "bool":
        return name[3:], True
    if flag.startswith("--") and "." not in name and name not in KIND:
        # vLLM's parser is argparse with allow_abbrev on (utils/argparse_utils.py FlexibleArgumentParser):
        # an unambiguous prefix of a long option is that option (--max-num-seq is --max-num-seqs)
        hits = [k for k in KIND if k.startswith(name)]
        if len(hits) == 1:
            return hits[0], False
    return name, False


def kind_of(key: str) -> str:
    if "." in key:
        return "one"
    return KIND.get(key, "unknown")


def is_known(key: str) -> bool:
    return key.split(".", 1)[0] in KIND


def is_flag(tok: str) -> bool:
    return tok.startswith("-") and len(tok) > 1 and not _NEGNUM.match(tok)


