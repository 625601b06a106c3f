"""`kvfit explain` for people and programs: the diagnosis, the re-check, the corrected launch."""

from __future__ import annotations

from dataclasses import asdict

from rich.console import Console
from rich.markup import escape

from .. import launch as L
from ..logs.diagnose import Explanation, Fix
from ..logs.parse import LogFacts
from ..logs.recheck import Recheck, _failed
from .report import print_command


def explanation_dict(facts: LogFacts, expl: Explanation, rc: Recheck | None, command: str | None,
                     label: str) -> dict:
    keys = ("model", "vllm_version", "engine", "device_label", "max_model_len", "gpu_memory_utilization",
            "tensor_parallel_size", "total_gpu_memory_gib", "free_gpu_memory_gib", "model_weights_gib",
            "activation_peak_gib", "available_kv_gib", "num_gpu_blocks", "kv_cache_tokens", "max_concurrency",
            "max_concurrency_len", "block_size")
    return {
        "schema": "kvfit.explain/1",
        "input": label,
        "diagnosed": bool(expl.diagnoses),
        "failed": _failed(expl),
        "facts": {k: getattr(facts, k) for k in keys},
        "diagnoses": [asdict(d) for d in expl.diagnoses],
        "warnings": list(expl.warnings),
        "recheck": None if rc is None else {
            "model": rc.model_ref, "model_id": rc.model_id, "source": rc.source, "ok": rc.ok,
            "summary": rc.summary, "consistent": rc.consistent, "bytes_per_token": rc.bytes_per_token,
            "bytes_per_block": rc.bytes_per_block, "block_size": rc.block_size, "budget_bytes": rc.budget_bytes,
            "budget_from": rc.budget_from, "longest_max_model_len": rc.longest_len,
            "fixes": [asdict(f) for f in rc.fixes], "lines": rc.lines},
        "corrected_command": command,
    }


def _fix_line(i: int, f: Fix) -> str:
    tag = " [green](exact)[/]" if f.exact else ""
    env = " ".join(f"{k}={v}" for k, v in f.env.items())
    return f"  {i}. {escape(f.description)}{tag}" + (f"  [dim]env: {escape(env)}[/]" if env else "")


def render(out: Console, facts: LogFacts, expl: Explanation, rc: Recheck | None, commands: list[L.Launch],
           label: str) -> None:
    head = [f"vLLM {facts.vllm_version}" if facts.vllm_version else None,
            f"{facts.engine} engine" if facts.engine else None,
            f"model {facts.model}" if facts.model else None,
            "CPU backend" if (facts.device_label or "").upper() == "CPU" else None]
    out.print(f"[bold]kvfit explain[/] {escape(label)}" + (": " + ", ".join(escape(h) for h in head if h)
                                                             if any(head) else ""))
    for d in expl.diagnoses:
        mark = "[green]✔[/]" if d.kind == "ok" else "[red]✘[/]"
        out.print(f"\n{mark} [bold]{escape(d.title)}[/]")
        out.print(f"  {escape(d.explanation)}")
        if d.fixes:
            out.print("  [bold]Fixes:[/]")
            for i, f in enumerate(d.fixes, 1):
                out.print(_fix_line(i, f))
    if rc is not None:
        out.print(f"\n[bold]Re-check[/] ({escape(rc.model_ref)}"
                  + (f", {escape(rc.source)}" if rc.source else "") + "):")
        if rc.summary:
            out.print(f"  {escape(rc.summary)}")
        for ln in rc.lines:
            out.print(f"  - {escape(ln)}")
        if rc.fixes and rc.consistent is not False:
            out.print(f"  [bold]Advice re-checked with {escape(rc.model_id or rc.model_ref)}:[/]")
            for i, f in enumerate(rc.fixes, 1):
                out.print(_fix_line(i, f))
    elif any(d.kind != "ok" for d in expl.diagnoses):
        out.print("\n[dim]The log does not name the model; include the `vllm serve` command or the "
                  "'Initializing ... with config: model=...' line and kvfit re-checks the advice with the "
                  "model's KV layout.[/]")
    if commands:
        out.print("\n[bold]Corrected launch:[/]")
        print_command(out, commands[0])
        for c in commands[1:]:
            out.print("[dim]or:[/]")
            print_command(out, c)
    for w in expl.warnings:
        out.print(f"[yellow]warning:[/] {escape(w)}")
