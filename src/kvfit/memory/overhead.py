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
   V0 frees the forward's intermediates before sampling, so its peak is max(forward, sampler); the
   V1 figure is fitted as forward + sampler (see V1_SAMPLER_BYTES_PER_LOGIT).
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
takes …; PyTorch activation peak memory takes …"); those whose model kvfit knows fix the V0
constants. Only one V1 log with a known GPU prints the breakdown (gt-046, vLLM 0.31, Llama-3.1-8B
on an A100 80GB); the V1 constants come from it and nothing else checks them on a known GPU, so the V1
accuracy figure is a fit, not a validation. gt-016 (0.15.1, Llama-3.1-8B fine-tune, GPU not named)
is consistent with them: its logged KV plus kvfit's reserve implies a 47.7 GiB card (an RTX A6000
reports 47.54 GiB); so is gt-049 (0.13, gemma-3-1b: 31.5 GiB implied, an RTX 5090 reports 31.36).
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
# Sampler peak per logit: activation / (R x vocab) over the V0 logs whose sampler dominates the forward
# term, R = max_num_seqs as logged: gt-033 38.7 (R 256), gt-037 39.7 (R 256), gt-039 39.2 (R 192);
# median 39.2 (gt-053, low confidence, 38.4). The V0 sampler's own tensors add up to 32 B: bf16 logits
# 2 + float32 4 + sort 4 + int64 indices 8 + masks 2 + softmax 4 + cumsum 4 + re-scattered logits 4;
# the rest is torch.sort's workspace and allocator rounding.
V0_SAMPLER_BYTES_PER_LOGIT = 39
# The forward term T x (3I/tp + 4h) x 2 B reproduces the V0 logs whose sampler is small (few seqs or a
# small vocab): gt-047 1.09 vs 1.09 GiB logged (16 seqs), gt-031 0.73 vs 0.74 (1 seq), gt-041 4.34 vs
# 4.35, gt-059 1.11 vs 1.12 (CosyVoice2 speech vocab); gt-001 (0.6.4) 2.21 vs 2.07.
# non_torch_memory (0.6.5+, "non_torch_increase"), single GPU: median of gt-027 0.05, gt-031 0.04,
# gt-033 0.08, gt-037 0.11, gt-039 0.05, gt-041 0.09, gt-043 0.09, gt-047 0.10, gt-059 0.07 = 0.08 GiB.
V0_NON_TORCH_BYTES = int(0.08 * GiB)
# Tensor parallel: NCCL and custom all-reduce buffers. Median of gt-025 0.25 (TP2), gt-053 0.20 (TP4),
# gt-017 0.38 (TP4, middle rank) = 0.25 GiB. (MLA/MoE logs gt-029 2.10 and gt-035 7.16 carry large
# MoE workspaces kvfit does not model; gt-055 is a ROCm fork.) V1 gets the same TP increment.
V0_NON_TORCH_TP_BYTES = int(0.25 * GiB)
TP_NON_TORCH_EXTRA = V0_NON_TORCH_TP_BYTES - V0_NON_TORCH_BYTES
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
    encoder_cache_bytes: int = 0
    workspace_bytes: int = 0        # 0.33: TRITON_MLA split-KV workspace reserved in the profile (in activation)

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


def forward_peak_bytes(arch: ModelArch, tokens: int, act_bytes: int, tp: int, moe_tp: int | None = None) -> int:
    """moe_tp: the split of each expert's intermediate when data / expert parallelism changes it (DP x PCP x
    TP ranks slice experts; 1 under expert parallel, whole experts: fused_moe/config.py FusedMoEConfig
    intermediate_size_per_partition). Structural: no log calibrates the MoE caches under DP or EP."""
    h = arch.hidden_size
    if arch.num_experts and arch.experts_per_token:
        n = (arch.moe_intermediate_size or arch.intermediate_size) / (moe_tp or tp)
        per_token = arch.experts_per_token * (3 * n + h) + 4 * h
    else:
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
                      moe_tp: int | None = None) -> Overhead:
    """Activation peak, CUDA-graph estimate and non-torch memory on one GPU, by the release's formula
    (memory.profiles.Profile.memory_formula).

    With `profile` (a memory.profiles.Profile) the release's own terms apply too: the formula is the
    profile's, and from 0.33 the warm-up sampler pass, the TRITON_MLA workspace (for MLA models: needs
    `max_model_len`; `sm_count` caps the split count, None leaves it uncapped) and the cuBLAS
    workspace in the baseline. Without it the numbers are the 0.32 ones, as before."""
    from . import profiles as P

    if profile is not None:
        memory_formula = profile.memory_formula
    t = max_num_batched_tokens
    v0 = memory_formula.startswith("v0")
    rows = max_num_seqs if v0 else min(max_num_seqs, t)
    forward = forward_peak_bytes(arch, t, act_bytes, tp, moe_tp)
    per_logit = V0_SAMPLER_BYTES_PER_LOGIT if v0 else V1_SAMPLER_BYTES_PER_LOGIT
    if profile is not None and not v0:
        per_logit += P.sampler_warmup_bytes_per_logit(profile, device=device,
                                                      compute_capability=compute_capability, env=env)
    sampler = rows * arch.vocab_size * per_logit
    encoder = 0
    if not v0 and is_multimodal(arch):
        # V1 profiles the encoder cache: encoder_cache_size = max(max_num_batched_tokens, tokens of the
        # largest item) embeddings of hidden_size (spec §3.2). Structural only: no log calibrates it.
        encoder = t * arch.hidden_size * act_bytes
    workspace = 0
    if (profile is not None and profile.mla_workspace_in_profile and arch.use_mla and max_model_len
            and P.uses_triton_mla(profile, compute_capability=compute_capability,
                                  attention_backend=attention_backend, device=device)):
        workspace = P.triton_mla_workspace_bytes(
            max_num_seqs=max_num_seqs, num_heads_per_rank=max(1, arch.num_attention_heads // tp),
            kv_lora_rank=kv_lora_rank if kv_lora_rank is not None else mla_kv_lora_rank(arch),
            max_model_len=max_model_len, sm_count=sm_count, num_speculative_tokens=num_speculative_tokens)
    activation = max(forward, sampler) if v0 else forward + sampler + encoder + workspace
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
        non_torch = V1_NON_TORCH_BYTES + (TP_NON_TORCH_EXTRA if tp > 1 else 0)
        if profile is not None and profile.cublas_before_baseline and device == "cuda":
            non_torch -= cublas_workspace_bytes(compute_capability)
    return Overhead(int(activation), cg, non_torch, forward, sampler, encoder, workspace)
