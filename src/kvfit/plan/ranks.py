"""One evaluated launch laid over its GPUs and nodes: what every rank holds and which rank is the bottleneck.

The evaluation (plan/evaluate.py) answers for the bottleneck GPU: the rank holding the most weights (the
fullest pipeline stage; under expert parallel the first ranks, which determine_expert_map gives one more
expert), whose KV budget is the smallest. This module lists every rank in vLLM's global order (parallel_state
.initialize_model_parallel: ranks arranged [DP, PP, PCP, TP]), with its weights, the KV blocks its engine
allocates (every worker of one engine keeps the engine's smallest block count: v1/core/kv_cache_utils.py
get_kv_cache_configs) and their bytes on that rank, and the nodes the ranks sit on. Each DP engine sizes its
own KV cache; the launch's total KV tokens is the sum over engines. Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..kv.capacity import num_blocks
from ..memory import parallel as P
from ..memory.weights import LoraSpec, weights_breakdown
from ..units import GiB


@dataclass(frozen=True)
class Rank:
    rank: int
    node: int
    dp_rank: int
    pp_stage: int
    pcp_rank: int
    tp_rank: int
    experts: int | None          # whole experts held (expert parallel), None when sliced or dense
    weights_bytes: int
    kv_bytes: int
    blocks: int


@dataclass(frozen=True)
class Node:
    node: int
    gpus: int
    ranks: tuple[int, int]       # first and last global rank
    engines: tuple[int, ...]     # DP ranks with a rank on this node
    fits: bool


@dataclass(frozen=True)
class Deployment:
    parallel: P.Parallel
    gpus: int
    nodes: int
    gpus_per_node: int
    nodes_from: str
    engines: int
    bottleneck: int              # the global rank memory.* and capacity.* describe
    ranks: tuple[Rank, ...]
    per_node: tuple[Node, ...]
    kv_tokens_total: int         # vLLM's reported KV tokens summed over the DP engines
    this_node: int | None        # the node a multi-node launch line starts (--node-rank / DP start rank)

    @property
    def line(self) -> str:
        """'2 nodes x 8 GPUs (TP 8 x DP 2, expert parallel), bottleneck rank 0 (...)'."""
        p = self.parallel
        parts = [f"TP {p.tp}"] + [f"{k} {v}" for k, v in (("PP", p.pp), ("PCP", p.pcp), ("DP", p.dp)) if v > 1]
        extra = []
        if p.use_ep:
            extra.append("expert parallel")
        if p.dcp > 1:
            extra.append(f"DCP {p.dcp}")
        b = self.ranks[self.bottleneck]
        where = f"stage {b.pp_stage}, " if p.pp > 1 else ""
        holds = f"{b.experts} experts, " if b.experts is not None else ""
        shape = " x ".join(parts) + (", " + ", ".join(extra) if extra else "")
        head = f"{self.nodes} nodes x {self.gpus_per_node} GPUs" if self.nodes > 1 else f"1 node x {self.gpus} GPUs"
        tail = f"; {self.kv_tokens_total:,} KV tokens over {self.engines} engines" if self.engines > 1 else ""
        node = f"; this line starts node {self.this_node}" if self.this_node is not None else ""
        return (f"{head} ({shape}), bottleneck rank {b.rank}: {where}{holds}{b.weights_bytes / GiB:.2f} GiB weights, "
                f"{b.blocks:,} blocks{tail}{node}")


def _breakdown(res, p: P.Parallel, ep_rank: int):
    """The weights evaluate computes, for the MoE share of `ep_rank` (plan/evaluate.py memory_budget)."""
    from ..memory.profiles import mxfp4_moe_backend

    s, arch = res.settings, res.model.arch
    inv = res.inventory or res.model.inventory
    lora = LoraSpec(s.max_loras, s.max_lora_rank) if s.enable_lora else None
    mx = mxfp4_moe_backend(res.profile.version, res.gpu.compute_capability) if s.device == "cuda" else None
    return weights_breakdown(inv, arch, res.resolved.model_dtype, p.tp, p.pp, lora=lora,
                             cpu_offload_bytes=int(s.cpu_offload_gb * GiB), mxfp4_padding=mx.padding if mx else None,
                             moe=P.moe_share(arch, p, ep_rank))


def deployment(res) -> Deployment:
    """Every rank of the evaluated launch `res` (a plan.evaluate.Result)."""
    p = P.of(res.settings)
    mem, lay, cap = res.memory, res.layout, res.capacity
    arch = res.model.arch

    def experts_of(ep_rank: int) -> int | None:
        return P.local_experts(arch.num_experts, p.moe_group, ep_rank) if p.use_ep else None

    stage_weights: dict[int | None, tuple[int, ...]] = {}
    inv = res.inventory or res.model.inventory
    top = _breakdown(res, p, 0) if inv is not None else None

    def weights_for(ep_rank: int) -> tuple[int, ...]:
        """Weights on each PP stage's rank: evaluate's figure for the fullest one, the others by the
        difference in their own parameters (the rotary cache, LoRA and offload as on the fullest)."""
        n = experts_of(ep_rank)
        if n not in stage_weights:
            if top is None or not top.stage_bytes:
                stage_weights[n] = (mem.weights_bytes,) * p.pp
            else:
                wb = top if n == experts_of(0) else _breakdown(res, p, ep_rank)
                peak = max(top.stage_bytes)
                stage_weights[n] = tuple(mem.weights_bytes - (peak - b) for b in wb.stage_bytes)
        return stage_weights[n]

    engine_blocks: dict[int, int] = {}
    stages = lay.rank_bytes_per_block or (lay.bytes_per_block,)
    nd = P.nodes(p)
    ranks: list[Rank] = []
    for dp_rank in range(p.dp):
        members = []
        for pp_stage in range(p.pp):
            for pcp_rank in range(p.pcp):
                for tp_rank in range(p.tp):
                    ep_rank = P.ep_rank_of(p, dp_rank, pcp_rank, tp_rank)
                    w = weights_for(ep_rank)[pp_stage]
                    members.append((pp_stage, pcp_rank, tp_rank, experts_of(ep_rank), w))
        # the engine's blocks: evaluate's count, or, where this engine's fullest rank holds fewer weights
        # (fewer experts under expert parallel), the count its larger budget gives
        heaviest = max(m[4] for m in members)
        if mem.explicit_kv_budget or heaviest >= mem.weights_bytes or not lay.groups:
            blocks = cap.num_blocks
        else:
            budget = mem.kv_available_bytes + (mem.weights_bytes - heaviest)
            blocks = num_blocks(lay, budget) if res.settings.num_gpu_blocks_override is None else cap.num_blocks
        engine_blocks[dp_rank] = blocks
        for pp_stage, pcp_rank, tp_rank, experts, w in members:
            g = ((dp_rank * p.pp + pp_stage) * p.pcp + pcp_rank) * p.tp + tp_rank
            bpb = stages[pp_stage] if pp_stage < len(stages) else lay.bytes_per_block
            ranks.append(Rank(g, min(g // max(1, nd.gpus_per_node), nd.count - 1), dp_rank, pp_stage, pcp_rank,
                              tp_rank, experts, int(w), blocks * bpb, blocks))
    ranks.sort(key=lambda r: r.rank)
    # the bottleneck: the heaviest rank of the fullest stage (evaluate's weights), the first such rank
    fullest = max(range(p.pp), key=lambda i: max(r.weights_bytes for r in ranks if r.pp_stage == i))
    bottleneck = min((r for r in ranks if r.pp_stage == fullest),
                     key=lambda r: (-r.weights_bytes, r.rank)).rank
    per_node = []
    for n in range(nd.count):
        on = [r for r in ranks if r.node == n]
        if not on:
            continue
        # an engine fits when one request at max_model_len fits beside the null block: with one stage,
        # blocks >= blocks_per_request + 1 is vLLM's byte check (_check_enough_kv_cache_memory); the
        # bottleneck engine's answer is evaluate's
        engines = tuple(sorted({r.dp_rank for r in on}))
        fits = res.fits or (res.startup_ok and p.pp == 1 and bool(lay.groups) and cap.blocks_per_request > 0
                            and all(engine_blocks[e] >= cap.blocks_per_request + 1 for e in engines)
                            and not res.resolved.auto_fit)
        per_node.append(Node(n, len(on), (on[0].rank, on[-1].rank), engines, fits))
    if cap.blocks_per_request:
        total = sum(int(b / cap.blocks_per_request * res.resolved.max_model_len) for b in engine_blocks.values())
    else:
        total = 0
    return Deployment(p, p.gpus, nd.count, nd.gpus_per_node, nd.source, p.dp, bottleneck, tuple(ranks),
                      tuple(per_node), total, P.this_node(p))

