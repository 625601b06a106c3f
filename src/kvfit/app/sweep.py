"""`kvfit sweep MODEL`: max_model_len and max concurrency across gpu_memory_utilization values on one GPU,
and across the catalog's GPUs, as tables and small terminal charts (--json, --svg).

Every row is a plan.evaluate through goals.check, with no headroom: the numbers vLLM would report.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..plan import goals as G
from .plan import Prepared, catalog_gpus, prepare, request_from_params
from ..errors import BadInput, KvfitError
from ..gpu.model import Gpu

GiB = 1 << 30
DEFAULT_UTILS = tuple(round(0.30 + 0.05 * i, 2) for i in range(14))       # 0.30 .. 0.95


def parse_utils(text: str | None) -> tuple[float, ...]:
    """'0.3:0.95:0.05' (start:stop:step, inclusive) or '0.5,0.7,0.9'."""
    if not text:
        return DEFAULT_UTILS
    try:
        if ":" in text:
            a, b, *c = (float(x) for x in text.split(":"))
            step = c[0] if c else 0.05
            if step <= 0:
                raise ValueError
            n = int(math.floor((b - a) / step + 1e-9)) + 1
            values = [round(a + i * step, 4) for i in range(max(n, 0))]
        else:
            values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise BadInput(f"--utilizations {text!r}: use start:stop:step (0.3:0.95:0.05) or a list (0.5,0.7,0.9)") from None
    if not values or any(not 0 < v <= 1 for v in values) or len(values) > 200:
        raise BadInput(f"--utilizations {text!r}: values must be in (0, 1] (at most 200)")
    return tuple(values)


def _row(p: Prepared, gpu: Gpu, util: float, length: int, goals: G.Goals) -> dict:
    s = replace(p.settings, gpu_memory_utilization=util, max_model_len=length, kv_cache_memory_bytes=None)
    try:
        c = G.check(p.model, gpu, s, p.profile, goals, p.variant, f"{util:g}")
    except KvfitError as e:
        return {"gpu": gpu.name, "gpu_memory_utilization": util, "error": e.message, "fits": False,
                "max_concurrency": None, "max_model_len": None, "kv_cache_tokens": None}
    cap, mem = c.result.capacity, c.result.memory
    longest, _ = G.largest_length(p.model, gpu, s, p.profile, goals, p.variant)
    return {"gpu": gpu.name, "total_bytes": gpu.total_bytes, "gpu_memory_utilization": util,
            "requested_bytes": mem.requested_bytes, "kv_cache_bytes": mem.kv_cache_bytes,
            "kv_cache_tokens": cap.kv_cache_tokens,
            "max_concurrency": None if not math.isfinite(cap.max_concurrency) else round(cap.max_concurrency, 4),
            "sequences_resident": c.resident, "fits": c.result.fits, "meets": c.meets,
            "max_model_len": longest or 0}


def sweep(p: Prepared, utils: tuple[float, ...], gpu_util: float | None) -> dict:
    goals = G.Goals(concurrency=p.goals.concurrency, headroom=G.Headroom(0))
    length = p.settings.max_model_len if p.settings.max_model_len not in (None, -1) else p.model.arch.default_max_len
    base_util = gpu_util or p.settings.gpu_memory_utilization or p.profile.default_gpu_memory_utilization
    if len(p.gpus) == 1:
        gpu = p.gpus[0]
    else:       # no GPU named or probed: the smallest common GPU that serves the length, else the largest
        gpu = p.gpus[-1]
        for g in sorted(p.gpus, key=lambda g: g.total_bytes):
            c = G.try_check(p.model, g, replace(p.settings, gpu_memory_utilization=base_util, max_model_len=length),
                            p.profile, goals, p.variant)
            if c is not None and c.meets:
                gpu = g
                break
    rows = [_row(p, gpu, u, length, goals) for u in utils]
    gpus = sorted(catalog_gpus(), key=lambda g: g.total_bytes) if p.settings.device == "cuda" else []
    grows = []
    for g in gpus:
        r = _row(p, g, base_util, length, goals)
        best, _ = G.solve_utilization(p.model, g, replace(p.settings, max_model_len=length), p.profile, goals,
                                      p.variant, 1.0, "")
        r["min_gpu_memory_utilization"] = best.utilization if best else None
        grows.append(r)
    return {"schema": "kvfit.sweep/1", "model": p.model.id, "max_model_len": length,
            "concurrency": p.goals.concurrency, "gpu": gpu.name, "gpu_utilization": base_util,
            "vllm": p.profile.version, "utilization": rows, "gpus": grows, "notes": list(p.notes)}


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
            g.add_row(G.short_name(r["gpu"]), "-", "-", "-", "-", "-", r["error"])
            continue
        conc = r["max_concurrency"] or 0
        mu = r.get("min_gpu_memory_utilization")
        g.add_row(G.short_name(r["gpu"])[:18], f"{r['total_bytes'] / GiB:.1f}", f"{r['kv_cache_tokens']:,}",
                  f"{r['max_model_len']:,}" if r["max_model_len"] else "[red]none[/]",
                  f"{conc:.2f}x" if r["fits"] else f"[red]{conc:.2f}x[/]",
                  f"{mu:g}" if mu else "[red]-[/]", _bar(conc, top))
    console.print(g)
    console.print("[dim]longest: the longest max_model_len that fits; conc.: vLLM's 'Maximum concurrency' at the "
                  "table's max_model_len; min util: the least gpu_memory_utilization that serves it. No headroom. "
                  "Bars: green >= 1x.[/]")
    for n in data.get("notes", []):
        console.print(f"[dim]note: {n}[/]")


def run(params: dict, explicit: set[str], *, out: Console, err: Console) -> int:
    utils = parse_utils(params.get("utilizations"))
    req, _ = request_from_params(params, explicit)
    p = prepare(req, strict=False)
    gpu_util = None
    if "gpu_memory_utilization" in explicit and params.get("gpu_memory_utilization") is not None:
        gpu_util = p.settings.gpu_memory_utilization
    data = sweep(p, utils, gpu_util)
    if params.get("svg"):
        from ..render import svg as svgmod

        svgmod.write(params["svg"], svgmod.sweep_svg(data))
    if params.get("as_json"):
        out.file.write(json.dumps(data, indent=2) + "\n")
    else:
        render(data, out)
    return 0
