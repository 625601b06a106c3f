"""`kvfit sweep` for people: a table per utilization and per GPU, with bars."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..plan.alternatives import short_name
from ..units import GiB


def _bar(value: float, top: float, width: int = 12) -> Text:
    """A horizontal bar in eighth blocks."""
    cells = width * value / top if top > 0 else 0
    full = int(cells)
    frac = int(round((cells - full) * 8))
    if frac == 8:
        full, frac = full + 1, 0
    t = Text("█" * full + ("▏▎▍▌▋▊▉"[frac - 1] if frac else ""), style="green" if value >= 1 else "yellow")
    return t


def render(data: dict, console: Console) -> None:
    L = data["max_model_len"]
    t = Table(title=f"{data['model']} on {data['gpu']}: max_model_len {L:,}, vLLM {data['vllm']}",
              title_justify="left")
    for col, kw in (("util", {}), ("vLLM takes", {"justify": "right"}), ("KV cache", {"justify": "right"}),
                    ("KV tokens", {"justify": "right"}), ("longest", {"justify": "right"}),
                    ("conc.", {"justify": "right"}), ("", {"no_wrap": True})):
        t.add_column(col, **kw)
    top = max((r["max_concurrency"] or 0 for r in data["utilization"]), default=0)
    for r in data["utilization"]:
        if r.get("error"):
            t.add_row(f"{r['gpu_memory_utilization']:.2f}", "-", "-", "-", "-", "-", r["error"])
            continue
        conc = r["max_concurrency"] or 0
        t.add_row(f"{r['gpu_memory_utilization']:.2f}", f"{r['requested_bytes'] / GiB:.2f} GiB",
                  f"{r['kv_cache_bytes'] / GiB:.2f} GiB", f"{r['kv_cache_tokens']:,}",
                  f"{r['max_model_len']:,}" if r["max_model_len"] else "[red]none[/]",
                  f"{conc:.2f}x" if r["fits"] else f"[red]{conc:.2f}x[/]", _bar(conc, top))
    console.print(t)
    g = Table(title=f"across GPUs at gpu_memory_utilization {data['gpu_utilization']:g} (max_model_len {L:,})",
              title_justify="left")
    for col, kw in (("GPU", {"no_wrap": True}), ("GiB", {"justify": "right"}), ("KV tokens", {"justify": "right"}),
                    ("longest", {"justify": "right"}), ("conc.", {"justify": "right"}),
                    ("min util", {"justify": "right"}), ("", {"no_wrap": True})):
        g.add_column(col, **kw)
    top = max((r["max_concurrency"] or 0 for r in data["gpus"]), default=0)
    for r in data["gpus"]:
        if r.get("error"):
            g.add_row(short_name(r["gpu"]), "-", "-", "-", "-", "-", r["error"])
            continue
        conc = r["max_concurrency"] or 0
        mu = r.get("min_gpu_memory_utilization")
        g.add_row(short_name(r["gpu"])[:18], f"{r['total_bytes'] / GiB:.1f}", f"{r['kv_cache_tokens']:,}",
                  f"{r['max_model_len']:,}" if r["max_model_len"] else "[red]none[/]",
                  f"{conc:.2f}x" if r["fits"] else f"[red]{conc:.2f}x[/]",
                  f"{mu:g}" if mu else "[red]-[/]", _bar(conc, top))
    console.print(g)
    console.print("[dim]longest: the longest max_model_len that fits; conc.: vLLM's 'Maximum concurrency' at the "
                  "table's max_model_len; min util: the least gpu_memory_utilization that serves it, within kvfit's ceiling (- when none). No headroom. "
                  "Bars: green >= 1x.[/]")
    for n in data.get("notes", []):
        console.print(f"[dim]note: {n}[/]")
