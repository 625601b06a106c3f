"""`kvfit sweep MODEL`: max_model_len and max concurrency across gpu_memory_utilization values on one GPU,
and across the catalog's GPUs. Every row is a plan.goals.judge with no headroom (vLLM's own numbers); the
longest length and the least utilization come from plan/search.py, the least utilization within kvfit's
ceiling (plan/policy.py), as in `kvfit check`.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace

from ..errors import BadFlag, BadInput, KvfitError
from ..gpu.model import Gpu
from ..plan.evaluate import derived_length
from ..plan.goals import Goals, Headroom, judge
from ..plan.policy import policy_for
from ..plan.search import least_utilization, longest_length
from .inputs import Inputs, Request, build, catalog_gpus

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
        raise BadFlag(f"--utilizations {text!r}: use start:stop:step (0.3:0.95:0.05) or a list (0.5,0.7,0.9)",
                      flag="utilizations") from None
    if not values or any(not 0 < v <= 1 for v in values) or len(values) > 200:
        raise BadFlag(f"--utilizations {text!r}: values must be in (0, 1] (at most 200)", flag="utilizations")
    return tuple(values)


def _row(inp: Inputs, gpu: Gpu, util: float, length: int, goals: Goals) -> dict:
    s = replace(inp.settings, gpu_memory_utilization=util, max_model_len=length, kv_cache_memory_bytes=None)
    try:
        c = judge(inp.model, gpu, s, inp.profile, goals, 0)
    except KvfitError as e:
        return {"gpu": gpu.name, "gpu_memory_utilization": util, "error": e.message, "fits": False,
                "max_concurrency": None, "max_model_len": None, "kv_cache_tokens": None}
    cap, mem = c.result.capacity, c.result.memory
    longest, _ = longest_length(inp.model, gpu, s, inp.profile, goals, 0)
    return {"gpu": gpu.name, "total_bytes": gpu.total_bytes, "gpu_memory_utilization": util,
            "requested_bytes": mem.requested_bytes, "kv_cache_bytes": mem.kv_cache_bytes,
            "kv_cache_tokens": cap.kv_cache_tokens,
            "max_concurrency": None if not math.isfinite(cap.max_concurrency) else round(cap.max_concurrency, 4),
            "sequences_resident": c.resident, "fits": c.result.fits, "meets": c.meets,
            "max_model_len": longest or 0}


def sweep(inp: Inputs, utils: tuple[float, ...], gpu_util: float | None) -> dict:
    goals = Goals(concurrency=inp.goals.concurrency, headroom=Headroom(0))
    length = inp.settings.max_model_len if inp.settings.max_model_len not in (None, -1) else \
        derived_length(inp.model.arch, inp.settings, inp.profile, inp.model.config)[2]
    if inp.goals.context:
        length = inp.goals.context
    base_util = gpu_util or inp.profile.default_gpu_memory_utilization
    if len(inp.gpus) == 1:
        gpu, note = inp.gpus[0], None
    else:
        raise BadInput(f"kvfit sweep needs the GPU to sweep on, and none was named or probed ({inp.probe_note})",
                       "Name it: --gpu \"RTX 4090\" or --gpu-memory 24GiB. The table across GPUs comes with it.")
    rows = [_row(inp, gpu, u, length, goals) for u in utils]
    gpus = sorted(catalog_gpus(), key=lambda g: g.total_bytes) if inp.settings.device == "cuda" else []
    grows = []
    for g in gpus:
        r = _row(inp, g, base_util, length, goals)
        pol = policy_for(g, goals, profile=inp.profile)
        best, _ = least_utilization(inp.model, g, replace(inp.settings, max_model_len=length), inp.profile, goals, 0,
                                    pol.ceiling)
        r["min_gpu_memory_utilization"] = best.utilization if best else None
        r["utilization_ceiling"] = pol.ceiling
        grows.append(r)
    return {"schema": "kvfit.sweep/2", "model": inp.model.id, "max_model_len": length,
            "concurrency": inp.goals.concurrency, "gpu": gpu.name, "gpu_utilization": base_util,
            "vllm": inp.profile.version, "headroom_bytes": 0, "utilization": rows, "gpus": grows,
            "notes": list(inp.notes) + ([note] if note else [])}


def run(req: Request, *, utilizations: str | None, as_json: bool, svg: str | None, out, err) -> int:
    utils = parse_utils(utilizations)
    gpu_util = req.values.get("gpu_memory_utilization")
    inp = build(req)
    data = sweep(inp, utils, gpu_util)
    if svg:
        from ..render import svg as svgmod

        svgmod.write(svg, svgmod.sweep_svg(data))
    if as_json:
        out.file.write(json.dumps(data, indent=2) + "\n")
    else:
        from ..render.sweep import render

        render(data, out)
    return 0
