"""What vLLM reserves outside the KV cache besides the weights (spec §3, §9, §10.6).

Three terms, each with its structure read from vLLM's code and its constants fitted on public logs
(../../tests/data/calibration/*.jsonl, ids gt-NNN and spec-8.3-N). The accuracy benchmark
(`python -m kvfit.bench accuracy`) measures the result record by record.

1. Activation peak of the profile run (`profile_run` / V0 `_dummy_run`):
   * forward: one pass of T = max_num_batched_tokens tokens. The eager peak sits in the MLP, where the
     gate_up output [T, 2I] and the SiluAndMul output [T, I] live together, plus a few [T, h]
     hidden/residual buffers: T x (3 I / tp + 4 h) x act_bytes. MoE layers: the fused-MoE caches
     [T, top_k, 2N], [T*top_k, N], [T, top_k, h] with N = moe_intermediate / tp.
   * sampler: logits for R = min(max_num_seqs, T) rows, float32 copies, sort values + int64 indices,
     softmax, cumsum, masks: R x vocab x SAMPLER bytes.
   V0 frees the forward's intermediates before sampling, so its peak is max(forward, sampler); so does
   V1's model runner (max(forward, hidden states + sampler), V1_RUNNER_SAMPLER_BYTES_PER_LOGIT); Model
   Runner V2's figure is fitted as forward + sampler (see V1_SAMPLER_BYTES_PER_LOGIT).
2. Non-torch memory grown after vLLM's baseline snapshot (cuBLAS/attention workspaces, allocator
   slack, NCCL / custom all-reduce buffers under TP) and, in V1, persistent buffers allocated during
   profiling (counted in "consumed" beside the weights).
3. CUDA-graph memory estimate (V1, 0.20.0+, not with --enforce-eager).

vLLM 0.33 (memory/profiles.py, module docstring) changes three of these when estimate_overhead is
given the profile: the sampler term grows by the second, warm-up sampler pass (12 B per logit with
FlashInfer's sampler, 4 B without, none on CPU); the TRITON_MLA split-KV workspace is reserved inside
the profile (a persistent workspace: `workspace_bytes`, part of the activation peak); and the cuBLAS
workspace moves from the charged reserve into the baseline (`non_torch_bytes` shrinks by it, the
memory taken before vLLM's snapshot grows by it: cuda_context_bytes()).

Fitting notes. V0 logs print the three parts separately ("model weights take …; non_torch_memory
takes …; PyTorch activation peak memory takes …"); the V0 constants are fitted on the records whose KV
figure the benchmark does not score (pl-005 .. pl-010: their weights are unknown), so the scored V0
records validate them. V1 has two profile runs (profiles.model_runner_v2): Model Runner V2's terms are
fitted on gt-046 (vLLM 0.31, Llama-3.1-8B, A100 80GB), the V1 runner's on pl-014 (0.10.2, Qwen3-8B FP8,
L4); both logs print the breakdown and are labelled "fit" in the benchmark. pl-013 (0.11.2, FlashInfer
sampler) and pl-016 (0.15) validate the V1-runner terms; nothing yet validates Model Runner V2's on a
known GPU. `python -m kvfit.bench accuracy` measures the result record by record.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..arch.model import ModelArch
from ..units import GiB, MiB

# --- V1 (0.8 .. 0.32) ----------------------------------------------------------------------------
# gt-046 (vLLM 0.31.0, A100 80GB, serve defaults T=2048, R=256, vocab 128256): "Actual usage is 15.26 GiB
# for consumed memory (weights + non-torch), 1.44 GiB for peak activation, and 0.23 GiB for CUDAGraph":
#   consumed 15.26 - weights 14.99 (kvfit: 14.9888 GiB, rope included) = 0.27 GiB non-torch/persistent;
#   peak activation 1.44 - CUDA graphs 0.23 = 1.21 GiB transient peak;
#   forward T x (3I + 4h) x 2 B = 2048 x 59392 x 2 = 0.23 GiB, leaving 0.98 GiB = 256 x 128256 x 32 B.
#   (2048 x 59392 x 2 = 243,269,632 B; (1.21 GiB - that) / (256 x 128256) = 32.2 B per logit.)
# The V1 model runner's dummy sampler (0.9-0.2x) applies top-k/top-p to float32 logits like V0, which
# fits this size; the V2 runner that logged gt-046 skips top-k/top-p in its dummy sampler, so for it the
# 0.98 GiB is an empirical term that scales with R x vocab by assumption: no second V1 log with a known
# GPU separates it. The record states an A100 80GB (the spec's §8.3 calls it an H100); its log lines'
# file:line match the 0.31.0 wheel (kv_cache_utils.py:2464, gpu_worker.py:692/955,
# gpu/model_runner.py:407), and kvfit follows the record: A100 -> serve defaults 2048 tokens, 256 seqs.
V1_NON_TORCH_BYTES = int(0.27 * GiB)
V1_SAMPLER_BYTES_PER_LOGIT = 32
# The V1 model runner (v1/worker/gpu_model_runner.py, every V1 release up to 0.21 and the models later
# releases keep on it: profiles.model_runner_v2). Its profile_run frees the forward pass before
# _dummy_sampler_run, which applies temperature, top-k and top-p to every row's logits. Fitted on pl-014
# (0.10.2, L4, Qwen3-8B FP8, 224 rows x 151,936 vocab, the PyTorch-native top-k/top-p: "FlashInfer is not
# available"), whose log prints the breakdown: peak activation 1.23 GiB = 2048 x 4096 x 2 B of hidden states
# + the sampler, (1.23 GiB - 16 MiB) / (224 x 151,936) = 38.3 B per logit; non-torch 0.02 GiB. The native
# path's own tensors: bf16 logits 2 + float32 copy 4 + sorted values 4 + int64 indices 8 + two masks 2 +
# softmax 4 + the re-scattered logits 4 = 28 B, the rest torch.sort's workspace. With FlashInfer's kernel
# (profiles.flashinfer_sampler) no sort: bf16 logits 2 + float32 copy 4 + masked logits 4 + probs 4 = 14 B
# (flashinfer sampling.py top_k_top_p_sampling_from_logits), from the code, not fitted. Held out:
# pl-013 (0.11.2, FlashInfer) and pl-016 (0.15, native, T = 8192 where the forward pass is 0.91 GiB and the
# sampler side 1.23: the larger, not the sum, matches the log).
V1_RUNNER_SAMPLER_BYTES_PER_LOGIT = 38
V1_RUNNER_FLASHINFER_BYTES_PER_LOGIT = 14
V1_RUNNER_NON_TORCH_BYTES = int(0.02 * GiB)
# CUDA-graph estimate (profile_cudagraph_memory): gt-046 logs 0.23 GiB for 32 layers and 51 capture
# sizes ([1, 2, 4] + 8..248 step 8 + 256..512 step 16 at max_num_seqs 256) -> per graph per layer.
CUDAGRAPH_BYTES_PER_GRAPH_LAYER = 0.23 * GiB / (51 * 32)
# vLLM's floor: per_graph >= 1 MiB for each extra graph, for the two modes of FULL_AND_PIECEWISE.
CUDAGRAPH_FLOOR_PER_GRAPH = 1 * MiB
# Memory taken before vLLM's snapshot on an otherwise idle GPU (CUDA context, NCCL): it is not charged
# to the budget but must fit in (1 - util) x total. gt-046 / spec §8.3: 78.84 of 79.25 GiB free at start.
CUDA_CONTEXT_BYTES = int((79.25 - 78.84) * GiB)
# cuBLAS workspace of one handle as PyTorch sizes it by default (CUBLAS_WORKSPACE_CONFIG unset:
# ":4096:2:16:8" = 4096 KiB x 2 + 16 KiB x 8 before Hopper, 4096 KiB x 8 = 32 MiB from compute
# capability 9.0; aten/src/ATen/cuda/CublasHandlePool.cpp, not shipped in the wheels read here: an
# estimate). vLLM 0.33 allocates it before the baseline snapshot (v1/worker/gpu_worker.py::init_device,
# torch.mm + F.linear on 16x16), so it leaves the charged reserve. No 0.33 log with a known GPU
# measures it yet.
CUBLAS_WORKSPACE_BYTES = 4096 * 1024 * 2 + 16 * 1024 * 8
CUBLAS_WORKSPACE_BYTES_SM90 = 4096 * 1024 * 8


def cublas_workspace_bytes(compute_capability: tuple[int, int] | None) -> int:
    cc = tuple(compute_capability) if compute_capability else (8, 0)
    return CUBLAS_WORKSPACE_BYTES_SM90 if cc >= (9, 0) else CUBLAS_WORKSPACE_BYTES


def cuda_context_bytes(profile=None, compute_capability: tuple[int, int] | None = None,
                       device: str = "cuda") -> int:
    """What an idle GPU loses before vLLM's baseline snapshot: the CUDA context (gt-046), plus in 0.33
    the cuBLAS workspace created there (Profile.cublas_before_baseline)."""
    extra = cublas_workspace_bytes(compute_capability) if (
        profile is not None and getattr(profile, "cublas_before_baseline", False) and device == "cuda") else 0
    return CUDA_CONTEXT_BYTES + extra

# --- V0 (<= 0.8.x) -------------------------------------------------------------------------------
# Fit and hold-out (bench/accuracy.py): the V0 constants are fitted on the calibration records whose KV
# figure is not scored (their weights are unknown: bitsandbytes checkpoints, pl-005 .. pl-010), so every
# KV-scored V0 record validates them.
# Sampler peak per logit: activation / (R x vocab) over the logs whose sampler dominates the forward term,
# R = max_num_seqs as logged: pl-005 38.6 (R 128, vocab 151,936), pl-006 38.7 (160, 128,256), pl-007 41.0
# (224, 32,768), pl-008 38.6 (192, 151,936); median 38.7. (The earlier fit on gt-033, gt-037 and gt-039
# gave 39.2.) The V0 sampler's own tensors add up to 32 B: bf16 logits 2 + float32 4 + sort 4 + int64
# indices 8 + masks 2 + softmax 4 + cumsum 4 + re-scattered logits 4; the rest is torch.sort's workspace
# and allocator rounding.
V0_SAMPLER_BYTES_PER_LOGIT = 39
# The forward term T x (3I/tp + 4h) x 2 B reproduces the V0 logs whose sampler is small (few seqs or a
# small vocab): gt-047 1.09 vs 1.09 GiB logged (16 seqs), gt-031 0.73 vs 0.74 (1 seq), gt-041 4.34 vs
# 4.35, gt-059 1.11 vs 1.12 (CosyVoice2 speech vocab); gt-001 (0.6.4) 2.21 vs 2.07.
# non_torch_memory (0.6.5+, "non_torch_increase"), single GPU: median of the unscored records pl-005 0.03,
# pl-006 0.03, pl-007 0.08, pl-008 0.05, pl-009 0.03, pl-010 0.03 = 0.03 GiB. (The scored V0 logs print
# 0.03 to 0.11; gt-003, on a shared development machine, 1.79.)
V0_NON_TORCH_BYTES = int(0.03 * GiB)
# Tensor parallel: NCCL and custom all-reduce buffers. Median of gt-025 0.25 (TP2), gt-053 0.20 (TP4),
# gt-017 0.38 (TP4, middle rank) = 0.25 GiB. (MLA/MoE logs gt-029 2.10 and gt-035 7.16 carry large
# MoE workspaces kvfit does not model; gt-055 is a ROCm fork.) None of these is a scored record.
V0_NON_TORCH_TP_BYTES = int(0.25 * GiB)
# What tensor parallelism adds to V1's non-torch term: that median less the single-GPU median of the V0
# logs gt-027 .. gt-059 (0.08 GiB).
TP_NON_TORCH_EXTRA = V0_NON_TORCH_TP_BYTES - int(0.08 * GiB)
# 0.6.4 counted all memory not allocated by torch, CUDA context included (worker.py: used - torch
# allocated): gt-001 logs non_torch_memory=0.35GiB on an RTX 3090 (gt-051: 0.15 on an 8 GB card).
V0_064_NON_TORCH_BYTES = int(0.35 * GiB)


@dataclass(frozen=True)
class Overhead:
    activation_bytes: int
    cudagraph_bytes: int
    non_torch_bytes: int
    forward_bytes: int = 0
    sampler_bytes: int = 0
    encoder_cache_bytes: int = 0    # encoder outputs held through the decoder's dummy run (memory/encoder.py)
    workspace_bytes: int = 0        # 0.33: TRITON_MLA split-KV workspace reserved in the profile (in activation)
    encoder_forward_bytes: int = 0  # the encoder's own activation peak on the dummy items (memory/encoder.py)
    encoder_persistent_bytes: int = 0   # multimodal input buffers allocated with the model (Qwen3-VL deepstack)
    notes: tuple[str, ...] = ()     # what the encoder profile did (memory/encoder.py), for the report

    @property
    def total(self) -> int:
        return self.activation_bytes + self.cudagraph_bytes + self.non_torch_bytes


def cudagraph_capture_sizes(max_num_seqs: int, max_num_batched_tokens: int, cap: int = 512) -> int:
    """How many batch sizes vLLM captures (config/vllm.py::_set_cudagraph_sizes, spec §6)."""
    top = min(max_num_seqs * 2, cap)
    sizes = {s for s in [1, 2, 4] + list(range(8, 256, 8)) + list(range(256, top + 1, 16)) if s <= top}
    if max_num_batched_tokens <= top:
        sizes.add(max_num_batched_tokens)
    return max(1, len(sizes))


def estimate_cudagraph_bytes(profile, *, max_num_seqs: int, max_num_batched_tokens: int, layers_on_rank: int,
                             num_speculative_tokens: int = 0, enforce_eager: bool = False) -> int:
    """CUDA-graph memory for any release: the capture sizes that release takes
    (profiles.cudagraph_capture_sizes) times the per-graph, per-layer cost fitted on gt-046 (0.31).
    The size list is read from each release's code; the cost per graph is the 0.31 fit, an estimate for
    other releases and for V0. For releases that do not reserve graphs (profiles.cudagraph_rule) this
    is what must fit the headroom (profiles.cudagraph_headroom_warning)."""
    from . import profiles as P

    if enforce_eager:
        return 0
    n = len(P.cudagraph_capture_sizes(profile, max_num_seqs, max_num_batched_tokens, num_speculative_tokens))
    if n == 0:
        return 0
    return int(max(2 * (n - 1) * CUDAGRAPH_FLOOR_PER_GRAPH, n * max(1, layers_on_rank) * CUDAGRAPH_BYTES_PER_GRAPH_LAYER))


def forward_peak_bytes(arch: ModelArch, tokens: int, act_bytes: int, tp: int, moe_chunk: int | None = None,
                       moe_tp: int | None = None) -> int:
    """`moe_chunk`: the fused-MoE caches are sized for min(tokens, chunk) (profiles.fused_moe_chunk_tokens).
    `moe_tp`: the split of each expert's intermediate when data / expert parallelism changes it (DP x PCP x
    TP ranks slice experts; 1 under expert parallel, whole experts: fused_moe/config.py FusedMoEConfig
    intermediate_size_per_partition). Structural: no log calibrates the MoE caches under DP or EP."""
    h = arch.hidden_size
    if arch.num_experts and arch.experts_per_token:
        n = (arch.moe_intermediate_size or arch.intermediate_size) / (moe_tp or tp)
        moe_tokens = min(tokens, moe_chunk) if moe_chunk else tokens
        return int((moe_tokens * arch.experts_per_token * (3 * n + h) + tokens * 4 * h) * act_bytes)
    per_token = 3 * arch.intermediate_size / tp + 4 * h
    return int(tokens * per_token * act_bytes)


def is_multimodal(arch: ModelArch) -> bool:
    names = " ".join(arch.architectures)
    return any(k in names for k in ("ForConditionalGeneration", "VL", "Vision", "Llava", "LlavaNext"))


def mla_kv_lora_rank(arch: ModelArch) -> int:
    """kv_lora_rank of an MLA model: its latent head (kv_lora_rank + qk_rope_head_dim) less the rope
    part, 64 in every MLA config kvfit bundles (DeepSeek-V2/V3/R1)."""
    heads = [x.head_size for x in arch.attention_layers if x.kind == "mla"]
    return max(0, (heads[0] if heads else arch.head_size) - 64)


def estimate_overhead(arch: ModelArch, *, max_num_batched_tokens: int, max_num_seqs: int,
                      act_bytes: int, tp: int, enforce_eager: bool, cudagraph_counted: bool,
                      layers_on_rank: int, memory_formula: str = "v1", profile=None, device: str = "cuda",
                      compute_capability: tuple[int, int] | None = None, max_model_len: int = 0,
                      env=None, sm_count: int | None = None, num_speculative_tokens: int = 0,
                      attention_backend: str | None = None, kv_lora_rank: int | None = None,
                      encoder=None, offload_layer_bytes: int = 0, moe_tp: int | None = None) -> Overhead:
    """Activation peak, CUDA-graph estimate and non-torch memory on one GPU, by the release's formula
    (memory.profiles.Profile.memory_formula).

    With `profile` (a memory.profiles.Profile) the release's own terms apply too: the formula is the
    profile's, and from 0.33 the warm-up sampler pass, the TRITON_MLA workspace (for MLA models: needs
    `max_model_len`; `sm_count` caps the split count, None leaves it uncapped) and the cuBLAS
    workspace in the baseline, and the fused-MoE chunk (profiles.fused_moe_chunk_tokens). Without it
    the numbers are the 0.32 ones, as before.

    `offload_layer_bytes` (V0 only): with --cpu-offload-gb, V0's maybe_offload_to_cpu
    (model_executor/models/utils.py) copies each offloaded layer's parameters back to the GPU for its
    forward (`v.to(device)` + functional_call), so the profiled peak holds one layer's copy beside the
    activations; V1 reads them through UVA views (0.8.3+), no copy.

    `encoder` (memory.encoder.EncoderProfile) is the multimodal encoder's profile for this release and launch.
    V1: the encoder runs first and its outputs stay in the encoder cache through the decoder's dummy run and
    the sampler (v1/worker/gpu_model_runner.py::profile_run), so the peak is max(encoder forward, encoder
    outputs + decoder forward + sampler), plus the multimodal buffers allocated with the model. V0: the
    encoder runs inside the forward of a dummy batch whose sequences are the sampler's rows
    (worker/model_runner.py::_dummy_run). Without it, or for a family kvfit does not size, a multimodal V1
    model keeps the old floor, max_num_batched_tokens x hidden."""
    from . import profiles as P

    if profile is not None:
        memory_formula = profile.memory_formula
    t = max_num_batched_tokens
    v0 = memory_formula.startswith("v0")
    rows = max_num_seqs if v0 else min(max_num_seqs, t)
    enc = encoder if encoder is not None and getattr(encoder, "modelled", False) else None
    if v0 and enc is not None and enc.v0_seqs:
        rows = enc.v0_seqs                  # the dummy batch has only these sequences (doc C3)
    chunk = P.fused_moe_chunk_tokens(profile, env) if profile is not None else None
    forward = forward_peak_bytes(arch, t, act_bytes, tp, chunk, moe_tp)
    if v0 and offload_layer_bytes > 0:
        forward += offload_layer_bytes
    # Which V1 profile run (profiles.model_runner_v2): Model Runner V2 keeps the fit on gt-046 (forward +
    # sampler); the V1 runner frees the forward's intermediates before its dummy sampler run, so its peak is
    # the larger of the two, the sampler's beside the [T, h] hidden states it is given.
    v1_runner = (profile is not None and not v0 and not P.model_runner_v2(
        profile, architectures=tuple(arch.architectures), is_moe=bool(arch.num_experts),
        quantized=bool(arch.quantization), hybrid=arch.is_hybrid, env=env))
    if v0:
        per_logit = V0_SAMPLER_BYTES_PER_LOGIT
    elif v1_runner:
        per_logit = (V1_RUNNER_FLASHINFER_BYTES_PER_LOGIT if P.flashinfer_sampler(
            profile, device=device, compute_capability=compute_capability, env=env)
            else V1_RUNNER_SAMPLER_BYTES_PER_LOGIT)
    else:
        per_logit = V1_SAMPLER_BYTES_PER_LOGIT
        if profile is not None:
            per_logit += P.sampler_warmup_bytes_per_logit(profile, device=device,
                                                          compute_capability=compute_capability, env=env)
    sampler = rows * arch.vocab_size * per_logit
    enc_fwd = enc.forward_bytes if enc is not None else 0
    enc_persistent = enc.persistent_bytes if enc is not None else 0
    if enc is not None:
        cache = enc.cache_bytes
    elif not v0 and (is_multimodal(arch) if encoder is None else True):
        # V1 profiles the encoder cache: encoder_cache_size = max(max_num_batched_tokens, tokens of the
        # largest item) embeddings of hidden_size (spec §3.2). A floor for families kvfit does not size.
        cache = t * arch.hidden_size * act_bytes
    else:
        cache = 0
    workspace = 0
    if (profile is not None and profile.mla_workspace_in_profile and arch.use_mla and max_model_len
            and P.uses_triton_mla(profile, compute_capability=compute_capability,
                                  attention_backend=attention_backend, device=device)):
        workspace = P.triton_mla_workspace_bytes(
            max_num_seqs=max_num_seqs, num_heads_per_rank=max(1, arch.num_attention_heads // tp),
            kv_lora_rank=kv_lora_rank if kv_lora_rank is not None else mla_kv_lora_rank(arch),
            max_model_len=max_model_len, sm_count=sm_count, num_speculative_tokens=num_speculative_tokens)
    if v0:
        activation = max(forward + cache, sampler, enc_fwd + cache) if enc is not None else max(forward, sampler)
    elif v1_runner:
        step = max(forward, t * arch.hidden_size * act_bytes + sampler)
        activation = max(enc_fwd, cache + step + workspace) + enc_persistent
    else:
        activation = max(enc_fwd, cache + forward + sampler + workspace) + enc_persistent
    cg = 0
    if not v0 and not enforce_eager and cudagraph_counted:
        n = cudagraph_capture_sizes(max_num_seqs, t)
        cg = int(max(2 * (n - 1) * CUDAGRAPH_FLOOR_PER_GRAPH,
                     n * max(1, layers_on_rank) * CUDAGRAPH_BYTES_PER_GRAPH_LAYER))
    if memory_formula == "v0-torch-peak":
        non_torch = V0_064_NON_TORCH_BYTES + (TP_NON_TORCH_EXTRA if tp > 1 else 0)
    elif v0:
        non_torch = V0_NON_TORCH_TP_BYTES if tp > 1 else V0_NON_TORCH_BYTES
    else:
        non_torch = (V1_RUNNER_NON_TORCH_BYTES if v1_runner else V1_NON_TORCH_BYTES) + (
            TP_NON_TORCH_EXTRA if tp > 1 else 0)
        if profile is not None and profile.cublas_before_baseline and device == "cuda":
            non_torch -= cublas_workspace_bytes(compute_capability)
    return Overhead(int(activation), cg, non_torch, forward, sampler, cache, workspace, enc_fwd, enc_persistent,
                    tuple(getattr(encoder, "notes", ()) or ()))
