"""The machine-readable report (`--json`). Field names are a contract: add, never rename."""

from __future__ import annotations

import math

from ..memory.weights import inventory_for
from ..plan.evaluate import Result

SCHEMA = "kvfit.check/1"


def _num(x):
    return None if isinstance(x, float) and not math.isfinite(x) else x


def result_dict(res: Result) -> dict:
    arch, r, mem, cap, lay = res.model.arch, res.resolved, res.memory, res.capacity, res.layout
    return {
        "schema": SCHEMA,
        "model": {
            "id": res.model.id, "source": res.model.source, "detail": res.model.detail,
            "model_type": arch.model_type, "family": arch.family, "layers": arch.num_hidden_layers,
            "kv_layers": len(arch.layers), "derived_max_model_len": arch.derived_max_len,
            "derived_from": arch.derived_max_len_key, "inferred": list(arch.inferred),
        },
        "vllm": {"version": res.profile.version, "profile": res.profile.name, "engine": res.profile.engine},
        "gpu": {
            "name": res.gpu.name, "total_bytes": res.gpu.total_bytes, "free_bytes": res.gpu.free_bytes,
            "used_bytes": res.gpu.used_bytes, "source": res.gpu.source,
            "compute_capability": ".".join(map(str, res.gpu.compute_capability)),
        },
        "settings": {
            "max_model_len": r.max_model_len, "auto_fit": r.auto_fit,
            "gpu_memory_utilization": r.gpu_memory_utilization,
            "tensor_parallel_size": res.settings.tensor_parallel_size,
            "pipeline_parallel_size": res.settings.pipeline_parallel_size,
            "dtype": r.model_dtype, "kv_cache_dtype": r.kv_cache_dtype,
            "max_num_batched_tokens": r.max_num_batched_tokens, "max_num_seqs": r.max_num_seqs,
            "enforce_eager": res.settings.enforce_eager, "device": res.settings.device,
            "entrypoint": res.settings.entrypoint,
            "kv_cache_memory_bytes": res.settings.kv_cache_memory_bytes,
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
            "weights_source": inventory_for(res.model.inventory, arch).source,
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
        "verdict": {"fits": res.fits, "startup_ok": res.startup_ok, "reasons": list(res.reasons)},
        "recommendation": {
            "max_model_len": res.recommendation.max_model_len,
            "gpu_memory_utilization": res.recommendation.gpu_memory_utilization,
            "utilization_note": res.recommendation.utilization_reason,
            "serve_flags": res.recommendation.serve_flags,
        },
        "notes": list(res.notes),
    }
