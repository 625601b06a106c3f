"""The machine-readable answer (`--json`, `--format json`). Field names are a contract: within a schema
version fields are only added, never renamed or removed. `kvfit.check/2` (this version) replaced
`kvfit.check/1` and `kvfit.check-table/1`: one shape with or without a GPU; `verdict` agrees with the exit
code; `recommendation.*` describes exactly the recommended command; vLLM's what-ifs are under `what_if`.
"""

from __future__ import annotations

import math
from typing import Any

from .. import launch as L
from ..plan.evaluate import Result
from ..plan.ranks import deployment

SCHEMA = "kvfit.check/2"
ONE_LINE = 1 << 30


def _num(x):
    return None if isinstance(x, float) and not math.isfinite(x) else x


def result_dict(res: Result) -> dict:
    """One evaluated launch: what kvfit computed, vLLM's numbers."""
    arch, r, mem, cap, lay = res.model.arch, res.resolved, res.memory, res.capacity, res.layout
    s = res.settings
    return {
        "model": {
            "id": res.model.id, "source": res.model.source, "detail": res.model.detail,
            "model_type": arch.model_type, "family": arch.family, "label": arch.label,
            "layers": arch.num_hidden_layers, "parameters": arch.params.total if arch.params else None,
            "kv_layers": len(arch.layers), "derived_max_model_len": arch.derived_max_len,
            "derived_from": arch.derived_max_len_key, "inferred": list(arch.inferred),
            "quantization": arch.quantization,
        },
        "vllm": {"version": res.profile.version, "profile": res.profile.name, "engine": res.profile.engine},
        "gpu": {
            "name": res.gpu.name, "total_bytes": res.gpu.total_bytes, "free_bytes": res.gpu.free_bytes,
            "used_bytes": res.gpu.used_bytes, "source": res.gpu.source,
            "compute_capability": ".".join(map(str, res.gpu.compute_capability)),
            "count": s.tensor_parallel_size * s.pipeline_parallel_size,
        },
        "settings": {
            "max_model_len": r.max_model_len, "auto_fit": r.auto_fit,
            "gpu_memory_utilization": r.gpu_memory_utilization if s.kv_cache_memory_bytes is None else None,
            "kv_cache_memory_bytes": s.kv_cache_memory_bytes,
            "tensor_parallel_size": s.tensor_parallel_size, "pipeline_parallel_size": s.pipeline_parallel_size,
            "dtype": r.model_dtype, "kv_cache_dtype": r.kv_cache_dtype, "quantization": s.quantization,
            "max_num_batched_tokens": r.max_num_batched_tokens, "max_num_seqs": r.max_num_seqs,
            "block_size": lay.block_size, "enforce_eager": s.enforce_eager, "device": s.device,
            "entrypoint": s.entrypoint, "cpu_offload_gb": s.cpu_offload_gb or None,
            "enable_lora": s.enable_lora, "max_loras": s.max_loras if s.enable_lora else None,
            "speculative_method": s.speculative_method,
            "num_speculative_tokens": s.num_speculative_tokens if s.speculative_method else None,
        },
        "kv": {
            "bytes_per_token": lay.kv_bytes_per_token, "block_size": lay.block_size,
            "bytes_per_block": lay.bytes_per_block, "groups": len(lay.groups),
            "padding_layers": lay.padding_layers, "layers_per_gpu": lay.layers_on_rank,
            "attention_block_size": lay.attention_block_size or lay.block_size,
            "mamba_page_padding_percent": round(lay.mamba_page_padding, 2),
            "bytes_per_block_per_stage": list(lay.rank_bytes_per_block),
        },
        "memory": {
            "total_bytes": mem.total_bytes, "requested_bytes": mem.requested_bytes,
            "weights_bytes": mem.weights_bytes, "weights_estimated": mem.weights_estimated,
            "weights_source": res.inventory.source if res.inventory is not None else None,
            "activation_bytes": mem.activation_bytes, "cudagraph_bytes": mem.cudagraph_bytes,
            "non_torch_bytes": mem.non_torch_bytes, "kv_available_bytes": mem.kv_available_bytes,
            "kv_cache_bytes": mem.kv_cache_bytes, "free_at_start_bytes": mem.free_at_start_bytes,
            "lora_bytes": mem.lora_bytes, "cpu_offload_bytes": mem.cpu_offload_bytes,
            "weights_detail": mem.weights_detail,
        },
        "capacity": {
            "num_blocks": cap.num_blocks, "blocks_per_request": cap.blocks_per_request,
            "kv_cache_tokens": cap.kv_cache_tokens, "max_concurrency": _num(round(cap.max_concurrency, 4)),
            "max_model_len_fit": cap.max_model_len_fit, "needed_bytes": cap.needed_bytes,
        },
        "layout": layout_dict(res),
    }


def layout_dict(res: Result) -> dict:
    """The launch over its GPUs and nodes (plan/ranks.py): all GPUs, nodes, every rank. memory.* and
    capacity.* above are the bottleneck rank's."""
    d = deployment(res)
    p = d.parallel
    return {
        "gpus": d.gpus, "nodes": d.nodes, "gpus_per_node": d.gpus_per_node, "nodes_from": d.nodes_from,
        "tensor_parallel_size": p.tp, "pipeline_parallel_size": p.pp, "data_parallel_size": p.dp,
        "prefill_context_parallel_size": p.pcp, "decode_context_parallel_size": p.dcp,
        "expert_parallel": p.use_ep, "expert_parallel_size": p.moe_group if p.use_ep else None,
        "engines": d.engines, "bottleneck_rank": d.bottleneck, "kv_cache_tokens_total": d.kv_tokens_total,
        "this_node": d.this_node,
        "ranks": [{"rank": r.rank, "node": r.node, "dp_rank": r.dp_rank, "stage": r.pp_stage,
                   "pcp_rank": r.pcp_rank, "tp_rank": r.tp_rank, "experts": r.experts,
                   "weights_bytes": r.weights_bytes, "kv_bytes": r.kv_bytes, "blocks": r.blocks} for r in d.ranks],
        "per_node": [{"node": n.node, "gpus": n.gpus, "first_rank": n.ranks[0], "last_rank": n.ranks[1],
                      "engines": list(n.engines), "fits": n.fits} for n in d.per_node],
    }


def _command(p, form: str) -> dict | None:
    if p is None or p.launch is None:
        return None
    fixed = p.launch
    # one line for the shell forms (argv too): what a program pastes or runs
    return {"form": form, "text": L.render(fixed, form, width=ONE_LINE).rstrip("\n"),
            "argv": ["vllm", "serve", *L.argv(fixed)]}


def option_dict(p, form: str) -> dict | None:
    """A proposed launch: what it changes, what it needs, the numbers it gets, the command."""
    if p is None:
        return None
    o = p.option
    c = o.check
    r, cap, s = c.result.resolved, c.result.capacity, c.settings
    return {
        "label": o.label, "as_given": o.label == "as given", "tier": o.tier, "meets": o.meets,
        "changes": dict(o.changes), "needs": p.needs, "cost": o.cost or None,
        "other_model": o.other_model,
        "gpu": c.gpu.name, "gpus": c.gpus_used,
        "max_model_len": r.max_model_len,
        "gpu_memory_utilization": r.gpu_memory_utilization if s.kv_cache_memory_bytes is None else None,
        "kv_cache_memory_bytes": s.kv_cache_memory_bytes,
        "tensor_parallel_size": s.tensor_parallel_size, "pipeline_parallel_size": s.pipeline_parallel_size,
        "kv_cache_dtype": r.kv_cache_dtype, "quantization": s.quantization, "max_num_seqs": r.max_num_seqs,
        "max_num_batched_tokens": r.max_num_batched_tokens, "enforce_eager": s.enforce_eager,
        "cpu_offload_gb": s.cpu_offload_gb or None,
        "kv_cache_tokens": cap.kv_cache_tokens, "max_concurrency": _num(round(cap.max_concurrency, 4)),
        "sequences_resident": c.resident, "footprint_bytes": c.footprint_bytes,
        "least_gpu_memory_utilization": o.least_util, "longest_max_model_len": o.context,
        "unmet": [why for _, why in c.unmet],
        "command": _command(p, form),
    }


def gpu_answer_dict(inp, g, form: str) -> dict:
    pl = g.plan
    a = pl.as_given
    failed = pl.failed
    d = result_dict(a.result)
    d.update({
        "verdict": {
            "fits": pl.ok, "launch_fits": a.result.fits, "startup_ok": a.result.startup_ok,
            "goals_asked": pl.goals.active,
            "failed": {"check": failed[0], "reason": failed[1]} if failed else None,
            "reasons": [why for _, why in a.unmet], "nothing_fits": pl.nothing_fits,
        },
        "goals": {"context": pl.goals.context, "concurrency": pl.goals.concurrency,
                  "max_vram_bytes": pl.goals.max_vram_bytes} if pl.goals.active else None,
        "policy": pl.policy.as_dict(),
        "as_given": {"sequences_resident": a.resident, "sequences_resident_without_headroom": a.resident_exact,
                     "footprint_bytes": a.footprint_bytes},
        "recommendation": option_dict(g.recommended, form),
        "kv_pinned": option_dict(g.kv_pinned, form),
        "what_if": {"longest_max_model_len": pl.what_if.longest_max_model_len,
                    "min_gpu_memory_utilization": pl.what_if.min_gpu_memory_utilization},
        "alternatives": [option_dict(p, form) for p in g.alternatives],
        "notes": [*a.result.notes, *pl.notes],
    })
    return d


def answer_dict(a, form: str | None = None) -> dict[str, Any]:
    inp = a.inputs
    form = form or inp.launch.form
    head = {"schema": SCHEMA, "launch": {"form": inp.launch.form, "text": L.render(inp.launch).rstrip("\n")},
            "notes": list(inp.notes), "warnings": list(inp.warnings)}
    if not a.table:
        d = gpu_answer_dict(inp, a.per_gpu[0], form)
        d["notes"] = list(inp.notes) + d["notes"]
        d.update({k: v for k, v in head.items() if k != "notes"})
        return {"schema": SCHEMA, **{k: v for k, v in d.items() if k != "schema"}}
    fits_on = [g.gpu.name for g in a.per_gpu if g.ok]
    return {
        **head,
        "gpu_probe": inp.probe_note,
        "verdict": {"fits": a.ok, "fits_on": fits_on, "table": True,
                    "reason": f"no GPU named or probed ({inp.probe_note}): fits {len(fits_on)} of "
                              f"{len(a.per_gpu)} common GPUs; name yours with --gpu or --gpu-memory"},
        "results": [gpu_answer_dict(inp, g, form) for g in a.per_gpu],
    }
