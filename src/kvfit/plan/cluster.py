"""Planning across a cluster (issue 16): the smallest layouts of a model on N GPUs of one type that meet the
goals, each judged by the one evaluation (plan/goals.py judge, so every candidate is a full check), ranked by
the GPUs they use, with the launch for every node.

Candidates: TP within a node (1, 2, 4, 8, ... up to the GPUs per node), PP 1, 2, 4; for mixture-of-experts
models expert parallel off and on; for MLA models decode context parallel 1 and TP; for each of these the
fewest data-parallel engines that meet the goals (a --concurrency goal counts the sequences of every
engine). What vLLM refuses (memory/parallel.py check, the KV head and layer rules) is skipped, not proposed.
Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..errors import KvfitError
from ..gpu.model import Gpu
from ..memory import parallel as P
from ..memory.profiles import Profile
from ..settings import Settings
from .evaluate import Model
from .goals import Check, Goals, judge, remembered, with_length
from .ranks import Deployment, deployment

TP_STEPS = (1, 2, 4, 8, 16)
PP_STEPS = (1, 2, 4)


@dataclass(frozen=True)
class Layout:
    check: Check                      # the judged launch (meets the goals)
    deployment: Deployment

    @property
    def settings(self) -> Settings:
        return self.check.settings

    @property
    def gpus(self) -> int:
        return self.deployment.gpus

    @property
    def label(self) -> str:
        p = self.deployment.parallel
        shape = " x ".join([f"TP {p.tp}"] + [f"{k} {v}" for k, v in (("PP", p.pp), ("DP", p.dp)) if v > 1])
        return shape + (", EP" if p.use_ep else "") + (f", DCP {p.dcp}" if p.dcp > 1 else "")


def candidates(model: Model, base: Settings, max_gpus: int, gpus_per_node: int) -> list[Settings]:
    """Layout shapes to try, without data parallel (each gets the fewest DP engines that meet the goals)."""
    arch = model.arch
    out = []
    for tp in TP_STEPS:
        if tp > min(max_gpus, gpus_per_node):
            continue
        for pp in PP_STEPS:
            if tp * pp > max_gpus or pp > arch.num_hidden_layers:
                continue
            for ep in ((False, True) if arch.num_experts else (False,)):
                for dcp in sorted({1, tp}) if arch.use_mla else (1,):
                    out.append(replace(base, tensor_parallel_size=tp, pipeline_parallel_size=pp,
                                       data_parallel_size=1, enable_expert_parallel=ep,
                                       decode_context_parallel_size=dcp, nnodes=1, node_rank=0,
                                       data_parallel_size_local=None, data_parallel_start_rank=None,
                                       gpus_per_node=gpus_per_node))
    return out


def smallest_layouts(model: Model, gpu: Gpu, base: Settings, profile: Profile, goals: Goals, headroom: int, *,
                     max_gpus: int, gpus_per_node: int = P.DEFAULT_GPUS_PER_NODE, top: int = 5) -> list[Layout]:
    """The layouts on at most `max_gpus` GPUs that meet `goals` with `headroom`, fewest GPUs first (then the
    most KV tokens in all), at most `top`."""
    found: list[Layout] = []
    base = with_length(goals, base)
    with remembered():
        for shape in candidates(model, base, max_gpus, gpus_per_node):
            world = shape.tensor_parallel_size * shape.pipeline_parallel_size
            for dp in range(1, max_gpus // world + 1):
                nodes = -(-world * dp // gpus_per_node)       # vLLM's launcher: --nnodes, equal shares
                s = replace(shape, data_parallel_size=dp, nnodes=nodes)
                if shape.enable_expert_parallel and not P.of(s).use_ep:
                    continue                                   # one rank: nothing to place
                try:
                    c = judge(model, gpu, s, profile, goals, headroom)
                except KvfitError:
                    continue
                if not c.result.startup_ok:
                    break
                if c.meets:
                    found.append(Layout(c, deployment(c.result)))
                    break
    seen: set = set()
    ranked = []
    for lay in sorted(found, key=lambda x: (x.gpus, -x.deployment.kv_tokens_total, x.settings.tensor_parallel_size)):
        key = (lay.gpus, lay.label)
        if key not in seen:
            seen.add(key)
            ranked.append(lay)
    return ranked[:top]


def node_settings(lay: Layout) -> list[Settings]:
    """The launch of every node: one `vllm serve` per node with vLLM's own launcher (--nnodes, --node-rank);
    a single node needs neither."""
    n = lay.settings.nnodes
    return [replace(lay.settings, node_rank=k, gpus_per_node=None) for k in range(n)]
