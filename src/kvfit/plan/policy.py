"""kvfit's one recommendation policy: the headroom every recommended launch keeps, and the highest
gpu_memory_utilization kvfit proposes. The same on every path (check, --json, every --format, --svg, a
pasted launch, a manifest entry, sweep, smoke); printed in the report and in the JSON (`policy`).

* Headroom (default 256 MiB, --headroom): a recommended launch must meet its goals with that many fewer
  bytes of KV cache than kvfit predicts, slack for the error of kvfit's estimate of vLLM's memory outside
  the KV cache (README "## Accuracy").
* Ceiling: vLLM refuses to start when the free memory it measures is below total x utilization
  (v1/worker/gpu_worker.py request_memory, 0.9.1+), and that free memory is already short of the total by
  vLLM's own CUDA context (0.41 GiB measured on an idle A100, calibration gt-046; vLLM 0.33 also creates
  its cuBLAS handles before that measurement: memory/overhead.py::cuda_context_bytes).
  - a probed GPU: the largest utilization its free memory starts beside that context;
  - a named GPU kvfit cannot see: 0.95, leaving 5% for the CUDA context and whatever else runs there
    (a display, another process);
  - with --max-vram: at most that budget.
  The launch as given is never capped: a launch the user wrote that fits is the answer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..gpu.model import Gpu
from ..memory.overhead import cuda_context_bytes
from .evaluate import max_startable_utilization
from .goals import Goals

UNPROBED_CEILING = 0.95


@dataclass(frozen=True)
class Policy:
    headroom_bytes: int
    headroom_text: str
    ceiling: float              # the highest gpu_memory_utilization kvfit proposes on this GPU
    ceiling_reason: str

    def as_dict(self) -> dict:
        return {"headroom_bytes": self.headroom_bytes, "headroom": self.headroom_text,
                "utilization_ceiling": self.ceiling, "utilization_ceiling_reason": self.ceiling_reason}


def _floor_to(limit_bytes: int, total: int) -> float:
    """The largest 2-decimal utilization u with ceil(total x u) <= limit_bytes."""
    if total <= 0:
        return 0.0
    u = min(1.0, math.floor(limit_bytes / total * 100) / 100)
    while u > 0 and math.ceil(total * u) > limit_bytes:
        u = round(u - 0.01, 2)
    return max(0.0, round(u, 2))


def policy_for(gpu: Gpu, goals: Goals, device: str = "cuda", profile=None) -> Policy:
    """`profile` (memory.profiles.Profile): the release whose CUDA context is charged; None: 0.32's."""
    headroom = goals.headroom.resolve(gpu.total_bytes)
    if device != "cuda" or gpu.total_bytes <= 0:
        return Policy(headroom, goals.headroom.text, 1.0, "the CPU backend takes an explicit KV budget")
    if gpu.free_bytes is not None:
        ceiling = max_startable_utilization(gpu, profile)
        context = cuda_context_bytes(profile, gpu.compute_capability, device)
        ctx = f" less vLLM's CUDA context ({context / 2**30:.2f} GiB)" if gpu.source.startswith("NVML") else ""
        reason = f"{gpu.free_bytes / 2**30:.2f} GiB free on {gpu.name}{ctx} starts at most {ceiling:.2f}"
    else:
        ceiling = UNPROBED_CEILING
        reason = (f"{gpu.name} is named, not probed: kvfit leaves 5% for the CUDA context and anything else "
                  "on the card")
    if goals.max_vram_bytes is not None:
        cap = _floor_to(goals.max_vram_bytes, gpu.total_bytes)
        if cap < ceiling:
            ceiling, reason = cap, f"--max-vram {goals.max_vram_bytes / 2**30:.2f} GiB allows at most {cap:.2f}"
    return Policy(headroom, goals.headroom.text, round(ceiling, 2), reason)
