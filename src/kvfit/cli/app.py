"""The command line. The only place that prints or exits; everything it computes comes from plan.py.

Exit codes: 0 fits, 1 does not fit, 2 bad input or a broken environment (never a traceback).
"""

from __future__ import annotations

import json
import sys
from typing import List, Optional

import typer
from rich.console import Console

from ..errors import BadInput, KvfitError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Preflight checker for vLLM's KV-cache capacity: will this launch fit, and which flags will.")
out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


def _fail(e: KvfitError) -> None:
    from .fast import report_error   # one wording for both parsers; messages are escaped, tokens redacted

    report_error(err, e)
    raise typer.Exit(e.exit_code)


def _parse_util(value: Optional[str]) -> Optional[float]:
    if value is None:
        return None
    try:
        u = float(value)
    except ValueError:
        raise BadInput(f"--gpu-memory-utilization must be a number in (0, 1], got {value!r}") from None
    return u


@app.command()
def check(
    ctx: typer.Context,
    model: Optional[str] = typer.Argument(None, help="Hugging Face id (org/name), a local model directory or a config.json path."),
    launch_args: Optional[List[str]] = typer.Argument(None, metavar="[-- LAUNCH...]", help="A launch to check: -- vllm serve MODEL ... / -- docker run ... vllm/vllm-openai ..."),
    max_model_len: Optional[str] = typer.Option(None, "--max-model-len", help="Context length: 32768, 32k (=32000), 32K (=32768), -1 or auto."),
    gpu_memory_utilization: Optional[str] = typer.Option(None, "--gpu-memory-utilization", help="Fraction of GPU memory vLLM may use (default: the vLLM version's)."),
    tensor_parallel_size: int = typer.Option(1, "--tensor-parallel-size", "-tp"),
    pipeline_parallel_size: int = typer.Option(1, "--pipeline-parallel-size", "-pp"),
    dtype: str = typer.Option("auto", "--dtype"),
    kv_cache_dtype: str = typer.Option("auto", "--kv-cache-dtype"),
    block_size: Optional[int] = typer.Option(None, "--block-size"),
    max_num_seqs: Optional[int] = typer.Option(None, "--max-num-seqs"),
    max_num_batched_tokens: Optional[str] = typer.Option(None, "--max-num-batched-tokens"),
    enforce_eager: bool = typer.Option(False, "--enforce-eager"),
    kv_cache_memory_bytes: Optional[str] = typer.Option(None, "--kv-cache-memory-bytes", help="Explicit KV budget per GPU: bytes, 4GiB, 4G."),
    gpu: Optional[str] = typer.Option(None, "--gpu", help="A GPU from `kvfit gpus` instead of probing."),
    gpu_memory: Optional[str] = typer.Option(None, "--gpu-memory", help="GPU total as CUDA reports it: 79.25GiB, 24GB, bytes."),
    vllm_version: Optional[str] = typer.Option(None, "--vllm-version", help="vLLM release to model (default: installed, else 0.32.0)."),
    entrypoint: str = typer.Option("serve", "--entrypoint", help="serve (vllm serve) or llm (Python LLM class): batch defaults differ."),
    device: str = typer.Option("cuda", "--device", help="cuda or cpu (vLLM's CPU backend)."),
    revision: Optional[str] = typer.Option(None, "--revision", help="Hub revision (branch, tag or commit)."),
    offline: bool = typer.Option(False, "--offline", help="Never use the network (also HF_HUB_OFFLINE=1)."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    enable_lora: bool = typer.Option(False, "--enable-lora", help="LoRA adapters: vLLM preallocates max_loras slots per layer."),
    max_loras: int = typer.Option(1, "--max-loras", help="With --enable-lora: adapters resident at once (vLLM default 1)."),
    max_lora_rank: int = typer.Option(16, "--max-lora-rank", help="With --enable-lora: the largest adapter rank (vLLM default 16)."),
    speculative_config: Optional[str] = typer.Option(None, "--speculative-config", help='Speculative decoding as vLLM takes it: \'{"method": "mtp", "num_speculative_tokens": 1}\' (draft/EAGLE: "model").'),
    enable_prefix_caching: bool = typer.Option(False, "--enable-prefix-caching", help="Force prefix caching on (mamba hybrids: align mode)."),
    no_enable_prefix_caching: bool = typer.Option(False, "--no-enable-prefix-caching", help="Prefix caching off (mamba hybrids: one state block per request)."),
    mamba_cache_dtype: str = typer.Option("auto", "--mamba-cache-dtype", help="Mamba conv state dtype: auto, float32, float16, bfloat16."),
    mamba_ssm_cache_dtype: str = typer.Option("auto", "--mamba-ssm-cache-dtype", help="Mamba ssm state dtype: auto, float32, float16, bfloat16."),
    disable_hybrid_kv_cache_manager: bool = typer.Option(False, "--disable-hybrid-kv-cache-manager", help="Sliding/chunked layers allocated as full attention."),
    disable_sliding_window: bool = typer.Option(False, "--disable-sliding-window", help="No window; max_model_len capped to it."),
    cpu_isa: Optional[str] = typer.Option(None, "--cpu-isa", help="With --device cpu: avx512_bf16, amx or avx2 (default: this machine's)."),
    smoke: bool = typer.Option(False, "--smoke", rich_help_panel="Smoke test",
                               help="Then start a real vLLM engine and compare (see `kvfit smoke --help`)."),
    dummy_weights: bool = typer.Option(False, "--dummy-weights", rich_help_panel="Smoke test",
                                       help="With --smoke: random weights (load_format=dummy), config.json only."),
    record: Optional[str] = typer.Option(None, "--record", rich_help_panel="Smoke test",
                                         help="With --smoke: append the run as a JSON line to FILE."),
    timeout: float = typer.Option(900.0, "--timeout", rich_help_panel="Smoke test",
                                  help="With --smoke: seconds the engine may take (after the engine lock)."),
    context: Optional[str] = typer.Option(None, "--context", rich_help_panel="Planning", help="Goal: the max_model_len needed (32768, 32K)."),
    concurrency: Optional[int] = typer.Option(None, "--concurrency", rich_help_panel="Planning", help="Goal: N sequences of that length resident at once."),
    max_vram: Optional[str] = typer.Option(None, "--max-vram", rich_help_panel="Planning", help="Goal: at most this much GPU memory per GPU (9GB, 9GiB)."),
    headroom: Optional[str] = typer.Option(None, "--headroom", rich_help_panel="Planning", help="Safety margin: a size or N% of the GPU (default 256MiB)."),
    quantization: Optional[str] = typer.Option(None, "--quantization", "-q", rich_help_panel="Planning", help="vLLM weight quantization (fp8: 1 B/param; awq/gptq: a 4-bit checkpoint)."),
    cpu_offload_gb: Optional[float] = typer.Option(None, "--cpu-offload-gb", rich_help_panel="Planning", help="GiB of weights per GPU vLLM keeps in CPU memory."),
    gpu_count: Optional[int] = typer.Option(None, "--gpu-count", rich_help_panel="Planning", help="GPUs like --gpu present (for tensor/pipeline parallel alternatives)."),
    launch_file: Optional[str] = typer.Option(None, "--launch", rich_help_panel="Planning", help="A launch in a file: shell script, docker command, vLLM YAML, Python, .env (- for stdin)."),
    config_file: Optional[str] = typer.Option(None, "--config", rich_help_panel="Planning", help="A vLLM --config YAML file to check."),
    fmt: Optional[str] = typer.Option(None, "--format", rich_help_panel="Planning", help="Print only the recommended launch: serve, python, docker, yaml, env; or json."),
    svg: Optional[str] = typer.Option(None, "--svg", rich_help_panel="Planning", help="Also save the report as an SVG file."),
    manifest: Optional[str] = typer.Option(None, "--manifest", rich_help_panel="CI gate", help="Check every entry of a kvfit.toml (README '## CI gate')."),
    junit: Optional[str] = typer.Option(None, "--junit", rich_help_panel="CI gate", help="With --manifest: write JUnit XML to FILE."),
) -> None:
    """Will MODEL fit vLLM's KV cache on this GPU at this length? Prints the verdict and the flags that fit."""
    from ..app import check as app_check

    if not smoke:
        from ..app import plan as app_plan

        if app_plan.wanted(ctx.params):
            try:
                code = app_plan.from_cli(ctx.params, app_plan.explicit_params(ctx), out=out, err=err)
            except KvfitError as e:
                _fail(e)
            raise typer.Exit(code)
    if smoke:
        _smoke(model=model, max_model_len=max_model_len, gpu_memory_utilization=gpu_memory_utilization,
               tensor_parallel_size=tensor_parallel_size, pipeline_parallel_size=pipeline_parallel_size,
               dtype=dtype, kv_cache_dtype=kv_cache_dtype, block_size=block_size, max_num_seqs=max_num_seqs,
               max_num_batched_tokens=max_num_batched_tokens, enforce_eager=enforce_eager,
               kv_cache_memory_bytes=kv_cache_memory_bytes, gpu=gpu, gpu_memory=gpu_memory,
               vllm_version=vllm_version, entrypoint=entrypoint, device=device, revision=revision,
               offline=offline, as_json=as_json, dummy_weights=dummy_weights, record=record, timeout=timeout,
               show_check=True)
    try:
        code = app_check.run(
            model=model, max_model_len=max_model_len, gpu_memory_utilization=_parse_util(gpu_memory_utilization),
            tensor_parallel_size=tensor_parallel_size, pipeline_parallel_size=pipeline_parallel_size,
            dtype=dtype, kv_cache_dtype=kv_cache_dtype, block_size=block_size, max_num_seqs=max_num_seqs,
            max_num_batched_tokens=max_num_batched_tokens, enforce_eager=enforce_eager,
            kv_cache_memory_bytes=kv_cache_memory_bytes, gpu=gpu, gpu_memory=gpu_memory,
            vllm_version=vllm_version, entrypoint=entrypoint, device=device, revision=revision,
            offline=offline, as_json=as_json, out=out, err=err,
            enable_lora=enable_lora, max_loras=max_loras, max_lora_rank=max_lora_rank,
            speculative_config=speculative_config, enable_prefix_caching=enable_prefix_caching,
            no_enable_prefix_caching=no_enable_prefix_caching, mamba_cache_dtype=mamba_cache_dtype,
            mamba_ssm_cache_dtype=mamba_ssm_cache_dtype,
            disable_hybrid_kv_cache_manager=disable_hybrid_kv_cache_manager,
            disable_sliding_window=disable_sliding_window, cpu_isa=cpu_isa)
    except KvfitError as e:
        _fail(e)
    raise typer.Exit(code)


@app.command()
def models(as_json: bool = typer.Option(False, "--json")) -> None:
    """List the models bundled with kvfit (they work offline)."""
    from rich.table import Table

    from ..arch.normalize import normalize
    from ..sources.catalog import entries

    rows = []
    for e in entries():
        try:
            a = normalize(e["config"], hf_quant_config=e.get("hf_quant_config"))
            fam, layers, length = a.family, a.num_hidden_layers, a.derived_max_len
        except KvfitError:
            fam, layers, length = "not modelled yet", None, None
        params = sum((e.get("params") or {}).values())
        rows.append({"id": e["id"], "family": fam, "layers": layers, "max_model_len": length, "params": params})
    if as_json:
        out.print_json(json.dumps(rows), highlight=False)
        return
    t = Table(title=f"{len(rows)} bundled models")
    for c in ("id", "family", "layers", "max_model_len", "params"):
        t.add_column(c)
    for r in rows:
        t.add_row(r["id"], r["family"], str(r["layers"] or "-"), f"{r['max_model_len']:,}" if r["max_model_len"] else "-",
                  f"{r['params'] / 1e9:.2f} B" if r["params"] else "-")
    out.print(t)


@app.command()
def gpus(as_json: bool = typer.Option(False, "--json")) -> None:
    """List the GPUs NVML sees here and the GPUs bundled in kvfit's catalog."""
    from rich.table import Table

    from rich.markup import escape

    from ..gpu.catalog import catalog
    from ..gpu.nvml import probe

    try:
        found = probe()
        cat = catalog()
    except KvfitError as e:
        _fail(e)
    if as_json:
        out.print_json(json.dumps({
            "probed": [{"index": g.index, "name": g.name, "total_bytes": g.total_bytes, "free_bytes": g.free_bytes,
                        "used_bytes": g.used_bytes, "processes": [list(p) for p in g.processes], "mig": g.mig}
                       for g in found.gpus],
            "probe_note": found.reason, "catalog": list(cat)}), highlight=False)
        return
    if found.gpus:
        t = Table(title="GPUs on this machine (NVML)")
        for c in ("index", "name", "total", "free", "used", "processes"):
            t.add_column(c)
        for g in found.gpus:
            t.add_row(str(g.index), escape(g.name), f"{g.total_bytes / 2**30:.2f} GiB", f"{(g.free_bytes or 0) / 2**30:.2f} GiB",
                      f"{(g.used_bytes or 0) / 2**30:.2f} GiB",
                      ", ".join(f"pid {p} {b / 2**30:.2f} GiB" for p, b in g.processes) or "-")
        out.print(t)
    else:
        out.print(f"[dim]no GPU probed: {escape(found.reason or '')}[/]")
    t = Table(title="GPU catalog (totals as CUDA reports them)")
    for c in ("name", "aliases", "total", "compute capability"):
        t.add_column(c)
    for e in cat:
        t.add_row(e["name"], ", ".join(e.get("aliases", [])), f"{e['total_bytes'] / 2**30:.2f} GiB",
                  str(e.get("compute_capability", "")))
    out.print(t)


# `kvfit check` options that only matter with --smoke (kvfit.entry's fast check parser leaves them to typer).
SMOKE_ONLY_CHECK_OPTIONS = ("smoke", "dummy_weights", "record", "timeout")


def _smoke(*, gpu_memory_utilization: Optional[str], **kw) -> None:
    from ..app import smoke as app_smoke

    try:
        code = app_smoke.run(gpu_memory_utilization=_parse_util(gpu_memory_utilization), out=out, err=err, **kw)
    except KvfitError as e:
        _fail(e)
    raise typer.Exit(code)


@app.command()
def smoke(
    model: str = typer.Argument(..., help="Hugging Face id, a local model directory or a config.json path."),
    max_model_len: Optional[str] = typer.Option(None, "--max-model-len", help="Context length: 32768, 32k, 32K, -1 or auto."),
    gpu_memory_utilization: Optional[str] = typer.Option(None, "--gpu-memory-utilization"),
    tensor_parallel_size: int = typer.Option(1, "--tensor-parallel-size", "-tp"),
    pipeline_parallel_size: int = typer.Option(1, "--pipeline-parallel-size", "-pp"),
    dtype: str = typer.Option("auto", "--dtype"),
    kv_cache_dtype: str = typer.Option("auto", "--kv-cache-dtype"),
    block_size: Optional[int] = typer.Option(None, "--block-size"),
    max_num_seqs: Optional[int] = typer.Option(None, "--max-num-seqs"),
    max_num_batched_tokens: Optional[str] = typer.Option(None, "--max-num-batched-tokens"),
    enforce_eager: bool = typer.Option(False, "--enforce-eager"),
    kv_cache_memory_bytes: Optional[str] = typer.Option(None, "--kv-cache-memory-bytes", help="Explicit KV budget per GPU: bytes, 4GiB, 4G."),
    gpu: Optional[str] = typer.Option(None, "--gpu", help="Predict for this catalog GPU instead of the probed one."),
    gpu_memory: Optional[str] = typer.Option(None, "--gpu-memory", help="Predict for this GPU total instead of the probed one."),
    vllm_version: Optional[str] = typer.Option(None, "--vllm-version", help="Must be the installed release (the one that runs)."),
    entrypoint: str = typer.Option("serve", "--entrypoint", help="serve (vllm serve defaults) or llm (Python LLM class defaults)."),
    device: str = typer.Option("cuda", "--device", help="cuda, or cpu (vLLM's CPU build; needs --kv-cache-memory-bytes or VLLM_CPU_KVCACHE_SPACE)."),
    revision: Optional[str] = typer.Option(None, "--revision", help="Hub revision (branch, tag or commit)."),
    offline: bool = typer.Option(False, "--offline", help="Never use the network (also for the engine: HF_HUB_OFFLINE=1)."),
    as_json: bool = typer.Option(False, "--json", help="Print the run record (calibration schema) as JSON."),
    dummy_weights: bool = typer.Option(False, "--dummy-weights", help="Random weights (load_format=dummy): only config.json is needed, nothing is downloaded."),
    record: Optional[str] = typer.Option(None, "--record", help="Append the run as one JSON line (observations.jsonl schema) to FILE."),
    timeout: float = typer.Option(900.0, "--timeout", help="Seconds the engine may take, counted once it holds the engine lock."),
    tolerance: float = typer.Option(5.0, "--tolerance", help="Allowed difference in percent for KV tokens, blocks and concurrency when vLLM profiles the budget (explicit budgets must match exactly)."),
    as_given: bool = typer.Option(False, "--as-given", help="Launch the flags given even when kvfit predicts they fail (default: kvfit's recommended flags)."),
    show_log: bool = typer.Option(False, "--show-log", help="Stream the engine's log to stderr."),
) -> None:
    """Start a real vLLM engine with MODEL and compare what it sizes with kvfit's prediction.

    The engine runs in its own process group, stopped on timeout or Ctrl-C with nothing left behind, one at a time per machine (lock /tmp/kvfit-engine.lock, or KVFIT_ENGINE_LOCK).

    Exit 0: started, generated, and within tolerance (exact when the KV budget is explicit: --kv-cache-memory-bytes, or the CPU backend). Exit 1: the engine failed, timed out, or the prediction missed. Exit 2: bad input, or no vLLM (pip install "kvfit\\[smoke]").
    """
    _smoke(model=model, max_model_len=max_model_len, gpu_memory_utilization=gpu_memory_utilization,
           tensor_parallel_size=tensor_parallel_size, pipeline_parallel_size=pipeline_parallel_size,
           dtype=dtype, kv_cache_dtype=kv_cache_dtype, block_size=block_size, max_num_seqs=max_num_seqs,
           max_num_batched_tokens=max_num_batched_tokens, enforce_eager=enforce_eager,
           kv_cache_memory_bytes=kv_cache_memory_bytes, gpu=gpu, gpu_memory=gpu_memory,
           vllm_version=vllm_version, entrypoint=entrypoint, device=device, revision=revision,
           offline=offline, as_json=as_json, dummy_weights=dummy_weights, record=record, timeout=timeout,
           tolerance=tolerance, as_given=as_given, show_log=show_log)


@app.command()
def explain(
    logfile: Optional[str] = typer.Argument(None, metavar="[LOGFILE|-]", help="A vLLM log or traceback; - or nothing reads standard input."),
    offline: bool = typer.Option(False, "--offline", help="Never use the network when re-checking the model."),
    gpu: Optional[str] = typer.Option(None, "--gpu", help="The GPU the log ran on, when the log does not show its total."),
    gpu_memory: Optional[str] = typer.Option(None, "--gpu-memory", help="Its total as CUDA reports it (79.25GiB), when the log does not show it."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Explain a vLLM startup log or memory error in plain words, with the flags that fix it.

    When the log names the model, the advice is re-checked with the model's KV layout.

    Exit 0: a diagnosis was made (--json says whether the log shows a failure). Exit 1: nothing kvfit recognises in the text. Exit 2: the input cannot be read.
    """
    from ..app import explain as app_explain

    try:
        code = app_explain.run(source=logfile, as_json=as_json, offline=offline, out=out, err=err, gpu=gpu,
                               gpu_memory=gpu_memory)
    except KvfitError as e:
        _fail(e)
    raise typer.Exit(code)


@app.command()
def sweep(
    ctx: typer.Context,
    model: Optional[str] = typer.Argument(None, help="Hugging Face id, local directory, or config.json path."),
    launch_args: Optional[List[str]] = typer.Argument(None, metavar="[-- LAUNCH...]", help="Or a launch: -- vllm serve MODEL ..."),
    max_model_len: Optional[str] = typer.Option(None, "--max-model-len", help="The length to report concurrency at (default: the model's)."),
    concurrency: Optional[int] = typer.Option(None, "--concurrency", help="Longest max_model_len for N sequences (default 1)."),
    gpu_memory_utilization: Optional[str] = typer.Option(None, "--gpu-memory-utilization", help="Utilization for the GPU table (default: the vLLM version's)."),
    utilizations: Optional[str] = typer.Option(None, "--utilizations", help="Values to sweep: 0.3:0.95:0.05 (default) or 0.5,0.7,0.9."),
    tensor_parallel_size: int = typer.Option(1, "--tensor-parallel-size", "-tp"),
    pipeline_parallel_size: int = typer.Option(1, "--pipeline-parallel-size", "-pp"),
    dtype: str = typer.Option("auto", "--dtype"),
    kv_cache_dtype: str = typer.Option("auto", "--kv-cache-dtype"),
    max_num_seqs: Optional[int] = typer.Option(None, "--max-num-seqs"),
    max_num_batched_tokens: Optional[str] = typer.Option(None, "--max-num-batched-tokens"),
    enforce_eager: bool = typer.Option(False, "--enforce-eager"),
    quantization: Optional[str] = typer.Option(None, "--quantization", "-q"),
    gpu: Optional[str] = typer.Option(None, "--gpu", help="The GPU for the utilization sweep (default: probed, else a common one)."),
    gpu_memory: Optional[str] = typer.Option(None, "--gpu-memory"),
    vllm_version: Optional[str] = typer.Option(None, "--vllm-version"),
    entrypoint: str = typer.Option("serve", "--entrypoint"),
    offline: bool = typer.Option(False, "--offline"),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    svg: Optional[str] = typer.Option(None, "--svg", help="Also save the charts as an SVG file."),
) -> None:
    """max_model_len and max concurrency across gpu_memory_utilization values and across catalog GPUs."""
    from ..app import plan as app_plan, sweep as app_sweep

    try:
        code = app_sweep.run(ctx.params, app_plan.explicit_params(ctx), out=out, err=err)
    except KvfitError as e:
        _fail(e)
    raise typer.Exit(code)


def main() -> None:
    try:
        app()
    except KvfitError as e:   # a command that raised outside its own handler
        from .fast import report_error

        report_error(err, e)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        err.print("kvfit: interrupted")
        sys.exit(130)
    except Exception as e:  # noqa: BLE001 - never a traceback: a bug says so in one line, exit 2
        from .fast import internal_error

        sys.exit(internal_error(e))


if __name__ == "__main__":
    main()
