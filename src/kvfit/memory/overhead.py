"""What vLLM reserves outside the KV cache besides the weights (spec §3, §10.6).

A first model, calibrated on one public log and documented term by term. Each constant names the
observation it comes from; the accuracy benchmark (kvfit.bench.accuracy) measures it.

Reference log (spec §8.3, calibration gt-046): Llama-3.1-8B, A100 80GB (79.25 GiB), vLLM 0.31,
`vllm serve` defaults (max_num_batched_tokens 2048, max_num_seqs 256):
  consumed 15.26 GiB = weights 15.02 (14.96 params + 0.03 rotary cache) + 0.24 non-torch,
  peak activation 1.44 GiB = 1.21 activation + 0.23 CUDA-graph estimate.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..arch.model import ModelArch
from ..units import GiB, MiB

# total_consumed minus weights in the reference log: cuBLAS/attention workspaces, allocator slack.
NON_TORCH_BYTES = int(0.24 * GiB)
# Sampler bytes per logit element in the profile run: float32 logits plus the sort / top-k / top-p /
# penalty copies the V1 sampler makes; 8 x 4 B fits the reference log's 1.21 GiB together with
# the MLP term below (256 x 128256 x 32 B = 0.98 GiB; MLP 0.17 GiB; 0.06 GiB unexplained).
SAMPLER_BYTES_PER_LOGIT = 32
# CUDA-graph estimate per decoder layer: 0.23 GiB / 32 layers in the reference log.
CUDAGRAPH_BYTES_PER_LAYER = int(0.23 * GiB / 32)
CUDAGRAPH_MIN_BYTES = 32 * MiB


@dataclass(frozen=True)
class Overhead:
    activation_bytes: int
    cudagraph_bytes: int
    non_torch_bytes: int

    @property
    def total(self) -> int:
        return self.activation_bytes + self.cudagraph_bytes + self.non_torch_bytes


def estimate_overhead(arch: ModelArch, *, max_num_batched_tokens: int, max_num_seqs: int,
                      act_bytes: int, tp: int, enforce_eager: bool, cudagraph_counted: bool,
                      layers_on_rank: int) -> Overhead:
    t = max_num_batched_tokens
    r = min(max_num_seqs, t)
    inter = arch.intermediate_size
    if arch.num_experts and arch.experts_per_token:
        inter = max(inter, arch.experts_per_token * (arch.moe_intermediate_size or inter))
    mlp = t * (2 * inter // tp + 4 * arch.hidden_size) * act_bytes
    sampler = r * arch.vocab_size * SAMPLER_BYTES_PER_LOGIT
    activation = max(mlp, 0) + sampler
    cg = 0
    if not enforce_eager and cudagraph_counted:
        cg = max(CUDAGRAPH_MIN_BYTES, CUDAGRAPH_BYTES_PER_LAYER * layers_on_rank)
    return Overhead(int(activation), int(cg), NON_TORCH_BYTES)
