"""The human report: verdict first, then the numbers, then the flags to paste."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from ..memory.weights import inventory_for
from ..plan.evaluate import Result

GiB = 1 << 30


def _g(n: int) -> str:
    return f"{n / GiB:,.2f} GiB"


def memory_bar(res: Result, width: int = 60) -> Text:
    """Where the GPU's memory goes: weights, activation, CUDA graphs, other, KV, left free (GiB)."""
    m = res.memory
    parts = [("weights", m.weights_bytes, "blue"), ("activation", m.activation_bytes, "magenta"),
             ("CUDA graphs", m.cudagraph_bytes, "yellow"), ("other", m.non_torch_bytes, "white"),
             ("KV cache", m.kv_cache_bytes, "green"), ("free", m.left_free_bytes, "grey50")]
    total = max(m.total_bytes, sum(max(0, p[1]) for p in parts), 1)
    bar = Text()
    done, acc = 0, 0
    for _, n, style in parts:        # cumulative rounding: the cells always add up to `width`
        acc += max(0, n)
        cells = round(width * acc / total) - done
        done += cells
        bar.append("█" * cells, style=style)
    bar.append("\n")
    for label, n, style in parts:
        bar.append("■ ", style=style)
        bar.append(f"{label} {n / GiB:.2f}  ")
    bar.append("GiB")
    extras = []
    if m.lora_bytes:
        extras.append(f"weights include {m.lora_bytes / GiB:.2f} GiB of LoRA slots")
    if m.cpu_offload_bytes:
        extras.append(f"{m.cpu_offload_bytes / GiB:.2f} GiB of weights offloaded to CPU (--cpu-offload-gb)")
    if extras:
        bar.append("\n" + "; ".join(extras), style="dim")
    return bar


def verdict_text(res: Result) -> Text:
    r, cap = res.resolved, res.capacity
    if res.fits:
        t = Text("✔ FITS", style="bold green")
        t.append(f"  {res.model.id} at max_model_len {r.max_model_len:,} on {res.gpu.name}: "
                 f"{cap.kv_cache_tokens:,} KV tokens, {cap.max_concurrency:.2f}x concurrency")
    else:
        t = Text("✘ DOES NOT FIT", style="bold red")
        t.append(f"  {res.model.id} at max_model_len {r.max_model_len:,} on {res.gpu.name}")
        for reason in res.reasons:
            t.append(f"\n  • {reason}")
    if res.memory.weights_estimated and not res.memory.explicit_kv_budget:
        t.append("\n  estimate: no tensor inventory for this model, the weights were estimated from config.json",
                 style="dim")
    return t


def weights_source(res: Result) -> str:
    """Where the weight figure comes from (the inventory's own words: headers, Hub metadata, catalog, or
    what the estimate read from config.json)."""
    return inventory_for(res.model.inventory, res.model.arch).source


def render(res: Result, console: Console) -> None:
    r, m, cap, lay, arch = res.resolved, res.memory, res.capacity, res.layout, res.model.arch
    console.print(Panel(verdict_text(res), expand=False))

    t = Table(show_header=False, box=None, pad_edge=False)
    t.add_column(style="bold")
    t.add_column()
    # Names and paths come from the user, config.json or NVML: escaped, never read as rich markup.
    t.add_row("model", f"{escape(res.model.id)}  [dim]({res.model.source}: {escape(res.model.detail)})[/]")
    t.add_row("architecture", f"{escape(arch.model_type)}, {arch.family}, {arch.num_hidden_layers} layers, "
              f"{r.model_dtype} weights, KV {r.kv_cache_dtype}")
    t.add_row("GPU", f"{escape(res.gpu.name)}, {_g(res.gpu.total_bytes)} total"
              + (f", {_g(res.gpu.free_bytes)} free" if res.gpu.free_bytes is not None else "")
              + f"  [dim]({escape(res.gpu.source)})[/]")
    t.add_row("vLLM", f"{res.profile.version} ({res.profile.name} profile)")
    t.add_row("settings", f"max_model_len {r.max_model_len:,}, gpu_memory_utilization {r.gpu_memory_utilization}, "
              f"max_num_batched_tokens {r.max_num_batched_tokens:,}, max_num_seqs {r.max_num_seqs}, "
              f"TP {res.settings.tensor_parallel_size}" + (", eager" if res.settings.enforce_eager else ""))
    t.add_row("KV per token", f"{lay.kv_bytes_per_token:,} B per GPU ({lay.layers_on_rank} layers), "
              f"block {lay.block_size}, {lay.bytes_per_block:,} B per block"
              + (f", {len(lay.groups)} groups, {lay.padding_layers} padding layers" if not lay.uniform else "")
              + (f"; attention block raised to {lay.attention_block_size} and mamba page padded "
                 f"{lay.mamba_page_padding:.2f}% (vLLM's hybrid alignment)" if lay.mamba_page_padding else ""))
    weights_note = " (estimated)" if m.weights_estimated else ""
    t.add_row("memory", f"requested {_g(m.requested_bytes)} = weights {_g(m.weights_bytes)}{weights_note} + "
              f"activation {_g(m.activation_bytes)} + CUDA graphs {_g(m.cudagraph_bytes)} + "
              f"other {_g(m.non_torch_bytes)} + KV {_g(m.kv_available_bytes)}"
              if not m.explicit_kv_budget else f"KV budget {_g(m.kv_available_bytes)} (--kv-cache-memory-bytes)")
    if m.weights_estimated:
        t.add_row("weights", escape(weights_source(res)))
    t.add_row("capacity", f"{cap.num_blocks:,} blocks, {cap.kv_cache_tokens:,} tokens, "
              f"max concurrency {cap.max_concurrency:.2f}x at {r.max_model_len:,} tokens")
    console.print(t)
    console.print(memory_bar(res))
    for note in (*res.notes, *(f"inferred: {x}" for x in arch.inferred)):
        console.print(f"[dim]note: {escape(note)}[/]")

    rec = res.recommendation
    lines = []
    if rec.max_model_len is not None:
        at = r.gpu_memory_utilization if res.startup_ok else "a utilization that starts"
        lines.append(f"largest max_model_len at {'utilization ' if res.startup_ok else ''}{at}: {rec.max_model_len:,}")
    if rec.gpu_memory_utilization is not None:
        lines.append(f"smallest gpu_memory_utilization for {r.max_model_len:,} tokens: {rec.gpu_memory_utilization:g}")
    elif rec.utilization_reason:
        lines.append(rec.utilization_reason)
    lines.append("")
    lines.append(rec.serve_flags)
    console.print(Panel(escape("\n".join(lines)), title="recommended launch", expand=False))


def render_table(results: list[Result], console: Console, title: str) -> None:
    """The fit on several GPUs (no GPU probed or named)."""
    t = Table(title=escape(title))
    for col in ("GPU", "total", "fits", "KV tokens", "concurrency", "max_model_len fit", "min utilization"):
        t.add_column(col)
    for res in results:
        rec = res.recommendation
        t.add_row(escape(res.gpu.name), _g(res.gpu.total_bytes),
                  "[green]yes[/]" if res.fits else "[red]no[/]",
                  f"{res.capacity.kv_cache_tokens:,}", f"{res.capacity.max_concurrency:.2f}x",
                  f"{rec.max_model_len:,}" if rec.max_model_len else "-",
                  f"{rec.gpu_memory_utilization:g}" if rec.gpu_memory_utilization else "-")
    console.print(t)
