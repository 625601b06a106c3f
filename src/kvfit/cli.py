"""The command line. The only place that prints or exits; everything it computes comes from plan.py.

Exit codes: 0 fits, 1 does not fit, 2 bad input or a broken environment (never a traceback).
"""

from __future__ import annotations

import json
import sys
from typing import Optional

import typer
from rich.console import Console

from .errors import BadInput, KvfitError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Preflight checker for vLLM's KV-cache capacity: will this launch fit, and which flags will.")
out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


def _fail(e: KvfitError) -> None:
    err.print(f"[bold red]kvfit:[/] {e.message}")
    if e.hint:
        err.print(f"  {e.hint}")
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
    model: str = typer.Argument(..., help="Hugging Face id (org/name), a local model directory or a config.json path."),
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
) -> None:
    """Will MODEL fit vLLM's KV cache on this GPU at this length? Prints the verdict and the flags that fit."""
    from . import app_check

    try:
        code = app_check.run(
            model=model, max_model_len=max_model_len, gpu_memory_utilization=_parse_util(gpu_memory_utilization),
            tensor_parallel_size=tensor_parallel_size, pipeline_parallel_size=pipeline_parallel_size,
            dtype=dtype, kv_cache_dtype=kv_cache_dtype, block_size=block_size, max_num_seqs=max_num_seqs,
            max_num_batched_tokens=max_num_batched_tokens, enforce_eager=enforce_eager,
            kv_cache_memory_bytes=kv_cache_memory_bytes, gpu=gpu, gpu_memory=gpu_memory,
            vllm_version=vllm_version, entrypoint=entrypoint, device=device, revision=revision,
            offline=offline, as_json=as_json, out=out, err=err)
    except KvfitError as e:
        _fail(e)
    raise typer.Exit(code)


@app.command()
def models(as_json: bool = typer.Option(False, "--json")) -> None:
    """List the models bundled with kvfit (they work offline)."""
    from rich.table import Table

    from .arch.normalize import normalize
    from .sources.catalog import entries

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
        out.print_json(json.dumps(rows))
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

    from .gpu.catalog import catalog
    from .gpu.nvml import probe

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
            "probe_note": found.reason, "catalog": list(cat)}))
        return
    if found.gpus:
        t = Table(title="GPUs on this machine (NVML)")
        for c in ("index", "name", "total", "free", "used", "processes"):
            t.add_column(c)
        for g in found.gpus:
            t.add_row(str(g.index), g.name, f"{g.total_bytes / 2**30:.2f} GiB", f"{(g.free_bytes or 0) / 2**30:.2f} GiB",
                      f"{(g.used_bytes or 0) / 2**30:.2f} GiB",
                      ", ".join(f"pid {p} {b / 2**30:.2f} GiB" for p, b in g.processes) or "-")
        out.print(t)
    else:
        out.print(f"[dim]no GPU probed: {found.reason}[/]")
    t = Table(title="GPU catalog (totals as CUDA reports them)")
    for c in ("name", "aliases", "total", "compute capability"):
        t.add_column(c)
    for e in cat:
        t.add_row(e["name"], ", ".join(e.get("aliases", [])), f"{e['total_bytes'] / 2**30:.2f} GiB",
                  str(e.get("compute_capability", "")))
    out.print(t)


def main() -> None:
    try:
        app()
    except KvfitError as e:   # a command that raised outside its own handler
        err.print(f"kvfit: {e.message}")
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        err.print("kvfit: interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
