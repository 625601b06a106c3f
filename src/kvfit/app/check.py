"""`kvfit check`: gather the inputs (model source, GPU, vLLM version), run plan.evaluate, render.

This is the edge between the I/O (sources, NVML) and the pure core; the CLI only parses flags.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from ..plan import evaluate as plan
from ..arch.normalize import normalize
from ..errors import GpuError
from ..gpu.model import Gpu
from ..gpu.catalog import common_gpus, lookup
from ..memory.profiles import CURRENT_VERSION, installed_vllm_version, profile_for
from ..render.json import result_dict
from ..settings import Settings
from ..sources.resolve import resolve
from ..units import parse_human_int, parse_max_model_len, parse_size

if TYPE_CHECKING:               # rich is imported only to print (kvfit.entry keeps `check --json` off it)
    from rich.console import Console


def load_model(ref: str, revision: str | None, offline: bool) -> plan.Model:
    src = resolve(ref, revision=revision, offline=offline)
    arch = normalize(src.config, hf_quant_config=src.hf_quant_config)
    return plan.Model(src.id, src.source, src.detail, arch, src.inventory)


from ..kv.cpu_host import CPU_ISAS, detect_cpu_isa  # noqa: E402,F401 - moved to kv/cpu_host.py


def parse_speculative_config(text: str | None) -> dict:
    """--speculative-config as vLLM takes it: a JSON object with method, num_speculative_tokens, model."""
    if text is None:
        return {}
    from ..errors import BadInput

    try:
        spec = json.loads(text)
    except ValueError as e:
        raise BadInput(f"--speculative-config must be JSON, e.g. '{{\"method\": \"mtp\", "
                       f"\"num_speculative_tokens\": 1}}' ({e})") from None
    if not isinstance(spec, dict):
        raise BadInput("--speculative-config must be a JSON object")
    method = spec.get("method") or ("draft_model" if spec.get("model") else None)
    n = spec.get("num_speculative_tokens")
    if not isinstance(method, str) or isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise BadInput("--speculative-config needs a method and num_speculative_tokens >= 1")
    model = spec.get("model")
    if model is not None and not isinstance(model, str):
        raise BadInput("--speculative-config model must be a model id or directory")
    return {"method": method, "num_speculative_tokens": n, "model": model}


def with_speculative_layers(m: plan.Model, settings: Settings, revision: str | None, offline: bool) -> plan.Model:
    """A draft model's or EAGLE head's attention layers are KV layers of the launch too."""
    from ..arch import families as F

    if settings.speculative_method not in F.DRAFT_MODEL_METHODS or not settings.speculative_model:
        return m
    draft = load_model(settings.speculative_model, None, offline)
    return plan.Model(m.id, m.source, m.detail, m.arch.with_draft(draft.arch.layers), m.inventory)


def pick_gpus(gpu: str | None, gpu_memory: str | None, device: str, tp: int,
              pp: int = 1) -> tuple[list[Gpu], str | None]:
    """The GPU(s) to check on, and a note when none was probed or named."""
    if device == "cpu":
        return [Gpu("CPU (vLLM CPU backend)", 0, (0, 0), source="--device cpu")], None
    if gpu_memory is not None:
        total = parse_size(gpu_memory, "--gpu-memory")
        base = lookup(gpu) if gpu else Gpu(f"GPU with {total / 2**30:.2f} GiB", total)
        return [Gpu(base.name, total, base.compute_capability, source="--gpu-memory")], None
    if gpu is not None:
        return [lookup(gpu)], None
    from ..gpu.nvml import probe

    found = probe()
    if found.gpus:
        world = tp * pp                  # vLLM's world size: one GPU per TP rank of every PP stage
        if len(found.gpus) < world:
            flags = f"--tensor-parallel-size {tp}" + (f" x --pipeline-parallel-size {pp}" if pp > 1 else "")
            raise GpuError(f"{flags} needs {world} GPUs; {len(found.gpus)} visible",
                           "Lower the parallel sizes, or check CUDA_VISIBLE_DEVICES.")
        # Ranks run on the first `world` visible GPUs; the one with the least free memory decides.
        used = sorted(found.gpus[:world], key=lambda g: g.free_bytes or 0)
        return [used[0]], None
    return common_gpus(), found.reason


def cpu_kv_budget(settings: Settings) -> Settings:
    """The CPU backend's KV budget as vLLM 0.32 sets it (platforms/cpu.py::check_and_update_config):
    a non-empty VLLM_CPU_KVCACHE_SPACE wins over --kv-cache-memory-bytes and is read with int() as GiB."""
    import os
    from dataclasses import replace

    from ..errors import BadInput

    space = os.environ.get("VLLM_CPU_KVCACHE_SPACE", "")
    if space != "":
        try:
            gib = int(space)
        except ValueError:
            raise BadInput(f"VLLM_CPU_KVCACHE_SPACE={space!r}: vLLM reads it with int() as whole GiB and would "
                           "refuse this value", "Set a whole number of GiB, or unset it and use "
                           "--kv-cache-memory-bytes.") from None
        if gib <= 0:
            raise BadInput(f"VLLM_CPU_KVCACHE_SPACE={space!r} must be a positive number of GiB")
        return replace(settings, kv_cache_memory_bytes=gib * (1 << 30))
    if settings.kv_cache_memory_bytes is None:
        raise BadInput("--device cpu needs the KV budget: --kv-cache-memory-bytes or VLLM_CPU_KVCACHE_SPACE",
                       "vLLM's CPU backend otherwise sizes KV from this machine's free RAM at launch.")
    return settings


def make_settings(*, max_model_len: str | None = None, gpu_memory_utilization: float | None = None,
                  tensor_parallel_size: int = 1, pipeline_parallel_size: int = 1, dtype: str = "auto",
                  kv_cache_dtype: str = "auto", block_size: int | None = None, max_num_seqs: int | None = None,
                  max_num_batched_tokens: str | None = None, enforce_eager: bool = False,
                  kv_cache_memory_bytes: str | None = None, device: str = "cuda", entrypoint: str = "serve",
                  enable_lora: bool = False, max_loras: int = 1, max_lora_rank: int = 16,
                  cpu_offload_gb: float = 0.0, speculative_config: str | None = None,
                  enable_prefix_caching: bool = False, no_enable_prefix_caching: bool = False,
                  mamba_cache_dtype: str = "auto", mamba_ssm_cache_dtype: str = "auto",
                  disable_hybrid_kv_cache_manager: bool = False, disable_sliding_window: bool = False,
                  cpu_isa: str | None = None) -> Settings:
    """The launch from check's flags, parsed as vLLM parses them and validated (one place for check and smoke).
    The CPU backend's budget is settled separately (cpu_kv_budget): check and smoke treat its env differently."""
    spec = parse_speculative_config(speculative_config)
    isa = (cpu_isa or detect_cpu_isa()) if device == "cpu" else "avx512_bf16"
    if isa not in CPU_ISAS:
        from ..errors import BadInput

        raise BadInput(f"--cpu-isa {isa!r} is not one of {', '.join(CPU_ISAS)}")
    return Settings(
        max_model_len=parse_max_model_len(max_model_len),
        gpu_memory_utilization=gpu_memory_utilization,
        tensor_parallel_size=tensor_parallel_size, pipeline_parallel_size=pipeline_parallel_size,
        dtype=dtype, kv_cache_dtype=kv_cache_dtype, block_size=block_size, max_num_seqs=max_num_seqs,
        max_num_batched_tokens=parse_human_int(max_num_batched_tokens, "--max-num-batched-tokens")
        if max_num_batched_tokens is not None else None,
        enforce_eager=enforce_eager,
        kv_cache_memory_bytes=parse_size(kv_cache_memory_bytes, "--kv-cache-memory-bytes")
        if kv_cache_memory_bytes is not None else None,
        device=device, entrypoint=entrypoint, enable_lora=enable_lora, max_loras=max_loras,
        max_lora_rank=max_lora_rank, cpu_offload_gb=cpu_offload_gb,
        speculative_method=spec.get("method"), num_speculative_tokens=spec.get("num_speculative_tokens", 0),
        speculative_model=spec.get("model"),
        enable_prefix_caching=True if enable_prefix_caching else (False if no_enable_prefix_caching else None),
        mamba_cache_dtype=mamba_cache_dtype, mamba_ssm_cache_dtype=mamba_ssm_cache_dtype,
        disable_hybrid_kv_cache_manager=True if disable_hybrid_kv_cache_manager else None,
        disable_sliding_window=disable_sliding_window,
        cpu_avx512_bf16=isa in ("avx512_bf16", "amx"), cpu_amx=isa == "amx",
    ).validate()


def run(*, model: str, max_model_len: str | None, gpu_memory_utilization: float | None,
        tensor_parallel_size: int, pipeline_parallel_size: int, dtype: str, kv_cache_dtype: str,
        block_size: int | None, max_num_seqs: int | None, max_num_batched_tokens: str | None,
        enforce_eager: bool, kv_cache_memory_bytes: str | None, gpu: str | None, gpu_memory: str | None,
        vllm_version: str | None, entrypoint: str, device: str, revision: str | None, offline: bool,
        as_json: bool, out: Console, err: Console, enable_lora: bool = False, max_loras: int = 1,
        max_lora_rank: int = 16, cpu_offload_gb: float = 0.0, speculative_config: str | None = None,
        enable_prefix_caching: bool = False, no_enable_prefix_caching: bool = False,
        mamba_cache_dtype: str = "auto", mamba_ssm_cache_dtype: str = "auto",
        disable_hybrid_kv_cache_manager: bool = False, disable_sliding_window: bool = False,
        cpu_isa: str | None = None) -> int:
    settings = make_settings(
        max_model_len=max_model_len, gpu_memory_utilization=gpu_memory_utilization,
        tensor_parallel_size=tensor_parallel_size, pipeline_parallel_size=pipeline_parallel_size, dtype=dtype,
        kv_cache_dtype=kv_cache_dtype, block_size=block_size, max_num_seqs=max_num_seqs,
        max_num_batched_tokens=max_num_batched_tokens, enforce_eager=enforce_eager,
        kv_cache_memory_bytes=kv_cache_memory_bytes, device=device, entrypoint=entrypoint,
        enable_lora=enable_lora, max_loras=max_loras, max_lora_rank=max_lora_rank, cpu_offload_gb=cpu_offload_gb,
        speculative_config=speculative_config, enable_prefix_caching=enable_prefix_caching,
        no_enable_prefix_caching=no_enable_prefix_caching, mamba_cache_dtype=mamba_cache_dtype,
        mamba_ssm_cache_dtype=mamba_ssm_cache_dtype, disable_hybrid_kv_cache_manager=disable_hybrid_kv_cache_manager,
        disable_sliding_window=disable_sliding_window, cpu_isa=cpu_isa)
    if device == "cpu":
        settings = cpu_kv_budget(settings)
    version = vllm_version or installed_vllm_version() or CURRENT_VERSION
    profile = profile_for(version)
    m = load_model(model, revision, offline)
    m = with_speculative_layers(m, settings, revision, offline)
    gpus, probe_note = pick_gpus(gpu, gpu_memory, device, tensor_parallel_size, pipeline_parallel_size)
    # 0.8.x ran V1 by default but fell back to V0 below compute capability 8.0: the profile is per GPU.
    results = [plan.evaluate(m, g, settings, profile_for(version, gpu=g)) for g in gpus]

    if len(results) == 1:
        res = results[0]
        if as_json:
            out.print_json(json.dumps(result_dict(res)), highlight=False)
        else:
            from ..render.report import render   # rich tables and panels: not needed for --json

            render(res, out)
        return 0 if res.fits else 1
    if as_json:
        out.print_json(json.dumps({"schema": "kvfit.check-table/1", "gpu_probe": probe_note,
                                   "results": [result_dict(r) for r in results]}), highlight=False)
    else:
        from ..render.report import render_table

        from rich.markup import escape

        out.print(f"[dim]No GPU probed ({escape(probe_note or '')}); showing common GPUs. "
                  "Name one with --gpu or --gpu-memory.[/]")
        render_table(results, out, f"{m.id} at max_model_len {results[0].resolved.max_model_len:,} "
                                   f"({m.source}), vLLM {profile.version}")
    return 0 if any(r.fits for r in results) else 1
