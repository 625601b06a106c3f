"""A launch laid over GPUs and nodes as vLLM places it (0.32; 0.33 places it the same way).

What each parallel flag changes on one GPU, from vLLM's own code:

* tensor parallel (--tensor-parallel-size): layers sliced over TP ranks (memory/weights.py, kv/layout.py).
* pipeline parallel (--pipeline-parallel-size): layers split into stages (distributed/utils.py get_pp_indices).
* prefill context parallel (--prefill-context-parallel-size): more ranks per engine; the process world is
  TP x PP x PCP (config/parallel.py ParallelConfig.__post_init__: world_size). Attention weights and the KV
  cache are replicated over PCP ranks ("PCP expands the process world size but does not increase the
  KV-cache shard count", config/parallel.py); MoE layers shard over it like DP.
* data parallel (--data-parallel-size): DP engine replicas, each of TP x PP x PCP GPUs, each profiling and
  sizing its own KV cache for its own requests (v1/engine/core.py: one EngineCore per DP rank; dense models
  run independent replicas, config/parallel.py reconfigure_for_independent_dp_rank). MoE layers are the
  exception: FusedMoE shards them over TP x PCP x DP ranks together (model_executor/layers/fused_moe/
  config.py FusedMoEParallelConfig.flatten_tp_across_dp_and_pcp), so each GPU holds 1/(TP x PCP x DP) of
  every expert. Attention stays per engine: "DP attention" for MLA models (each engine holds the KV of its
  own requests; MLA's latent cache is not divided by TP).
* expert parallel (--enable-expert-parallel): instead of slicing experts, FusedMoEParallelConfig.make gives
  each of the EP = TP x PCP x DP ranks whole experts: determine_expert_map (fused_moe/expert_map_manager.py)
  gives base = E // EP experts to every rank and one more to the first E % EP ranks. With TP > 1 and DP > 1
  and the default all2all backend (allgather_reducescatter) the MoE runs sequence parallel
  (ParallelConfig.use_sequence_parallel_moe), and models whose shared experts honour it (DeepseekV2MLP
  disable_tp=is_sequence_parallel, Llama4's shared_expert) keep their shared experts whole on every rank.
* decode context parallel (--decode-context-parallel-size): DCP reuses TP ranks and shards the KV cache's
  token positions over DCP ranks. The pages are unchanged; a request at max_model_len needs
  cdiv(cdiv(max_model_len, DCP), block_size) blocks (v1/kv_cache_interface.py FullAttentionSpec
  .max_memory_usage_bytes, dcp_sharded), so vLLM's reported "GPU KV cache size" (int(num_blocks /
  blocks_per_request x max_model_len), v1/core/kv_cache_utils.py get_kv_cache_capacity) grows ~DCP times.
  --dcp-kv-cache-interleave-size / --cp-kv-cache-interleave-size decide which rank stores which token; the
  capacity does not depend on them.

`check` refuses what vLLM refuses, with vLLM's own condition and file. Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..arch import families as F
from ..arch.model import ModelArch
from ..errors import BadFlag, BadInput
from ..settings import Settings

DEFAULT_GPUS_PER_NODE = 8


@dataclass(frozen=True)
class Parallel:
    tp: int = 1
    pp: int = 1
    dp: int = 1
    pcp: int = 1
    dcp: int = 1
    ep: bool = False                    # --enable-expert-parallel as written
    dp_local: int | None = None
    dp_start: int | None = None
    nnodes: int = 1
    node_rank: int = 0
    backend: str | None = None
    gpus_per_node: int | None = None

    @property
    def world(self) -> int:
        """GPUs of one engine: ParallelConfig.world_size = PP x TP x PCP."""
        return self.tp * self.pp * self.pcp

    @property
    def gpus(self) -> int:
        """GPUs of the whole launch: world_size_across_dp."""
        return self.world * self.dp

    @property
    def moe_group(self) -> int:
        """Ranks one MoE layer is spread over: flatten_tp_across_dp_and_pcp = DP x PCP x TP."""
        return self.tp * self.pcp * self.dp

    @property
    def use_ep(self) -> bool:
        """FusedMoEParallelConfig.make: use_ep = dp x pcp x tp > 1 and enable_expert_parallel."""
        return self.ep and self.moe_group > 1

    @property
    def sequence_parallel_moe(self) -> bool:
        """ParallelConfig.use_sequence_parallel_moe with the default all2all backend."""
        return self.ep and self.tp > 1 and self.dp > 1

    @property
    def plain(self) -> bool:
        """Nothing beyond TP x PP on one node."""
        return self.dp == 1 and self.pcp == 1 and self.dcp == 1 and not self.ep and self.nnodes == 1


def of(s: Settings) -> Parallel:
    return Parallel(s.tensor_parallel_size, s.pipeline_parallel_size, s.data_parallel_size,
                    s.prefill_context_parallel_size, s.decode_context_parallel_size, s.enable_expert_parallel,
                    s.data_parallel_size_local, s.data_parallel_start_rank, s.nnodes, s.node_rank,
                    s.distributed_executor_backend, s.gpus_per_node)


def local_experts(num_experts: int, ep_size: int, ep_rank: int) -> int:
    """fused_moe/expert_map_manager.py determine_expert_map: base experts each, one more for the first
    num_experts % ep_size ranks."""
    if ep_size <= 1:
        return num_experts
    base, rem = divmod(num_experts, ep_size)
    return base + 1 if ep_rank < rem else base


def ep_rank_of(p: Parallel, dp_rank: int, pcp_rank: int, tp_rank: int) -> int:
    """flatten_tp_across_dp_and_pcp: dp_rank x PCP x TP + pcp_rank x TP + tp_rank."""
    return dp_rank * p.pcp * p.tp + pcp_rank * p.tp + tp_rank


@dataclass(frozen=True)
class MoEShare:
    """How much of the MoE weights one rank holds (memory/weights.py weights_breakdown)."""

    routed: float                 # fraction of every routed-expert tensor on the rank
    shared_tp: int                # the shared experts' split (1: replicated)
    moe_tp: int                   # intermediate split of each routed expert (1 under EP)
    experts: int | None = None    # whole experts on the rank (EP), None when sliced


def moe_share(arch: ModelArch, p: Parallel, ep_rank: int = 0) -> MoEShare | None:
    """The rank's share of the routed and shared experts; None when it is plain TP slicing (weights.py's
    own rule: everything / TP)."""
    if not arch.num_experts:
        return None
    shared_tp = 1 if (p.sequence_parallel_moe and arch.model_type in F.SP_MOE_SHARED_REPLICATED) else p.tp
    if p.use_ep:
        n = local_experts(arch.num_experts, p.moe_group, ep_rank)
        return MoEShare(n / arch.num_experts, shared_tp, 1, n)
    if p.moe_group == p.tp and shared_tp == p.tp:
        return None
    return MoEShare(1 / p.moe_group, shared_tp, p.moe_group)


# --- what vLLM refuses ---------------------------------------------------------------------------

MAX_GPUS = 16_384   # kvfit lists every rank (plan/ranks.py); larger launches are refused, not sized


def _refuse(flag: str, message: str, hint: str | None = None) -> BadFlag:
    return BadFlag(message, hint, flag=flag)


def check(arch: ModelArch, s: Settings) -> Parallel:
    """The launch's layout, or BadFlag (exit 2) naming what vLLM refuses and where it refuses it."""
    p = of(s)
    heads = arch.num_attention_heads or 0     # attention-free models: 0, which any TP size divides
    if heads % p.tp:
        raise _refuse("tensor_parallel_size",
                      f"--tensor-parallel-size {p.tp} does not divide the model's {heads} attention heads; vLLM "
                      "refuses it (config/model.py verify_with_parallel_config: \"Total number of attention heads "
                      f"({heads}) must be divisible by tensor parallel size ({p.tp})\")",
                      "Pick a TP size that divides the attention heads: "
                      + ", ".join(str(n) for n in (1, 2, 4, 8, 16) if heads % n == 0 and n <= heads) + ".")
    if p.pp > arch.num_hidden_layers:
        raise BadInput(f"--pipeline-parallel-size {p.pp} is more than the model's {arch.num_hidden_layers} layers: "
                       "pipeline stages would hold none",
                       "vLLM splits the layers over the stages; use at most one stage per layer.")
    if p.gpus > MAX_GPUS:
        raise _refuse("data_parallel_size" if p.dp > 1 else "tensor_parallel_size",
                      f"the launch uses {p.gpus:,} GPUs; kvfit checks launches of up to {MAX_GPUS:,} GPUs "
                      "(it sizes and lists every rank)")
    if p.dp_local is not None and p.dp_local > p.dp:
        raise _refuse("data_parallel_size_local",
                      f"--data-parallel-size-local {p.dp_local} is more than --data-parallel-size {p.dp}; vLLM "
                      "refuses it (config/parallel.py: data_parallel_size_local must be <= data_parallel_size)")
    if p.pcp == 1 and p.tp % p.dcp:
        raise _refuse("decode_context_parallel_size",
                      f"--decode-context-parallel-size {p.dcp} does not divide --tensor-parallel-size {p.tp}; vLLM "
                      f"refuses it (config/parallel.py: \"tp_size={p.tp} must be divisible by dcp_size={p.dcp}\")",
                      "Decode context parallel reuses the TP ranks: pick a DCP size that divides the TP size.")
    if p.pcp > 1 and p.dcp not in (1, p.pcp, p.tp * p.pcp):
        raise _refuse("decode_context_parallel_size",
                      f"with --prefill-context-parallel-size {p.pcp}, --decode-context-parallel-size must be one of "
                      f"{sorted({1, p.pcp, p.tp * p.pcp})}; vLLM refuses {p.dcp} (config/parallel.py)")
    if p.ep and not arch.num_experts:
        raise _refuse("enable_expert_parallel",
                      f"--enable-expert-parallel needs a mixture-of-experts model; {arch.model_type} has no experts "
                      "(config/model.py _verify_with_expert_parallelism: \"Number of experts in the model must be "
                      "greater than 0 when expert parallelism is enabled\")", "Remove --enable-expert-parallel.")
    if p.dcp > 1 and not arch.use_mla:
        kv = arch.num_kv_heads or (arch.attention_layers[0].num_kv_heads if arch.attention_layers else 0)
        where = "config/model.py verify_with_parallel_config"
        if kv and p.tp <= kv:
            raise _refuse("decode_context_parallel_size",
                          f"decode context parallel for GQA/MQA needs --tensor-parallel-size ({p.tp}) greater than "
                          f"the model's {kv} KV heads; vLLM refuses it ({where})",
                          "Increase --tensor-parallel-size or set --decode-context-parallel-size 1.")
        if kv and p.dcp > p.tp // kv:
            raise _refuse("decode_context_parallel_size",
                          f"--decode-context-parallel-size {p.dcp} exceeds the maximum ({p.tp // kv}) for "
                          f"--tensor-parallel-size {p.tp} and {kv} KV heads; vLLM refuses it ({where})")
        q_per_kv = arch.num_attention_heads // kv if kv else 0
        if kv and q_per_kv % p.dcp:
            raise _refuse("decode_context_parallel_size",
                          f"the model's {q_per_kv} query heads per KV head do not divide by "
                          f"--decode-context-parallel-size {p.dcp}; vLLM refuses it ({where})")
    if p.nnodes > 1:
        if p.gpus % p.nnodes:
            raise _refuse("nnodes", f"--nnodes {p.nnodes} does not divide the launch's {p.gpus} GPUs "
                          f"(DP {p.dp} x PP {p.pp} x TP {p.tp} x PCP {p.pcp}); vLLM refuses it (engine/arg_utils.py "
                          "create_engine_config: \"--nnodes must evenly divide the total world size\")")
        if p.node_rank >= p.nnodes:
            raise _refuse("node_rank", f"--node-rank {p.node_rank} is not below --nnodes {p.nnodes}; vLLM refuses "
                          "it (engine/arg_utils.py: --node-rank must be between 0 and nnodes - 1)")
        local_world = p.gpus // p.nnodes
        if p.dp > 1 and p.dp_local is None:
            # engine/arg_utils.py create_engine_config: data_parallel_size_local = max(local_world_size //
            # world_size_within_dp, 1) engines on each node; config/parallel.py nnodes_within_dp: a replica
            # spanning nodes needs nnodes divisible by the DP node groups. Engines the nodes do not start are
            # waited for at start-up.
            per_node = max(local_world // p.world, 1)
            spans = p.world > local_world
            if (p.nnodes % p.dp) if spans else (per_node * p.world != local_world):
                started = per_node * (p.nnodes if not spans else 1)
                raise _refuse("data_parallel_size",
                              f"--data-parallel-size {p.dp} over --nnodes {p.nnodes}: each node holds {local_world} "
                              f"GPUs, and vLLM starts max({local_world} // {p.world}, 1) = {per_node} engine(s) of "
                              f"{p.world} GPUs on each (engine/arg_utils.py create_engine_config), "
                              + (f"{started} in all, not {p.dp}: the launch waits for engines that never start"
                                 if not spans else "which the nodes cannot split evenly (config/parallel.py "
                                 "nnodes_within_dp)"),
                              "Make the GPUs per node a multiple of one engine's GPUs (TP x PP x PCP), or set "
                              "--data-parallel-size-local.")
        if p.backend not in (None, "mp", "uni", "external_launcher"):
            raise _refuse("distributed_executor_backend",
                          f"--nnodes {p.nnodes} with --distributed-executor-backend {p.backend}: vLLM refuses it "
                          "(config/parallel.py: \"nnodes > 1 can only be set when distributed executor backend is "
                          "mp, uni or external_launcher\")",
                          "With Ray, start the Ray cluster across the nodes and launch once, without --nnodes.")
    if arch.num_experts and not p.use_ep:
        inter = arch.moe_intermediate_size or arch.intermediate_size
        if inter and inter % p.moe_group:
            raise _refuse("data_parallel_size" if p.dp > 1 else "tensor_parallel_size",
                          f"the experts' intermediate size {inter} does not split over {p.moe_group} ranks "
                          f"(TP {p.tp} x PCP {p.pcp} x DP {p.dp}); vLLM asserts it does "
                          "(model_executor/layers/fused_moe/config.py FusedMoEConfig: intermediate_size % tp_size)",
                          "Use --enable-expert-parallel (whole experts per rank) or another TP x DP.")
        q = arch.quant
        block = q.block if q is not None and q.weight == "fp8" and q.strategy == "block" else None
        if inter and block:
            per = inter // p.moe_group
            bn, bk = block
            if per % bn or (p.tp > 1 and per % bk):
                raise _refuse("data_parallel_size" if p.dp > 1 else "tensor_parallel_size",
                              f"the FP8 experts' intermediate slice {per} (= {inter} / {p.moe_group} ranks) is not a "
                              f"multiple of the {bn}x{bk} weight blocks; vLLM refuses it (quantization/utils/"
                              "fp8_utils.py validate_fp8_block_shape_moe)",
                              "Use --enable-expert-parallel (whole experts per rank) or fewer ranks.")
    return p


def check_kv(p: Parallel, groups, block_size: int, s: Settings) -> None:
    """What vLLM refuses once the KV specs exist (the layout's groups)."""
    if p.dcp <= 1:
        return
    if any(getattr(g.spec, "kind", "") == "sliding" for g in groups):
        raise _refuse("decode_context_parallel_size",
                      "decode context parallel with sliding-window layers: vLLM fails at start-up "
                      "(v1/kv_cache_interface.py SlidingWindowSpec.max_memory_usage_bytes: \"DCP not support "
                      "sliding window.\")", "Set --decode-context-parallel-size 1.")
    i = s.cp_kv_cache_interleave_size
    if i > block_size or block_size % i:
        raise _refuse("cp_kv_cache_interleave_size",
                      f"--cp-kv-cache-interleave-size {i} must be <= and divide the block size {block_size}; vLLM "
                      "refuses it (config/vllm.py validate_block_size)")


# --- nodes ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Nodes:
    count: int
    gpus_per_node: int
    source: str                   # how the count was found, said in the output


def nodes(p: Parallel) -> Nodes:
    """How many nodes the launch spans: --nnodes (vLLM's launcher: world % nnodes == 0, equal shares), the
    data-parallel multi-node form (--data-parallel-size-local engines per node), else --gpus-per-node
    (default 8) filled rank by rank (Ray places ranks over the cluster's nodes)."""
    if p.nnodes > 1:
        return Nodes(p.nnodes, p.gpus // p.nnodes, "--nnodes")
    if p.dp_local and p.dp_local < p.dp:
        return Nodes(-(-p.dp // p.dp_local), p.dp_local * p.world, "--data-parallel-size-local")
    per = p.gpus_per_node or DEFAULT_GPUS_PER_NODE
    if p.gpus <= per:
        return Nodes(1, p.gpus, "one node" if p.gpus_per_node else f"one node (up to {per} GPUs)")
    return Nodes(-(-p.gpus // per), per,
                 "--gpus-per-node" if p.gpus_per_node else f"{per} GPUs per node assumed (--gpus-per-node)")


def this_node(p: Parallel) -> int | None:
    """The node a multi-node launch line starts: --node-rank, or the data-parallel start rank."""
    if p.nnodes > 1:
        return p.node_rank
    if p.dp_local and p.dp_local < p.dp and p.dp_start is not None:
        return p.dp_start // p.dp_local
    return None
