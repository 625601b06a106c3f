"""`kvfit check`: gather the inputs (model source, GPU, vLLM version), run plan.evaluate, render.

This is the edge between the I/O (sources, NVML) and the pure core; the CLI only parses flags.
"""

from __future__ import annotations

import json

from rich.console import Console

from . import plan
from .arch.normalize import normalize
from .errors import GpuError
from .gpu.catalog import Gpu, common_gpus, lookup
from .memory.profiles import CURRENT_VERSION, installed_vllm_version, profile_for
from .render.json import result_dict
from .render.report import render, render_table
from .settings import Settings
from .sources import resolve
from .units import parse_human_int, parse_max_model_len, parse_size


def load_model(ref: str, revision: str | None, offline: bool) -> plan.Model:
    src = resolve(ref, revision=revision, offline=offline)
    arch = normalize(src.config, hf_quant_config=src.hf_quant_config)
    return plan.Model(src.id, src.source, src.detail, arch, src.inventory)


def pick_gpus(gpu: str | None, gpu_memory: str | None, device: str, tp: int) -> tuple[list[Gpu], str | None]:
    """The GPU(s) to check on, and a note when none was probed or named."""
    if device == "cpu":
        return [Gpu("CPU (vLLM CPU backend)", 0, (0, 0), source="--device cpu")], None
    if gpu_memory is not None:
        total = parse_size(gpu_memory, "--gpu-memory")
        base = lookup(gpu) if gpu else Gpu(f"GPU with {total / 2**30:.2f} GiB", total)
        return [Gpu(base.name, total, base.compute_capability, source="--gpu-memory")], None
    if gpu is not None:
        return [lookup(gpu)], None
    from .gpu.nvml import probe

    found = probe()
    if found.gpus:
        if len(found.gpus) < tp:
            raise GpuError(f"--tensor-parallel-size {tp} needs {tp} GPUs; {len(found.gpus)} visible",
                           "Lower --tensor-parallel-size, or check CUDA_VISIBLE_DEVICES.")
        # TP ranks run on the first tp visible GPUs; the one with the least free memory decides.
        used = sorted(found.gpus[:tp], key=lambda g: g.free_bytes or 0)
        return [used[0]], None
    return common_gpus(), found.reason


def run(*, model: str, max_model_len: str | None, gpu_memory_utilization: float | None,
        tensor_parallel_size: int, pipeline_parallel_size: int, dtype: str, kv_cache_dtype: str,
        block_size: int | None, max_num_seqs: int | None, max_num_batched_tokens: str | None,
        enforce_eager: bool, kv_cache_memory_bytes: str | None, gpu: str | None, gpu_memory: str | None,
        vllm_version: str | None, entrypoint: str, device: str, revision: str | None, offline: bool,
        as_json: bool, out: Console, err: Console) -> int:
    settings = Settings(
        max_model_len=parse_max_model_len(max_model_len),
        gpu_memory_utilization=gpu_memory_utilization,
        tensor_parallel_size=tensor_parallel_size, pipeline_parallel_size=pipeline_parallel_size,
        dtype=dtype, kv_cache_dtype=kv_cache_dtype, block_size=block_size, max_num_seqs=max_num_seqs,
        max_num_batched_tokens=parse_human_int(max_num_batched_tokens, "--max-num-batched-tokens")
        if max_num_batched_tokens is not None else None,
        enforce_eager=enforce_eager,
        kv_cache_memory_bytes=parse_size(kv_cache_memory_bytes, "--kv-cache-memory-bytes")
        if kv_cache_memory_bytes is not None else None,
        device=device, entrypoint=entrypoint,
    ).validate()
    if device == "cpu" and settings.kv_cache_memory_bytes is None:
        import os

        space = os.environ.get("VLLM_CPU_KVCACHE_SPACE", "").strip()
        if space:
            settings = Settings(**{**settings.__dict__, "kv_cache_memory_bytes": parse_size(space + "GiB",
                                                                                          "VLLM_CPU_KVCACHE_SPACE")})
        else:
            from .errors import BadInput

            raise BadInput("--device cpu needs the KV budget: --kv-cache-memory-bytes or VLLM_CPU_KVCACHE_SPACE",
                           "vLLM's CPU backend otherwise sizes KV from this machine's free RAM at launch.")
    version = vllm_version or installed_vllm_version() or CURRENT_VERSION
    profile = profile_for(version)
    m = load_model(model, revision, offline)
    gpus, probe_note = pick_gpus(gpu, gpu_memory, device, tensor_parallel_size)
    results = [plan.evaluate(m, g, settings, profile) for g in gpus]

    if len(results) == 1:
        res = results[0]
        if as_json:
            out.print_json(json.dumps(result_dict(res)))
        else:
            render(res, out)
        return 0 if res.fits else 1
    if as_json:
        out.print_json(json.dumps({"schema": "kvfit.check-table/1", "gpu_probe": probe_note,
                                   "results": [result_dict(r) for r in results]}))
    else:
        out.print(f"[dim]No GPU probed ({probe_note}); showing common GPUs. Name one with --gpu or --gpu-memory.[/]")
        render_table(results, out, f"{m.id} at max_model_len {results[0].resolved.max_model_len:,} "
                                   f"({m.source}), vLLM {profile.version}")
    return 0 if any(r.fits for r in results) else 1
