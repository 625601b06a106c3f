"""The user's vLLM launch as data, read from and written back to the forms people paste.

Forms:
  serve   `vllm serve MODEL --flag value ...` (also `python -m vllm.entrypoints.openai.api_server ...`,
          env assignments such as `CUDA_VISIBLE_DEVICES=0,1` before it, a shell script around it)
  docker  `docker run [docker options] vllm/vllm-openai[:tag] [vLLM arguments]` (podman too)
  yaml    a vLLM `--config` file: `key: value` lines (vLLM turns them into `--key value`)
  python  `LLM(model=..., max_model_len=...)` / `EngineArgs(...)`, read with `ast` (never evaluated)
  env     `KEY=VALUE` lines (`MODEL_NAME`, `MAX_MODEL_LEN`, ...), the convention of vLLM worker images
          (a docker `--env-file`)

A Launch keeps every argument in order, spelled as written; arguments kvfit does not model, or does not
know, are kept and rendered back untouched. The property the tests hold it to:
`parse(render(parse(x))) == parse(x)` for every form. Equality ignores spelling details (`--max_model_len`
vs `--max-model-len`, `--flag=value` vs `--flag value`) but not order or values.

Pure: no files, no network. The caller reads files and passes the text.
"""

from __future__ import annotations

import ast
import json
import re
import shlex
from dataclasses import dataclass, field, replace
from typing import Any

from .errors import BadInput

FORMS = ("serve", "docker", "yaml", "python", "env")

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
# What kvfit's memory model reads from a launch.
MODELLED = {"model", "max-model-len", "gpu-memory-utilization", "tensor-parallel-size", "pipeline-parallel-size",
            "dtype", "kv-cache-dtype", "block-size", "max-num-seqs", "max-num-batched-tokens", "enforce-eager",
            "kv-cache-memory-bytes", "num-gpu-blocks-override", "disable-sliding-window", "quantization",
            "cpu-offload-gb", "revision", "device", "config"}
# vLLM flags that change memory in ways kvfit does not model yet: kept, with a note.
NOT_MODELLED = {"speculative-config", "speculative-model", "num-speculative-tokens", "spec-method", "spec-model",
                "spec-tokens", "enable-lora", "max-loras", "max-lora-rank", "max-cpu-loras", "limit-mm-per-prompt",
                "hf-overrides", "rope-scaling", "rope-theta", "compilation-config", "cudagraph-capture-sizes",
                "max-cudagraph-capture-size", "kv-offloading-size", "kv-transfer-config", "data-parallel-size",
                "decode-context-parallel-size", "prefill-context-parallel-size", "mamba-cache-dtype",
                "mamba-ssm-cache-dtype", "mamba-cache-mode", "mamba-block-size", "optimization-level",
                "calculate-kv-scales", "kv-cache-dtype-skip-layers", "enable-expert-parallel", "quantization-config",
                "mm-processor-cache-gb", "skip-mm-profiling", "max-seq-len-to-capture", "num-scheduler-steps",
                "enable-chunked-prefill", "disable-hybrid-kv-cache-manager", "offload-group-size",
                "offload-num-in-group", "cpu-offload-params", "offload-params", "offload-backend"}


@dataclass(frozen=True)
class Expr:
    """A Python argument that is not a literal (a variable, a call): kept as its source text."""

    src: str


@dataclass(frozen=True)
class Arg:
    """One argument. key: vLLM's flag name without dashes ('max-model-len'); '' for an extra positional.

    value: True / False for flags; str (CLI and env forms, as written); int / float / str / list / dict /
    None / Expr (YAML and Python forms, as typed); tuple[str, ...] for multi-valued CLI flags.
    """

    key: str
    value: Any
    spelling: str | None = field(default=None, compare=False)   # as written: '--max_model_len', '-tp', 'MAX_MODEL_LEN'
    joined: bool = field(default=False, compare=False)           # '--flag=value'


POSITIONAL = "#"     # spelling of a positional model argument


@dataclass(frozen=True)
class Launch:
    form: str
    args: tuple[Arg, ...]
    program: tuple[str, ...] = ()       # ('vllm', 'serve') | ('python', '-m', 'vllm....api_server') | ('docker', 'run') | ('LLM',)
    prefix: tuple[str, ...] = ()        # shell: env assignments / exec before the program; python: the assigned name
    docker: tuple[tuple[str, ...], ...] = ()   # docker options, one group per option
    image: str | None = None
    inner: tuple[str, ...] = ()         # docker: the command after the image ('vllm', 'serve')
    env: tuple[tuple[str, str], ...] = ()      # env form: variables that are not vLLM arguments
    text: str | None = field(default=None, compare=False)       # the file or script it came from
    span: tuple[int, int] | None = field(default=None, compare=False)   # where in `text` the launch is
    pristine: tuple | None = field(default=None, compare=False)         # args as read from `text`

    def __post_init__(self) -> None:
        if self.text is not None and self.pristine is None:
            object.__setattr__(self, "pristine", self.args)

    @property
    def unchanged(self) -> bool:
        """Read from a text and not changed since: rendering it gives that text back."""
        return self.text is not None and self.pristine == self.args

    # --- reading ---
    @property
    def model(self) -> str | None:
        v = self.get("model")
        return v if isinstance(v, str) else None

    def get(self, key: str, default: Any = None) -> Any:
        """The value vLLM ends up with: the last occurrence wins (argparse semantics)."""
        for a in reversed(self.args):
            if a.key == key:
                return a.value
        return default

    def has(self, key: str) -> bool:
        return any(a.key == key for a in self.args)

    @property
    def environment(self) -> dict[str, str]:
        """Environment variables the launch sets (shell prefix, docker -e, env form)."""
        out: dict[str, str] = {}
        for tok in self.prefix:
            if _ASSIGN.match(tok):
                k, _, v = tok.partition("=")
                out[k] = v
        for group in self.docker:
            if group[0] in ("-e", "--env") and len(group) == 2 and "=" in group[1]:
                k, _, v = group[1].partition("=")
                out[k] = v
            elif group[0].startswith(("--env=", "-e=")) and "=" in group[0].split("=", 1)[1]:
                k, _, v = group[0].split("=", 1)[1].partition("=")
                out[k] = v
        out.update(dict(self.env))
        return out


# --- canonical names ------------------------------------------------------------------------------

_ASSIGN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
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
    return name, False


def kind_of(key: str) -> str:
    if "." in key:
        return "one"
    return KIND.get(key, "unknown")


def is_known(key: str) -> bool:
    return key.split(".", 1)[0] in KIND


def _is_flag(tok: str) -> bool:
    return tok.startswith("-") and len(tok) > 1 and not _NEGNUM.match(tok)


# --- CLI arguments (serve and docker) ---------------------------------------------------------------

def parse_vllm_args(tokens: list[str], allow_positional_model: bool = True) -> tuple[Arg, ...]:
    """vLLM's own arguments as argparse would read them (given its table of flags)."""
    args: list[Arg] = []
    have_model = False
    j, n = 0, len(tokens)
    while j < n:
        tok = tokens[j]
        if not _is_flag(tok):
            if allow_positional_model and not have_model:
                args.append(Arg("model", tok, POSITIONAL))
                have_model = True
            else:
                args.append(Arg("", tok, ""))
            j += 1
            continue
        if tok.startswith("-O") and tok != "-O" and not tok.startswith("--"):
            level = tok[3:] if tok[2:3] == "=" else tok[2:]
            args.append(Arg("optimization-level", level, "-O", joined=True))
            j += 1
            continue
        joined = tok.startswith("--") and "=" in tok
        name, raw = (tok.split("=", 1) if joined else (tok, None))
        key, negated = canonical(name)
        kind = kind_of(key)
        j += 1
        if joined:
            value: Any = raw
        elif negated:
            value = False
        elif kind in ("bool", "true"):
            value = True
        elif kind == "one":
            if j >= n or _is_flag(tokens[j]):
                raise BadInput(f"launch: {name} needs a value")
            value = tokens[j]
            j += 1
        else:                                   # multi, optional, unknown: every following non-flag token
            vals = []
            while j < n and not _is_flag(tokens[j]):
                vals.append(tokens[j])
                j += 1
            if kind == "multi" and not vals:
                raise BadInput(f"launch: {name} needs at least one value")
            if kind == "multi":
                value = tuple(vals)
            else:
                value = True if not vals else vals[0] if len(vals) == 1 else tuple(vals)
        if key == "model":
            have_model = True
        args.append(Arg(key, value, name, joined))
    return tuple(args)


def _split_shell(text: str) -> list[str]:
    text = re.sub(r"\\\r?\n", " ", text)
    try:
        return shlex.split(text, comments=True)
    except ValueError as e:
        raise BadInput(f"launch: cannot split the command line ({e})", "Check the quotes.") from None


_SERVE_START = re.compile(r"^(?:[A-Za-z_][A-Za-z0-9_]*=\S*\s+)*(?:exec\s+|nohup\s+|sudo\s+(?:-E\s+)?)*"
                          r"(?:\S*/)?(?:vllm\s+serve\b|python[0-9.]*\s+-m\s+vllm\.entrypoints\.)")
_DOCKER_START = re.compile(r"^(?:[A-Za-z_][A-Za-z0-9_]*=\S*\s+)*(?:exec\s+|sudo\s+(?:-E\s+)?)*"
                           r"(?:docker|podman)\s+(?:container\s+)?run\b")


def _command_span(text: str, start_re: re.Pattern) -> tuple[int, int] | None:
    """Where the command starts and ends in a script: the first matching line and its continuations."""
    pos = 0
    lines = text.splitlines(keepends=True)
    for i, line in enumerate(lines):
        if start_re.match(line.strip()):
            start = pos + len(line) - len(line.lstrip())
            end = pos + len(line)
            k = i
            while lines[k].rstrip("\r\n").endswith("\\") and k + 1 < len(lines):
                k += 1
                end += len(lines[k])
            body = text[start:end]
            return start, start + len(body.rstrip("\r\n"))
        pos += len(line)
    return None


_PROGRAM_PREFIX = {"exec", "nohup", "sudo", "-E"}


def parse_argv(tokens: list[str], *, text: str | None = None, span: tuple[int, int] | None = None) -> Launch:
    """A launch given as shell words: `vllm serve ...`, `python -m vllm.entrypoints...`, `docker run ...`."""
    tokens = list(tokens)
    i = 0
    prefix: list[str] = []
    while i < len(tokens) and (_ASSIGN.match(tokens[i]) or tokens[i] in _PROGRAM_PREFIX):
        prefix.append(tokens[i])
        i += 1
    if i >= len(tokens):
        raise BadInput("launch: no command given", "Pass `-- vllm serve MODEL ...` or `-- docker run ... vllm/vllm-openai ...`.")
    head = tokens[i]
    base = head.rsplit("/", 1)[-1]
    if base in ("docker", "podman"):
        return _parse_docker(tokens, i, tuple(prefix), text, span)
    program, rest = _program(tokens, i)
    if program is None:
        raise BadInput(f"launch: {' '.join(tokens[i:i + 3])!r} is not a vLLM launch kvfit reads",
                       "kvfit reads `vllm serve MODEL ...`, `python -m vllm.entrypoints.openai.api_server ...` and "
                       "`docker run ... vllm/vllm-openai ...`; YAML configs and Python files with --launch FILE.")
    args = parse_vllm_args(tokens[rest:], allow_positional_model=program[-1] == "serve")
    return Launch("serve", args, program, tuple(prefix), text=text, span=span)


def _program(tokens: list[str], i: int) -> tuple[tuple[str, ...] | None, int]:
    if i < len(tokens) and tokens[i].rsplit("/", 1)[-1] == "vllm" and i + 1 < len(tokens) and tokens[i + 1] == "serve":
        return (tokens[i], "serve"), i + 2
    if (i + 2 < len(tokens) and re.match(r"^(?:\S*/)?python[0-9.]*$", tokens[i]) and tokens[i + 1] == "-m"
            and tokens[i + 2].startswith("vllm.entrypoints")):
        return (tokens[i], "-m", tokens[i + 2]), i + 3
    return None, i


# docker run options that take a value (docker CLI reference); others are switches.
_DOCKER_VALUED = set("""-v --volume -e --env -p --publish --name --gpus --runtime --ipc --shm-size --network --net
--entrypoint -w --workdir --env-file --device --mount -u --user --restart -m --memory --memory-swap --cpus
--cpuset-cpus --cpuset-mems --ulimit -l --label --label-file --cap-add --cap-drop --security-opt --platform --pull
-h --hostname --add-host --log-driver --log-opt --group-add --tmpfs --stop-signal --stop-timeout --uts --pid
--cgroupns --cgroup-parent --cidfile --dns --dns-search --dns-option --expose --link --mac-address --ip --ip6
--oom-score-adj --storage-opt --sysctl --volumes-from --device-cgroup-rule --health-cmd --health-interval
--health-retries --health-timeout --health-start-period --userns --isolation --kernel-memory --pids-limit
--cpu-shares -c --blkio-weight --attach -a --network-alias --annotation""".split())
_DOCKER_SWITCH_LETTERS = set("ditP")


def _parse_docker(tokens: list[str], i: int, prefix: tuple[str, ...], text, span) -> Launch:
    program = [tokens[i]]
    i += 1
    if i < len(tokens) and tokens[i] == "container":
        program.append(tokens[i])
        i += 1
    if i >= len(tokens) or tokens[i] != "run":
        raise BadInput("launch: kvfit reads `docker run ...` commands")
    program.append("run")
    i += 1
    groups: list[tuple[str, ...]] = []
    while i < len(tokens) and tokens[i].startswith("-"):
        tok = tokens[i]
        if tok == "--":
            i += 1
            break
        if "=" in tok and tok.startswith("--"):
            groups.append((tok,))
            i += 1
        elif tok in _DOCKER_VALUED:
            if i + 1 >= len(tokens):
                raise BadInput(f"launch: docker option {tok} needs a value")
            groups.append((tok, tokens[i + 1]))
            i += 2
        elif not tok.startswith("--") and len(tok) > 2 and tok[:2] in _DOCKER_VALUED:
            groups.append((tok,))                  # -p8000:8000, -eKEY=VALUE
            i += 1
        elif not tok.startswith("--") and set(tok[1:]) <= _DOCKER_SWITCH_LETTERS:
            groups.append((tok,))                  # -d, -it, -dit
            i += 1
        elif tok.startswith("--") and tok not in ("--rm", "--detach", "--interactive", "--tty", "--privileged",
                                                  "--init", "--read-only", "--publish-all", "--oom-kill-disable",
                                                  "--no-healthcheck", "--quiet", "--sig-proxy") \
                and i + 1 < len(tokens) and not tokens[i + 1].startswith("-") and i + 2 < len(tokens):
            groups.append((tok, tokens[i + 1]))    # an option kvfit does not know: assume it takes a value
            i += 2
        else:
            groups.append((tok,))
            i += 1
    if i >= len(tokens):
        raise BadInput("launch: the docker command names no image", "Expected `docker run [options] vllm/vllm-openai[:tag] ...`.")
    image = tokens[i]
    i += 1
    inner, start = _program(tokens, i)
    if inner is None:
        inner, start = (), i
    args = parse_vllm_args(tokens[start:], allow_positional_model=not inner or inner[-1] == "serve")
    return Launch("docker", args, tuple(program), prefix, tuple(groups), image, tuple(inner), text=text, span=span)


def parse_shell(text: str) -> Launch:
    """A command line or a shell script holding one `vllm serve` / `docker run` command."""
    for pattern in (_DOCKER_START, _SERVE_START):
        span = _command_span(text, pattern)
        if span is not None:
            return parse_argv(_split_shell(text[span[0]:span[1]]), text=text, span=span)
    tokens = _split_shell(text)
    return parse_argv(tokens)


# --- YAML (vLLM --config files) ---------------------------------------------------------------------

class YamlError(ValueError):
    pass


_Y_BOOL = re.compile(r"^(?:yes|Yes|YES|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF)$")
_Y_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")
_Y_INT = re.compile(r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+"
                    r"|[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+)$")
_Y_FLOAT = re.compile(r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?|\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?"
                      r"|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$")


def _sexagesimal(text: str, conv) -> Any:
    sign = -1 if text.startswith("-") else 1
    parts = text.lstrip("+-").split(":")
    value = 0
    for p in parts:
        value = value * 60 + conv(p)
    return sign * value


def yaml_scalar(text: str) -> Any:
    """A plain scalar resolved the way PyYAML's safe_load (YAML 1.1) resolves it (vLLM uses PyYAML)."""
    t = text.strip()
    if _Y_NULL.match(t):
        return None
    if _Y_BOOL.match(t):
        return t.lower() in ("yes", "true", "on")
    if _Y_INT.match(t):
        s = t.replace("_", "")
        sign = -1 if s.startswith("-") else 1
        body = s.lstrip("+-")
        if ":" in body:
            return _sexagesimal(s, int)
        if body.startswith("0b"):
            return sign * int(body[2:], 2)
        if body.startswith("0x"):
            return sign * int(body[2:], 16)
        if len(body) > 1 and body.startswith("0"):
            return sign * int(body, 8)
        return sign * int(body)
    if _Y_FLOAT.match(t):
        s = t.replace("_", "").lower()
        if s.endswith(".inf"):
            return float("-inf") if s.startswith("-") else float("inf")
        if s.endswith(".nan"):
            return float("nan")
        if ":" in s:
            return float(_sexagesimal(s, float))
        return float(s)
    return t


def _unquote(text: str, lineno: int) -> tuple[str, str]:
    """A quoted scalar at the start of text -> (value, rest)."""
    q = text[0]
    if q == "'":
        out, i = [], 1
        while i < len(text):
            if text[i] == "'":
                if text[i + 1:i + 2] == "'":
                    out.append("'")
                    i += 2
                    continue
                return "".join(out), text[i + 1:]
            out.append(text[i])
            i += 1
        raise YamlError(f"line {lineno}: unterminated quoted string")
    i = 1
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == '"':
            body = text[1:i]
            try:
                return json.loads('"' + body.replace("\t", "\\t") + '"'), text[i + 1:]
            except ValueError:
                raise YamlError(f"line {lineno}: unsupported escape in {text[:i + 1]}") from None
        i += 1
    raise YamlError(f"line {lineno}: unterminated quoted string")


def _strip_comment(s: str) -> str:
    """Drop a trailing ' # comment' outside quotes."""
    q = None
    for i, ch in enumerate(s):
        if q:
            if ch == q:
                q = None
            continue
        if ch in "'\"" and (i == 0 or s[i - 1] in " \t[{,:"):
            q = ch
        elif ch == "#" and (i == 0 or s[i - 1] in " \t"):
            return s[:i].rstrip()
    return s.rstrip()


class _Flow:
    def __init__(self, text: str, lineno: int):
        self.s, self.i, self.lineno = text, 0, lineno

    def ws(self):
        while self.i < len(self.s) and self.s[self.i] in " \t\r\n":
            self.i += 1

    def value(self, in_map: bool = False):
        self.ws()
        c = self.s[self.i:self.i + 1]
        if c == "[":
            self.i += 1
            out = []
            while True:
                self.ws()
                if self.s[self.i:self.i + 1] == "]":
                    self.i += 1
                    return out
                out.append(self.value())
                self.ws()
                c = self.s[self.i:self.i + 1]
                if c == ",":
                    self.i += 1
                elif c != "]":
                    raise YamlError(f"line {self.lineno}: expected , or ] in a flow sequence")
        if c == "{":
            self.i += 1
            out = {}
            while True:
                self.ws()
                if self.s[self.i:self.i + 1] == "}":
                    self.i += 1
                    return out
                k = self.value(in_map=True)
                self.ws()
                if self.s[self.i:self.i + 1] != ":":
                    raise YamlError(f"line {self.lineno}: expected : in a flow mapping")
                self.i += 1
                out[k] = self.value()
                self.ws()
                c = self.s[self.i:self.i + 1]
                if c == ",":
                    self.i += 1
                elif c != "}":
                    raise YamlError(f"line {self.lineno}: expected , or }} in a flow mapping")
        if c in ("'", '"'):
            v, rest = _unquote(self.s[self.i:], self.lineno)
            self.i = len(self.s) - len(rest)
            return v
        if c in ("&", "*", "!"):
            raise YamlError(f"line {self.lineno}: anchors, aliases and tags are not supported")
        start = self.i
        while self.i < len(self.s):
            ch = self.s[self.i]
            if ch in ",]}":
                break
            if ch == ":" and (self.i + 1 >= len(self.s) or self.s[self.i + 1] in " ,]}") and in_map:
                break
            self.i += 1
        return yaml_scalar(self.s[start:self.i])


def _flow(text: str, lineno: int):
    f = _Flow(text, lineno)
    v = f.value()
    f.ws()
    if f.i != len(f.s):
        raise YamlError(f"line {lineno}: unexpected text after a flow collection: {f.s[f.i:]!r}")
    return v


_KEY = re.compile(r"""^(?:"(?:[^"\\]|\\.)*"|'(?:[^']|'')*'|[^\s'"\[\]{}#&*!|>%@`,-][^:#]*?|-[^\s:#][^:#]*?)\s*:(?:\s|$)""")


class _Yaml:
    """A small reader for the YAML vLLM configs, pre-commit files and CI workflows use: block mappings and
    sequences, flow [..] / {..}, quoted and plain scalars (PyYAML's resolution), | and > block scalars."""

    def __init__(self, text: str):
        self.raw = text.replace("\r\n", "\n").split("\n")
        self.over: dict[int, tuple[int, str]] = {}

    def line(self, i: int) -> tuple[int, str] | None:
        """(indent, content) of line i, or None when blank / comment-only."""
        if i in self.over:
            return self.over[i]
        raw = self.raw[i]
        if "\t" in raw[:len(raw) - len(raw.lstrip())]:
            raise YamlError(f"line {i + 1}: tabs are not allowed for indentation")
        body = _strip_comment(raw)
        if not body.strip() or body.strip() in ("---", "..."):
            return None
        return len(body) - len(body.lstrip()), body.strip()

    def next_sig(self, i: int) -> int:
        while i < len(self.raw) and self.line(i) is None:
            i += 1
        return i

    def parse(self):
        i = self.next_sig(0)
        if i >= len(self.raw):
            return None
        value, i = self.block(i, self.line(i)[0])
        i = self.next_sig(i)
        if i < len(self.raw):
            raise YamlError(f"line {i + 1}: unexpected indentation")
        return value

    def block(self, i: int, indent: int):
        ind, content = self.line(i)
        if content == "-" or content.startswith("- "):
            return self.seq(i, ind)
        if _KEY.match(content):
            return self.mapping(i, ind)
        return self.scalar_lines(i, ind)

    def scalar_lines(self, i: int, indent: int):
        return self.value_after(i, indent, self.line(i)[1])

    def flow_lines(self, i: int, content: str):
        text, j = content, i
        depth = lambda s: sum(s.count(c) for c in "[{") - sum(s.count(c) for c in "]}")  # noqa: E731
        while depth(text) > 0:
            j = self.next_sig(j + 1)
            if j >= len(self.raw):
                raise YamlError(f"line {i + 1}: unterminated flow collection")
            text += " " + self.line(j)[1]
        return _flow(text, i + 1), j + 1

    def value_after(self, i: int, ind: int, rest: str):
        """The value of `key: rest` (or `- rest`) on line i at indent ind."""
        if rest == "":
            j = self.next_sig(i + 1)
            if j < len(self.raw):
                nind, ncontent = self.line(j)
                if nind > ind or (nind == ind and (ncontent == "-" or ncontent.startswith("- "))):
                    return self.block(j, nind)
            return None, i + 1
        if rest[0] in "|>":
            return self.block_scalar(i, ind, rest)
        if rest[0] in "[{":
            return self.flow_lines(i, rest)
        if rest[0] in "'\"":
            v, tail = _unquote(rest, i + 1)
            if tail.strip():
                raise YamlError(f"line {i + 1}: unexpected text after a quoted string")
            return v, i + 1
        if rest[0] in "&*!":
            raise YamlError(f"line {i + 1}: anchors, aliases and tags are not supported")
        # plain scalar, possibly continued on more-indented lines
        parts = [rest]
        j = i + 1
        while True:
            k = self.next_sig(j)
            if k >= len(self.raw) or self.line(k)[0] <= ind:
                break
            parts.append(self.line(k)[1])
            j = k + 1
        return yaml_scalar(" ".join(parts)), j

    def block_scalar(self, i: int, ind: int, header: str):
        m = re.match(r"^([|>])([+-]?)(\d?)([+-]?)\s*$", header)
        if not m:
            raise YamlError(f"line {i + 1}: bad block scalar header {header!r}")
        style, chomp = m.group(1), (m.group(2) or m.group(4))
        content_indent = ind + int(m.group(3)) if m.group(3) else None
        body: list[str] = []
        last = i
        j = i + 1
        while j < len(self.raw):
            raw = self.raw[j]
            if raw.strip() == "":
                body.append("")
                j += 1
                continue
            n = len(raw) - len(raw.lstrip(" "))
            if content_indent is None:
                if n <= ind:
                    break
                content_indent = n
            if n < content_indent:
                break
            body.append(raw[content_indent:])
            last = j
            j += 1
        trailing = len(body) - (last - i)
        body = body[:last - i]
        if style == "|":
            text = "\n".join(body)
        else:
            text, prev_blank = "", True
            for ln in body:
                if ln == "":
                    text += "\n"
                    prev_blank = True
                elif ln.startswith(" "):
                    text += ("" if prev_blank else "\n") + ln
                    prev_blank = False
                else:
                    text += ("" if prev_blank else " ") + ln
                    prev_blank = False
        if chomp == "-":
            return text, last + 1
        if chomp == "+":
            return text + "\n" + "\n" * trailing, last + 1
        return (text + "\n") if body else "", last + 1

    def mapping(self, i: int, indent: int):
        out: dict = {}
        while i < len(self.raw):
            i = self.next_sig(i)
            if i >= len(self.raw):
                break
            ind, content = self.line(i)
            if ind < indent:
                break
            if ind > indent:
                raise YamlError(f"line {i + 1}: unexpected indentation")
            m = _KEY.match(content)
            if not m:
                break
            keytext = content[:m.end()].rstrip()[:-1].strip()
            if keytext[:1] in "'\"":
                key, _ = _unquote(keytext, i + 1)
            else:
                key = yaml_scalar(keytext)
            rest = content[m.end():].strip()
            value, i = self.value_after(i, ind, rest)
            out[key] = value
        return out, i

    def seq(self, i: int, indent: int):
        out: list = []
        while i < len(self.raw):
            i = self.next_sig(i)
            if i >= len(self.raw):
                break
            ind, content = self.line(i)
            if ind != indent or not (content == "-" or content.startswith("- ")):
                if ind > indent:
                    raise YamlError(f"line {i + 1}: unexpected indentation")
                break
            rest = content[1:].lstrip()
            col = ind + (len(content) - len(rest))
            if rest and _KEY.match(rest) and rest[0] not in "[{":
                self.over[i] = (col, rest)
                value, i = self.mapping(i, col)
            elif rest.startswith("- "):
                self.over[i] = (col, rest)
                value, i = self.seq(i, col)
            else:
                value, i = self.value_after(i, ind, rest)
            out.append(value)
        return out, i


def yaml_load(text: str):
    """Read YAML with kvfit's small reader; PyYAML (if installed) only for what the reader does not support."""
    try:
        return _Yaml(text).parse()
    except YamlError as e:
        try:
            import yaml  # type: ignore[import-not-found]
        except ImportError:
            raise BadInput(f"YAML: {e}", "kvfit's YAML reader covers vLLM config files; install PyYAML for more.") from None
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as e2:
            raise BadInput(f"YAML: {e2}") from None


def parse_yaml(text: str) -> Launch:
    data = yaml_load(text)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise BadInput("launch: a vLLM --config file must be a mapping of `key: value` lines")
    args = []
    for k, v in data.items():
        if not isinstance(k, str):
            raise BadInput(f"launch: config key {k!r} is not a string")
        key, _ = canonical("--" + k)
        args.append(Arg(key, v, k))
    return Launch("yaml", tuple(args), text=text)


# --- Python (LLM / EngineArgs calls) --------------------------------------------------------------------

CALLS = ("LLM", "EngineArgs", "AsyncEngineArgs", "AsyncLLM")


def _call_name(node: ast.Call) -> str | None:
    f = node.func
    name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None
    return name if name in CALLS else None


def _literal(node: ast.AST, text: str) -> Any:
    try:
        v = ast.literal_eval(node)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return Expr(ast.get_source_segment(text, node) or "")
    if v is Ellipsis or isinstance(v, (bytes, complex, set, frozenset)):
        return Expr(ast.get_source_segment(text, node) or "")
    if isinstance(v, tuple):
        return list(v)
    return v


def _offsets(text: str) -> list[int]:
    out, pos = [], 0
    for line in text.splitlines(keepends=True):
        out.append(pos)
        pos += len(line)
    out.append(pos)
    return out


def parse_python(text: str) -> Launch:
    """The first LLM(...) / EngineArgs(...) call in a Python snippet or file; literals only, never evaluated."""
    try:
        tree = ast.parse(text)
    except SyntaxError as e:
        raise BadInput(f"launch: Python does not parse (line {e.lineno}: {e.msg})") from None
    call = None
    target: tuple[str, ...] = ()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _call_name(node):
            call = node
            break
    if call is None:
        raise BadInput("launch: no LLM(...) or EngineArgs(...) call found in the Python code",
                       "kvfit reads `LLM(model=..., max_model_len=...)` with literal arguments.")
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and node.value is call and len(node.targets) == 1 \
                and isinstance(node.targets[0], ast.Name):
            target = (node.targets[0].id,)
    args: list[Arg] = []
    for k, a in enumerate(call.args):
        if isinstance(a, ast.Starred):
            args.append(Arg("*", Expr(ast.get_source_segment(text, a.value) or ""), "*"))
        elif k == 0:
            args.append(Arg("model", _literal(a, text), POSITIONAL))
        else:
            args.append(Arg("", _literal(a, text), f"#{k}"))
    for kw in call.keywords:
        if kw.arg is None:
            args.append(Arg("**", Expr(ast.get_source_segment(text, kw.value) or ""), "**"))
            continue
        key, _ = canonical("--" + kw.arg)
        args.append(Arg(key, _literal(kw.value, text), kw.arg))
    off = _offsets(text)
    span = (off[call.lineno - 1] + call.col_offset, off[call.end_lineno - 1] + call.end_col_offset)
    return Launch("python", tuple(args), (_call_name(call),), target, text=text, span=span)


# --- env (KEY=VALUE lines) ------------------------------------------------------------------------------

_ENV_MODEL = ("MODEL_NAME", "MODEL")
# variables vLLM, Hugging Face, CUDA and PyTorch read from the environment themselves
_ENV_ONLY = ("VLLM_", "HF_", "HUGGING_FACE", "CUDA_", "NCCL_", "PYTORCH_", "TORCH_", "TRANSFORMERS_", "OMP_")


def parse_env(text: str) -> Launch:
    args: list[Arg] = []
    env: list[tuple[str, str]] = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[7:].lstrip()
        key, eq, value = line.partition("=")
        if not eq or not re.match(r"^[A-Za-z_][A-Za-z0-9_.-]*$", key):
            raise BadInput(f"launch: env line {n} is not KEY=VALUE: {raw!r}")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        if key.upper() in _ENV_MODEL:
            args.append(Arg("model", value, key))
            continue
        name, _ = canonical("--" + key.lower())
        if name in KIND and not key.upper().startswith(_ENV_ONLY):
            args.append(Arg(name, value, key))
        else:
            env.append((key, value))
    return Launch("env", tuple(args), env=tuple(env), text=text)


# --- detection ------------------------------------------------------------------------------------------

def detect(text: str, filename: str | None = None) -> str:
    name = (filename or "").lower()
    if name.endswith((".yaml", ".yml")):
        return "yaml"
    if name.endswith(".py"):
        return "python"
    if name.endswith(".env") or name.rsplit("/", 1)[-1] == ".env":
        return "env"
    if name.endswith(".toml"):
        raise BadInput(f"{filename} looks like a kvfit manifest", "Use `kvfit check --manifest FILE`.")
    for line in text.splitlines():
        s = line.strip()
        if _DOCKER_START.match(s):
            return "docker"
        if _SERVE_START.match(s):
            return "serve"
    if re.search(r"\b(?:LLM|EngineArgs|AsyncEngineArgs)\s*\(", text):
        return "python"
    sig = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    if sig and all(re.match(r"^(?:export\s+)?[A-Za-z_][A-Za-z0-9_.-]*=", ln) for ln in sig):
        return "env"
    if sig and all(re.match(r"^[\"']?[A-Za-z_][\w.-]*[\"']?\s*:", ln) or ln.startswith(("-", " ")) for ln in sig):
        return "yaml"
    raise BadInput("launch: cannot tell which form this is",
                   "kvfit reads `vllm serve ...`, `docker run ...`, vLLM YAML configs, Python LLM(...) and KEY=VALUE env files.")


def parse(text: str, form: str | None = None, filename: str | None = None) -> Launch:
    """Any form; `form` None detects it from the file name or the text."""
    form = form or detect(text, filename)
    if form in ("serve", "docker"):
        launch = parse_shell(text)
        if launch.form != form:
            raise BadInput(f"launch: expected a {form} command, found a {launch.form} one")
        return launch
    if form == "yaml":
        return parse_yaml(text)
    if form == "python":
        return parse_python(text)
    if form == "env":
        return parse_env(text)
    raise BadInput(f"unknown launch form {form!r}", "Forms: " + ", ".join(FORMS))


# --- values ---------------------------------------------------------------------------------------------

def native(key: str, value: Any) -> Any:
    """A CLI / env string as the typed value vLLM's parser makes of it (for YAML and Python output)."""
    if isinstance(value, tuple):
        return [native(key, v) for v in value]
    if not isinstance(value, str):
        return value
    k = key.split(".", 1)[0]
    if KIND.get(k) in ("bool", "true") and "." not in key:
        low = value.strip().lower()
        if low in ("true", "1", "yes", "on"):
            return True
        if low in ("false", "0", "no", "off"):
            return False
    if key == "max-model-len" and value.strip().lower() in ("auto", "-1"):
        return -1
    if key in _INT or key in _HUMAN_INT:
        from .units import parse_human_int

        try:
            return parse_human_int(value, "--" + key) if key in _HUMAN_INT else int(value)
        except (BadInput, ValueError):
            return value
    if key in _FLOAT:
        try:
            return float(value)
        except ValueError:
            return value
    if (k in _JSON or "." in key) and value.strip()[:1] in ("{", "["):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def cli_tokens(arg: Arg) -> list[str]:
    """The shell words of one argument (serve and docker forms)."""
    if arg.key == "":
        return [_cli_str(arg.value)]
    if arg.key in ("*", "**"):
        return []
    if arg.spelling == POSITIONAL:
        return [_cli_str(arg.value)]
    flag = arg.spelling if arg.spelling and arg.spelling.startswith("-") else "--" + arg.key
    if arg.key == "optimization-level" and arg.spelling == "-O":
        return [f"-O{arg.value}"]
    v = arg.value
    if v is True and not arg.joined:
        return [flag]
    if v is False:
        if KIND.get(arg.key) == "bool":
            return ["--no-" + arg.key]
        return []
    if v is None or isinstance(v, Expr):
        return []
    if isinstance(v, (list, tuple)):
        if arg.key in _JSON:
            return [flag, json.dumps(v)]
        return [flag, *[_cli_str(x) for x in v]]
    if arg.joined:
        return [f"{flag}={_cli_str(v)}"]
    return [flag, _cli_str(v)]


def _cli_str(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, dict):
        return json.dumps(v)
    if isinstance(v, float):
        return repr(v)
    return str(v)


# --- rendering ------------------------------------------------------------------------------------------

_SAFE = re.compile(r"^[A-Za-z0-9_~@%+=:,./$-]+$")


def quote(tok: str) -> str:
    """Shell-quote a word, leaving ~ and $VAR as the shell would expand them in the original."""
    if tok and _SAFE.match(tok) and not tok.startswith("=") and "$(" not in tok:
        return tok
    return shlex.quote(tok)


def _lines(head: list[str], groups: list[list[str]], width: int = 88) -> str:
    one = " ".join(quote(t) for t in head + [t for g in groups for t in g])
    if len(one) <= width or not groups:
        return one
    out = [" ".join(quote(t) for t in head)]
    for g in groups:
        out.append("    " + " ".join(quote(t) for t in g))
    return " \\\n".join(out)


def _arg_groups(args: tuple[Arg, ...]) -> list[list[str]]:
    groups: list[list[str]] = []
    for a in args:
        toks = cli_tokens(a)
        if toks:
            groups.append(toks)
    return groups


def _render_serve(launch: Launch) -> str:
    program = list(launch.program or ("vllm", "serve"))
    groups = _arg_groups(launch.args)
    head = list(launch.prefix) + program
    # A positional model right after the program stays on the first line.
    if groups and launch.args and launch.args[0].spelling == POSITIONAL and cli_tokens(launch.args[0]):
        head += groups.pop(0)
    return _lines(head, groups)


def _render_docker(launch: Launch) -> str:
    head = list(launch.prefix) + list(launch.program or ("docker", "run"))
    groups = [list(g) for g in launch.docker]
    groups.append([launch.image or "vllm/vllm-openai:latest", *launch.inner])
    groups += _arg_groups(launch.args)
    return _lines(head, groups)


def _yaml_str(s: str) -> str:
    if (s and re.match(r"^[A-Za-z0-9_./~][A-Za-z0-9_./~+=@ -]*$", s) and not s.endswith(" ")
            and isinstance(yaml_scalar(s), str) and " #" not in s):
        return s
    return json.dumps(s)


def _yaml_flow(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    if isinstance(v, (int, float)):
        return repr(v) if isinstance(v, float) else str(v)
    if isinstance(v, str):
        s = _yaml_str(v)
        return s if s == v and not re.search(r"[,\[\]{}]", v) else json.dumps(v)
    if isinstance(v, Expr):
        return json.dumps(v.src)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_yaml_flow(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_yaml_flow(str(k))}: {_yaml_flow(x)}" for k, x in v.items()) + "}"
    return json.dumps(str(v))


def _yaml_value(v: Any, indent: int) -> str:
    if isinstance(v, dict) and v:
        pad = " " * (indent + 2)
        return "\n" + "\n".join(f"{pad}{_yaml_key(str(k))}:{_yaml_value(x, indent + 2)}" for k, x in v.items())
    if isinstance(v, str):
        return " " + _yaml_str(v)
    return " " + _yaml_flow(v)


def _yaml_key(k: str) -> str:
    return k if re.match(r"^[A-Za-z_][A-Za-z0-9_.-]*$", k) and isinstance(yaml_scalar(k), str) else json.dumps(k)


def _render_yaml(launch: Launch) -> str:
    lines = []
    for a in launch.args:
        if a.key in ("", "*", "**"):
            continue
        key = a.spelling if a.spelling and not a.spelling.startswith(("-", "#")) and launch.form == "yaml" else a.key
        lines.append(f"{_yaml_key(key)}:{_yaml_value(a.value, 0)}")
    return "\n".join(lines) + "\n"


def py_literal(v: Any) -> str:
    if isinstance(v, Expr):
        return v.src
    if isinstance(v, bool) or v is None:
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(py_literal(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{py_literal(k)}: {py_literal(x)}" for k, x in v.items()) + "}"
    return repr(v)


def _py_items(launch: Launch) -> list[str]:
    items = []
    for a in launch.args:
        if a.key == "*":
            items.append("*" + py_literal(a.value))
        elif a.key == "**":
            items.append("**" + py_literal(a.value))
        elif a.spelling == POSITIONAL or a.key == "" or (a.spelling or "").startswith("#"):
            items.append(py_literal(a.value))
        else:
            name = a.spelling if launch.form == "python" and a.spelling and a.spelling.isidentifier() \
                else a.key.replace("-", "_")
            if not name.isidentifier():
                continue
            items.append(f"{name}={py_literal(a.value)}")
    return items


def _render_call(launch: Launch, indent: str) -> str:
    name = launch.program[0] if launch.program else "LLM"
    items = _py_items(launch)
    one = f"{name}(" + ", ".join(items) + ")"
    if len(one) + len(indent) <= 88 and len(items) <= 3:
        return one
    inner = indent + "    "
    return f"{name}(\n" + "".join(f"{inner}{it},\n" for it in items) + f"{indent})"


def _render_python(launch: Launch) -> str:
    if launch.text is not None and launch.span is not None and launch.form == "python":
        start, end = launch.span
        line_start = launch.text.rfind("\n", 0, start) + 1
        line = launch.text[line_start:start]
        indent = line[:len(line) - len(line.lstrip())]
        return launch.text[:start] + _render_call(launch, indent) + launch.text[end:]
    name = launch.program[0] if launch.program else "LLM"
    target = launch.prefix[0] if launch.prefix else ("llm" if name == "LLM" else "engine_args")
    return f"from vllm import {name}\n\n{target} = {_render_call(launch, '')}\n"


def _env_value(v: Any) -> str:
    if isinstance(v, bool):
        s = "true" if v else "false"
    elif isinstance(v, (list, tuple)):
        s = " ".join(_cli_str(x) for x in v)
    elif isinstance(v, dict):
        s = json.dumps(v)
    elif isinstance(v, Expr):
        s = v.src
    elif v is None:
        s = ""
    else:
        s = _cli_str(v)
    if s != s.strip() or "\n" in s or (len(s) >= 2 and s[0] == s[-1] and s[0] in "'\"") or " #" in s:
        return json.dumps(s)
    return s


def _render_env(launch: Launch) -> str:
    lines = []
    for a in launch.args:
        if a.key in ("", "*", "**"):
            continue
        if launch.form == "env" and a.spelling:
            key = a.spelling
        else:
            key = "MODEL_NAME" if a.key == "model" else a.key.upper().replace("-", "_").replace(".", "_")
        lines.append(f"{key}={_env_value(a.value)}")
    for k, v in launch.env:
        lines.append(f"{k}={_env_value(v)}")
    return "\n".join(lines) + "\n"


_TOP_KEY = re.compile(r"""^(?P<key>"[^"]*"|'[^']*'|[A-Za-z_][\w.-]*)\s*:(?P<rest>.*)$""")
_ENV_LINE = re.compile(r"^(?P<export>\s*(?:export\s+)?)(?P<key>[A-Za-z_][A-Za-z0-9_.-]*)=(?P<rest>.*)$")


def _edit_lines(launch: Launch) -> str | None:
    """A YAML config or env file with only the changed lines rewritten (comments and order kept); None
    when a change is not a one-line value (then the file is written afresh)."""
    text, before = launch.text or "", launch.pristine or ()
    lines = text.splitlines()
    pattern = _TOP_KEY if launch.form == "yaml" else _ENV_LINE
    where: dict[str, list[int]] = {}
    for i, ln in enumerate(lines):
        m = pattern.match(ln)
        if m:
            key = m.group("key").strip("\"'")
            where.setdefault(key, []).append(i)
    old = {a.spelling: a for a in before if a.spelling}
    new = {a.spelling or "": a for a in launch.args}
    if len(old) != len(before) or len(new) != len(launch.args):
        return None                                       # repeated keys: write afresh

    def line_for(a: Arg) -> str | None:
        if launch.form == "yaml":
            if isinstance(a.value, dict) and a.value:
                return None
            return f"{a.spelling or a.key}:{_yaml_value(a.value, 0)}"
        return f"{a.spelling or a.key}={_env_value(a.value)}"

    def comment(ln: str) -> str:
        body = _strip_comment(ln) if launch.form == "yaml" else ln.split(" #", 1)[0].rstrip()
        tail = ln[len(body):]
        return tail if tail.strip().startswith("#") else ""

    drop: set[int] = set()
    for spelling, a in old.items():
        found = where.get(spelling)
        if not found:
            return None
        # a repeated key: its value in force (the last) moves to its first line, where a YAML reader
        # orders it; the other lines go
        i = found[0]
        if len(found) > 1:
            lines[i] = lines[found[-1]]
            drop.update(found[1:])
        if launch.form == "yaml" and (isinstance(a.value, dict) and a.value or
                                      _TOP_KEY.match(lines[i]).group("rest").strip() in ("", "|", ">")):
            if spelling in new and new[spelling] == a:
                continue
            return None                                   # a block value: not a one-line edit
        if spelling not in new:
            drop.add(i)
        elif new[spelling] != a:
            ln = line_for(new[spelling])
            if ln is None:
                return None
            prefix = _ENV_LINE.match(lines[i]).group("export") if launch.form == "env" else ""
            lines[i] = prefix + ln + comment(lines[i])
    appended = []
    for spelling, a in new.items():
        if spelling not in old:
            ln = line_for(a)
            if ln is None:
                return None
            appended.append(ln)
    out = [ln for i, ln in enumerate(lines) if i not in drop] + appended
    return "\n".join(out) + "\n"


def _splice(launch: Launch, command: str) -> str:
    if launch.text is not None and launch.span is not None:
        s, e = launch.span
        return launch.text[:s] + command + launch.text[e:]
    return command


def render(launch: Launch, form: str | None = None) -> str:
    """The launch as text in `form` (default: its own). A launch read from a script or a Python file is
    written back into that file's text, only the command or call replaced."""
    form = form or launch.form
    if form == launch.form and launch.unchanged:
        return launch.text
    if form != launch.form:
        launch = convert(launch, form)
    if form == "serve":
        return _splice(launch, _render_serve(launch))
    if form == "docker":
        return _splice(launch, _render_docker(launch))
    if form in ("yaml", "env") and launch.text is not None and launch.pristine is not None \
            and not (form == "env" and launch.env != _env_pairs(launch)):
        edited = _edit_lines(launch)
        if edited is not None:
            return edited
    if form == "yaml":
        return _render_yaml(launch)
    if form == "python":
        return _render_python(launch)
    if form == "env":
        return _render_env(launch)
    raise BadInput(f"unknown launch form {form!r}", "Forms: " + ", ".join(FORMS))


def _env_pairs(launch: Launch) -> tuple[tuple[str, str], ...]:
    return launch.env


def convert(launch: Launch, form: str) -> Launch:
    """The same vLLM arguments in another form (typed for YAML / Python, strings for the shell forms).
    Frontend-only flags (--port, --host, ...) are dropped for Python, which has no server."""
    if form == launch.form:
        return launch
    typed = form in ("yaml", "python")
    args: list[Arg] = []
    dotted: dict[str, dict] = {}
    for a in launch.args:
        if a.key in ("*", "**"):
            continue
        if a.key == "":
            continue
        if form == "python" and a.key in FRONTEND:
            continue
        if "." in a.key and typed:
            head, *rest = a.key.split(".")
            d = dotted.setdefault(head, {})
            for part in rest[:-1]:
                d = d.setdefault(part, {})
            d[rest[-1]] = native(a.key, a.value)
            continue
        v = native(a.key, a.value) if typed else _shell_value(a.key, a.value)
        if isinstance(v, Expr):
            continue
        if a.key == "model":
            args.append(Arg("model", v, "model" if form in ("yaml", "python") else
                            ("MODEL_NAME" if form == "env" else ("--model" if form == "docker" else POSITIONAL))))
            continue
        args.append(Arg(a.key, v, None))
    for head, d in dotted.items():
        args.append(Arg(head, d, None))
    # a positional model goes first in the shell forms
    if form in ("serve", "docker"):
        args.sort(key=lambda x: 0 if x.key == "model" else 1)
    program: tuple[str, ...] = ()
    image = None
    groups: tuple[tuple[str, ...], ...] = ()
    inner: tuple[str, ...] = ()
    if form == "serve":
        program = ("vllm", "serve")
    elif form == "docker":
        program = ("docker", "run")
        if launch.form == "docker":
            groups, image, inner = launch.docker, launch.image, launch.inner
        else:
            groups = (("--runtime", "nvidia"), ("--gpus", "all"),
                      ("-v", "~/.cache/huggingface:/root/.cache/huggingface"), ("--env", "HF_TOKEN"),
                      ("-p", "8000:8000"), ("--ipc=host",))
            image = "vllm/vllm-openai:latest"
    elif form == "python":
        program = launch.program if launch.form == "python" else ("LLM",)
    prefix = launch.prefix if form in ("serve", "docker") and launch.form in ("serve", "docker") else ()
    return Launch(form, tuple(args), program, prefix, groups, image, inner)


def _shell_value(key: str, v: Any) -> Any:
    if isinstance(v, bool) or isinstance(v, Expr) or v is None:
        return v
    if isinstance(v, (list, tuple)):
        if key in _JSON:
            return json.dumps(v)
        return tuple(_cli_str(x) for x in v)
    if isinstance(v, dict):
        return json.dumps(v)
    return _cli_str(v)


# --- changing a launch ------------------------------------------------------------------------------

def updated(launch: Launch, changes: dict[str, Any]) -> Launch:
    """Set (or with None, remove) arguments, keeping the user's spelling and order. A changed value replaces
    the last occurrence in place; earlier duplicates go; a new argument is appended."""
    args = list(launch.args)
    typed = launch.form in ("yaml", "python")
    for key, value in changes.items():
        idx = [i for i, a in enumerate(args) if a.key == key]
        if value is None or (value is False and KIND.get(key) != "bool" and not typed):
            for i in reversed(idx):
                del args[i]
            continue
        if value is False and not idx:
            continue
        v = value if typed else _shell_value(key, value)
        if launch.form == "env":
            v = _env_value(v) if not isinstance(v, str) else v
        if idx:
            last = args[idx[-1]]
            spelling, joined = last.spelling, last.joined
            if v is True and joined:
                joined = False
            if v is False and spelling and spelling.startswith("-") and not typed:
                spelling = None
            args[idx[-1]] = Arg(key, v, spelling, joined)
            for i in reversed(idx[:-1]):
                del args[i]
        else:
            spelling = None
            if launch.form == "env":
                spelling = key.upper().replace("-", "_")
            elif launch.form == "python":
                spelling = key.replace("-", "_")
            args.append(Arg(key, v, spelling))
    return replace(launch, args=tuple(args))


def argv(launch: Launch) -> list[str]:
    """vLLM's arguments as shell words (what `vllm serve` would receive), model first."""
    return [t for g in _arg_groups(convert(launch, "serve").args) for t in g]


# --- what kvfit reads from a launch --------------------------------------------------------------------

@dataclass(frozen=True)
class EngineArgs:
    """The launch's arguments kvfit's memory model reads, typed; and notes on everything else."""

    model: str | None
    settings: dict[str, Any]              # Settings field -> value (only those the launch sets)
    quantization: str | None
    cpu_offload_gb: float
    revision: str | None
    entrypoint: str                       # "serve" | "llm"
    config: str | None                    # a --config file the launch names
    notes: tuple[str, ...]


_SETTINGS_KEYS = {
    "max-model-len": "max_model_len", "gpu-memory-utilization": "gpu_memory_utilization",
    "tensor-parallel-size": "tensor_parallel_size", "pipeline-parallel-size": "pipeline_parallel_size",
    "dtype": "dtype", "kv-cache-dtype": "kv_cache_dtype", "block-size": "block_size", "max-num-seqs": "max_num_seqs",
    "max-num-batched-tokens": "max_num_batched_tokens", "enforce-eager": "enforce_eager",
    "kv-cache-memory-bytes": "kv_cache_memory_bytes", "num-gpu-blocks-override": "num_gpu_blocks_override",
    "disable-sliding-window": "disable_sliding_window",
}


def _settings_fields() -> set[str]:
    from .settings import Settings

    return set(Settings.__dataclass_fields__)


# LoRA slots are modelled by plan.py when Settings carries them (memory/weights.py::lora_bytes_per_gpu).
for _key, _attr in (("enable-lora", "enable_lora"), ("max-loras", "max_loras"), ("max-lora-rank", "max_lora_rank")):
    if _attr in _settings_fields():
        _SETTINGS_KEYS[_key] = _attr
        MODELLED.add(_key)
        NOT_MODELLED.discard(_key)


def _flag(key: str) -> str:
    return "--" + key


def _typed(key: str, v: Any) -> Any:
    from .units import parse_human_int, parse_max_model_len

    flag = _flag(key)
    if key in ("enforce-eager", "disable-sliding-window", "enable-lora"):
        if isinstance(v, bool):
            return v
        if isinstance(v, str) and v.strip().lower() in ("true", "1", "yes", "on", "false", "0", "no", "off"):
            return v.strip().lower() in ("true", "1", "yes", "on")
        raise BadInput(f"launch: {flag} takes no value (got {v!r})")
    if key == "max-model-len":
        if isinstance(v, bool):
            raise BadInput(f"launch: {flag} must be a number, -1 or auto (got {v!r})")
        if isinstance(v, int):
            return v if v == -1 or v > 0 else parse_max_model_len(str(v))
        return parse_max_model_len(str(v))
    if key == "gpu-memory-utilization" or key == "cpu-offload-gb":
        if isinstance(v, bool):
            raise BadInput(f"launch: {flag} must be a number (got {v!r})")
        try:
            return float(v)
        except (TypeError, ValueError):
            raise BadInput(f"launch: {flag} must be a number (got {v!r})") from None
    if key in ("dtype", "kv-cache-dtype", "quantization", "revision", "device", "config", "model"):
        if v is None:
            return None
        if not isinstance(v, str):
            raise BadInput(f"launch: {flag} must be a string (got {v!r})")
        return v
    # whole numbers
    if isinstance(v, bool) or v is None:
        raise BadInput(f"launch: {flag} must be a whole number (got {v!r})")
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, int):
        return v
    if isinstance(v, str):
        if key in _HUMAN_INT:
            return parse_human_int(v, flag)
        try:
            return int(v.strip())
        except ValueError:
            raise BadInput(f"launch: {flag} must be a whole number (got {v!r})") from None
    raise BadInput(f"launch: {flag} must be a whole number (got {v!r})")


def engine_args(launch: Launch) -> EngineArgs:
    """The launch as kvfit's model reads it. Later occurrences win; non-literal Python values and flags kvfit
    does not model are noted, never guessed."""
    values: dict[str, Any] = {}
    notes: list[str] = []
    seen_notes: set[str] = set()

    def note(text: str) -> None:
        if text not in seen_notes:
            seen_notes.add(text)
            notes.append(text)

    for a in launch.args:
        shown = a.spelling if a.spelling and a.spelling not in (POSITIONAL,) and not a.spelling.startswith("#") \
            else _flag(a.key)
        if a.key in ("", "*", "**"):
            note(f"{'argument' if a.key == '' else a.key + 'args'} {a.value if not isinstance(a.value, Expr) else a.value.src!s}: "
                 "kept as written; kvfit does not read it")
            continue
        if isinstance(a.value, Expr):
            note(f"{shown}={a.value.src} is not a literal; kvfit reads only literal values, so it is ignored")
            continue
        base = a.key.split(".", 1)[0]
        if a.key in MODELLED:
            values[a.key] = a.value
        elif base in NOT_MODELLED:
            note(f"{shown}: changes vLLM's memory in ways kvfit does not model yet; kept as written")
        elif not is_known(a.key):
            note(f"{shown}: not a vLLM flag kvfit knows; kept and passed through untouched")
    settings: dict[str, Any] = {}
    for key, attr in _SETTINGS_KEYS.items():
        if key in values and values[key] is not None:
            settings[attr] = _typed(key, values[key])
    device = values.get("device")
    if device is not None:
        device = _typed("device", device)
        if device in ("cuda", "auto", "gpu"):
            settings["device"] = "cuda"
        elif device == "cpu":
            settings["device"] = "cpu"
        else:
            note(f"--device {device}: kvfit models NVIDIA GPUs and vLLM's CPU backend; checked as a CUDA GPU")
    model = values.get("model")
    if model is not None and not isinstance(model, str):
        raise BadInput(f"launch: the model must be a string (got {model!r})")
    quant = values.get("quantization")
    quant = _typed("quantization", quant) if quant is not None else None
    offload = _typed("cpu-offload-gb", values["cpu-offload-gb"]) if values.get("cpu-offload-gb") is not None else 0.0
    revision = _typed("revision", values["revision"]) if values.get("revision") is not None else None
    config = _typed("config", values["config"]) if values.get("config") is not None else None
    entrypoint = "llm" if launch.form == "python" and launch.program[:1] == ("LLM",) else "serve"
    return EngineArgs(model, settings, quant, offload, revision, entrypoint, config, tuple(notes))


def with_config(launch: Launch, config: Launch) -> Launch:
    """A serve / docker launch with its --config file's arguments, as vLLM merges them: the file's arguments
    first, the command line's after (the command line wins)."""
    cli = tuple(a for a in launch.args if a.key != "config")
    model_first = tuple(a for a in cli if a.spelling == POSITIONAL)
    rest = tuple(a for a in cli if a.spelling != POSITIONAL)
    cfg = tuple(a for a in config.args if not (a.key == "model" and model_first))
    return replace(launch, args=model_first + cfg + rest)
